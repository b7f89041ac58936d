"""``ktmu pretrain``: pretrain the embedded mini-CLIP contrastively on fashion + digits."""
from __future__ import annotations

import argparse
from typing import Any

from ktmu.cli import options

HELP = "pretrain the embedded mini-CLIP contrastively on fashion + digits"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    from ktmu.engine.pretrain import PretrainConfig

    defaults = PretrainConfig()
    sp = options.command(subparsers, "pretrain", HELP)
    sp.add_argument("--out", required=True, help="safetensors file to write")
    sp.add_argument("--manifest", help="provenance JSON to write (default: beside --out)")
    sp.add_argument("--epochs", type=int, default=defaults.epochs)
    sp.add_argument("--batch-size", type=int, default=defaults.batch_size)
    sp.add_argument("--lr", type=float, default=defaults.lr)
    sp.add_argument("--seed", type=int, default=defaults.seed)
    sp.add_argument("--limit", type=int, default=None, help="images per world (quick runs)")
    sp.add_argument("--without", action="append", metavar="CONCEPT",
                    help="an oracle: never caption this fine concept by name (its images keep their coarse caption); repeatable")
    return sp


def run(args: argparse.Namespace) -> int:
    from ktmu.engine.pretrain import PretrainConfig
    from ktmu.report.zero_shot import format_eval_table
    from ktmu.runs.pretraining import pretrain_checkpoint

    cfg = PretrainConfig(epochs=args.epochs, seed=args.seed, batch_size=args.batch_size, lr=args.lr, limit_per_world=args.limit,
                         without=tuple(args.without or ()))
    done = pretrain_checkpoint(args.out, cfg, args.manifest, progress=not args.quiet)
    print(format_eval_table(done.zero_shot))
    print(f"wrote {done.weights} ({done.manifest['bytes'] / 1e6:.2f} MB, sha256 {done.manifest['sha256'][:16]}...) and "
          f"{done.manifest_path}; pretraining took {done.seconds / 60:.1f} min")
    return 0
