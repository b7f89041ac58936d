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


# ---- unlearn / bench / demo -----------------------------------------------------------------------
def _hyper(pairs: Sequence[str]) -> dict:
    out = {}
    for item in pairs or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}.")
        try:
            out[key.replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            out[key.replace("-", "_")] = value
    return out


def _train_cfg(args: argparse.Namespace):
    from .train import TrainConfig

    return TrainConfig(lr=args.lr, epochs=args.epochs, seed=args.seed)


def _session(args: argparse.Namespace, forget=None, goal: str = "fine", evaluate: bool = True):
    from .pipeline import open_session

    return open_session(forget=forget, goal=goal, world=args.world, model=args.model, level=args.level,
                        max_per_concept=args.max_per_concept, seed=args.seed, progress=not args.quiet,
                        evaluate=evaluate, data_options=_data_options(args), device=args.device)


def _data_options(args: argparse.Namespace) -> dict:
    return {k: v for k, v in (("root", args.data_root), ("hierarchy", args.hierarchy)) if v}


def cmd_unlearn(args: argparse.Namespace) -> int:
    from .methods import build_method
    from .pipeline import run_method, save_unlearned
    from .report import text_table

    t0 = time.time()
    hyper = _hyper(args.set)
    build_method(args.method, **hyper)  # fail on a bad name or hyperparameter before loading anything
    session = _session(args, args.forget, args.goal)
    record = run_method(session, args.method, _train_cfg(args), progress=not args.quiet, **hyper)
    out = Path(args.out)
    weights = save_unlearned(session, out, record)
    record["weights"] = str(weights)
    _dump(record, out / "results.json")
    print(f"request: forget {', '.join(session.request.concepts)} ({session.request.goal}); forget set {len(session.forget)} images")
    print(text_table(record["original"], [record]))
    print(f"wrote {weights} and {out / 'results.json'} ({time.time() - t0:.1f} s)")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .methods import METHODS
    from .pipeline import run_method
    from .report import markdown_table, text_table

    t0 = time.time()
    methods = args.methods or METHODS.names()
    for name in methods:
        METHODS.get(name)  # fail on a bad name before loading anything
    session = _session(args, args.forget, args.goal)
    records = []
    from tqdm.auto import tqdm

    for name in tqdm(methods, desc="bench", disable=args.quiet):
        records.append(run_method(session, name, _train_cfg(args), progress=not args.quiet))
    seconds = time.time() - t0
    table = text_table(session.original_scores, records)
    label = "request" if args.forget else f"level {args.level}"
    print(f"{label}: forget {', '.join(session.request.concepts)} ({session.request.goal}); forget set {len(session.forget)} images; model {session.backbone.name}")
    print(table)
    print(f"bench took {seconds:.1f} s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    header = f"{'Request' if args.forget else f'Level `{args.level}`'}: forget {', '.join(session.request.concepts)} ({session.request.goal}). Bench time {seconds:.0f} s.\n\n"
    (out / "table.md").write_text(header + markdown_table(session.original_scores, records) + "\n")
    from .pipeline import recorded_scores

    _dump({"level": None if args.forget else args.level, "request": session.request.describe(), "seconds": round(seconds, 1), "original": recorded_scores(session.original_scores), "rows": records}, out / "results.json")
    print(f"wrote {out / 'table.md'} and {out / 'results.json'}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .pipeline import run_method
    from .report import text_table
    from .zeroshot_report import format_eval_table

    t0 = time.time()
    print("ktmu demo: the embedded mini-CLIP (MiniLM-L6 text tower + small CNN image tower), zero-shot:")
    session = _session(args)
    print(format_eval_table({"model": session.backbone.name, "domains": session.original_scores["domains"]}))
    req = session.request
    print(f"\nUnlearning request ({args.level}): forget {', '.join(req.concepts)} ({req.goal}) with nhl-kl, "
          f"using {len(session.forget)} forget-set images and no retain data ...")
    record = run_method(session, "nhl-kl", _train_cfg(args), progress=not args.quiet)
    print(text_table(record["original"], [record]))
    per = record["per_class_fine"]
    print("fine accuracy per class, before -> after: " + ", ".join(f"{k} {per['original'][k]:.0f}->{per['unlearned'][k]:.0f}" for k in per["original"]))
    print(f"({time.time() - t0:.1f} s)")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from .methods import METHODS
    from .tune import tune_lr

    session = _session(args, args.forget, args.goal, evaluate=False)
    print(f"tuning on forget-set data only: forget {', '.join(session.request.concepts)} ({session.request.goal}), {len(session.forget)} images")
    print("score = forget-train accuracy at the forgotten level (fine accuracy for a fine goal)")
    print(f"{'method':<12} {'lr':>8} {'epoch':>5} {'score %':>8} {'forget coarse %':>15}")
    for name in args.methods or METHODS.names():
        rows, chosen = tune_lr(session, name, args.lrs, args.epochs, args.threshold, progress=not args.quiet)
        for r in rows:
            mark = "  <- chosen" if r.lr == chosen else ""
            print(f"{name:<12} {r.lr:>8.0e} {r.epoch:>5} {r.score:>8.1f} {r.forget_coarse:>15.1f}{mark}", flush=True)
    return 0


def cmd_levels(args: argparse.Namespace) -> int:
    from .backbones import load_backbone
    from .data import load_dataset
    from .difficulty import sibling_difficulty

    train = load_dataset(args.world, "train")
    rows = sibling_difficulty(load_backbone(args.model), train)
    print(f"{'concept':<12} {'sibling conf.':>13} {'text sim.':>9} {'train acc':>9}  siblings")
    for r in rows:
        print(f"{r['concept']:<12} {r['sibling_confusion']:>13.3f} {r['text_similarity']:>9.3f} {r['train_acc']:>9.1f}  {', '.join(r['siblings']) or '-'}")
    levels = train.hierarchy.levels
    print("levels in the world file: " + "; ".join(f"{k}: {', '.join(v)}" for k, v in levels.items()))
    return 0


def _add_session_args(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--model", default="mini-clip", help="backbone spec: mini-clip, mini-clip:PATH, open_clip:ARCH[:TAG_OR_PATH]")
    sp.add_argument("--world", default="fashion", help="dataset whose concepts are forgotten: fashion, digits, jsonl, imagefolder")
    sp.add_argument("--data-root", help="folder of a jsonl or imagefolder world (train.jsonl/test.jsonl or train/, test/)")
    sp.add_argument("--hierarchy", help="YAML/JSON hierarchy (aliases, levels) for a jsonl or imagefolder world")
    sp.add_argument("--level", default="difficult", help="named request used when --forget is not given (easy, medium, difficult)")
    sp.add_argument("--max-per-concept", type=int, default=150, help="forget-set images per forgotten fine concept (study: 150)")
    sp.add_argument("--lr", type=float, default=None, help="override the method's tuned learning rate")
    sp.add_argument("--epochs", type=int, default=None, help="override the method's tuned epochs")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--device", default="cpu", help="torch device for the model, e.g. cuda")


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

    sp = add("unlearn", cmd_unlearn, "forget concepts with one method and report what was forgotten and kept")
    sp.add_argument("--method", default="nhl-kl", help="registered method name")
    sp.add_argument("--forget", action="append", help="concept or alias to forget (repeatable); default: the --level request")
    sp.add_argument("--goal", default="fine", choices=["fine", "coarse", "hybrid"])
    sp.add_argument("--out", required=True, help="folder for model.safetensors and results.json")
    sp.add_argument("--set", action="append", metavar="KEY=VALUE", help="method hyperparameter, e.g. --set margin=3")
    _add_session_args(sp)

    sp = add("bench", cmd_bench, "run every registered method on one level's request and tabulate")
    sp.add_argument("--out", required=True, help="folder for table.md and results.json")
    sp.add_argument("--methods", nargs="+", help="subset of methods (default: all registered)")
    sp.add_argument("--forget", action="append", help="concept or alias to forget instead of the --level request (repeatable)")
    sp.add_argument("--goal", default="fine", choices=["fine", "coarse", "hybrid"])
    _add_session_args(sp)

    from .tune import DEFAULT_LRS, THRESHOLD

    sp = add("tune", cmd_tune, "choose each method's learning rate on forget-set data only")
    sp.add_argument("--methods", nargs="+", help="default: all registered")
    sp.add_argument("--lrs", nargs="+", type=float, default=list(DEFAULT_LRS))
    sp.add_argument("--threshold", type=float, default=THRESHOLD, help="forget-train fine accuracy (%%) that counts as forgotten")
    sp.add_argument("--forget", action="append")
    sp.add_argument("--goal", default="fine", choices=["fine", "coarse", "hybrid"])
    _add_session_args(sp)

    sp = add("levels", cmd_levels, "rank fine concepts by how hard they are to forget apart from their siblings (train data only)")
    sp.add_argument("--model", default="mini-clip")
    sp.add_argument("--world", default="fashion")

    sp = add("demo", cmd_demo, "the main job: zero-shot table, then forget the default request with nhl-kl")
    _add_session_args(sp)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _quiet_libraries()
    from .backbones import BackboneError
    from .concepts import HierarchyError
    from .data import DatasetError
    from .registry import RegistryError
    from .request import RequestError

    try:
        return args.fn(args)
    except (BackboneError, HierarchyError, DatasetError, RegistryError, RequestError, ValueError) as e:
        print(f"ktmu: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
