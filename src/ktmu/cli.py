"""The ``ktmu`` command line: thin subcommands over the library."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _quiet_libraries() -> None:
    """Silence third-party load reports that would bury our tables."""
    import warnings

    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    try:
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass


def _dump(obj: dict, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


# ---- eval ---------------------------------------------------------------------------------------
def cmd_eval(args: argparse.Namespace) -> int:
    from .backbones import load_backbone
    from .zeroshot_report import evaluate_domains, format_eval_table

    t0 = time.time()
    backbone = load_backbone(args.model)
    result = evaluate_domains(backbone, args.domains, progress=not args.quiet)
    print(format_eval_table(result))
    print(f"({time.time() - t0:.1f} s)")
    if args.json:
        _dump(result, args.json)
        print(f"wrote {args.json}")
    return 0


# ---- pretrain -----------------------------------------------------------------------------------
def cmd_pretrain(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from .backbones.mini_clip import MANIFEST, build_mini_clip, sha256
    from .data import load_dataset
    from .pretrain import PretrainConfig, pretrain
    from .provenance import command_line, git_commit, versions
    from .zeroshot_report import evaluate_domains, format_eval_table

    cfg = PretrainConfig(epochs=args.epochs, seed=args.seed, batch_size=args.batch_size, lr=args.lr, limit_per_world=args.limit)
    backbone = build_mini_clip(weights="random")
    datasets = [load_dataset(name, "train") for name in ("fashion", "digits")]
    t0 = time.time()
    logs = pretrain(backbone, datasets, cfg, progress=not args.quiet)
    seconds = time.time() - t0
    out = Path(args.out)
    backbone.save_weights(out, metadata={"format": "ktmu-mini-clip", "command": command_line()})
    result = evaluate_domains(backbone, ["fashion", "digits"], progress=not args.quiet)
    print(format_eval_table(result))
    manifest = {
        "file": out.name,
        "sha256": sha256(out),
        "bytes": out.stat().st_size,
        "command": command_line(),
        "pretrain_seconds": round(seconds, 1),
        "config": asdict(cfg),
        "epochs": logs,
        "zero_shot": {d: {k: v for k, v in r.items() if k != "per_class"} for d, r in result["domains"].items()},
        "git_commit": git_commit(),
        "versions": versions(),
    }
    manifest_path = Path(args.manifest) if args.manifest else (MANIFEST if out.resolve().parent == MANIFEST.parent else out.with_suffix(".json"))
    _dump(manifest, manifest_path)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB, sha256 {manifest['sha256'][:16]}...) and {manifest_path}; pretraining took {seconds / 60:.1f} min")
    return 0


# ---- demo ---------------------------------------------------------------------------------------
def cmd_demo(args: argparse.Namespace) -> int:
    from .backbones import load_backbone
    from .zeroshot_report import evaluate_domains, format_eval_table

    t0 = time.time()
    backbone = load_backbone("mini-clip")
    print("ktmu demo: the embedded mini-CLIP (MiniLM-L6 text tower + small CNN image tower), zero-shot:")
    print(format_eval_table(evaluate_domains(backbone, ["fashion", "digits"], progress=not args.quiet)))
    print(f"({time.time() - t0:.1f} s)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ktmu", description="Knowledge-tracing machine unlearning for CLIP-family models.")
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, fn: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help)
        sp.set_defaults(fn=fn)
        sp.add_argument("--quiet", action="store_true", help="no progress bars")
        return sp

    sp = add("eval", cmd_eval, "zero-shot accuracy of a model on the built-in worlds")
    sp.add_argument("--model", default="mini-clip", help="backbone spec: mini-clip, mini-clip:PATH, open_clip:ARCH[:TAG_OR_PATH]")
    sp.add_argument("--domains", nargs="+", default=["fashion", "digits"], help="worlds to evaluate")
    sp.add_argument("--json", help="also write the results as JSON here")

    from .pretrain import PretrainConfig

    defaults = PretrainConfig()
    sp = add("pretrain", cmd_pretrain, "pretrain the embedded mini-CLIP contrastively on fashion + digits")
    sp.add_argument("--out", required=True, help="safetensors file to write")
    sp.add_argument("--manifest", help="provenance JSON to write (default: beside --out)")
    sp.add_argument("--epochs", type=int, default=defaults.epochs)
    sp.add_argument("--batch-size", type=int, default=defaults.batch_size)
    sp.add_argument("--lr", type=float, default=defaults.lr)
    sp.add_argument("--seed", type=int, default=defaults.seed)
    sp.add_argument("--limit", type=int, default=None, help="images per world (quick runs)")

    add("demo", cmd_demo, "the main job on the embedded default")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _quiet_libraries()
    from .backbones import BackboneError
    from .concepts import HierarchyError
    from .data import DatasetError
    from .registry import RegistryError

    try:
        return args.fn(args)
    except (BackboneError, HierarchyError, DatasetError, RegistryError) as e:
        print(f"ktmu: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
