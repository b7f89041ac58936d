"""``ktmu prepare``: the study's image lists (train.jsonl / test.jsonl) for the ImageNet or CompCars copy you have."""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from ktmu.cli import options

HELP = "write the study's image lists (train.jsonl/test.jsonl) for the ImageNet or CompCars copy you have"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    sp = options.command(subparsers, "prepare", HELP)
    sp.add_argument("dataset", choices=["imgnetdogs", "compcars-s"])
    options.add_out_folder(sp, "train.jsonl, test.jsonl and prepared.json")
    sp.add_argument("--imagenet-root", help="imgnetdogs: ImageNet-1k folder with train/<wnid>/ and val/ (val/<wnid>/ or flat)")
    sp.add_argument("--val-labels", help="imgnetdogs, flat val/: LOC_val_solution.csv, or ILSVRC2012_validation_ground_truth.txt beside the devkit's meta.mat")
    sp.add_argument("--root", help="compcars-s: CompCars-S folder laid out <make>/<model>/<year>/<image>.jpg")
    return sp


def run(args: argparse.Namespace) -> int:
    from ktmu.errors import UsageError
    from ktmu.outputs import dumps_json
    from ktmu.study.prepare import prepare_compcars_s, prepare_imgnetdogs

    t0 = time.time()
    if args.dataset == "imgnetdogs":
        if not args.imagenet_root:
            raise UsageError("ktmu prepare imgnetdogs needs --imagenet-root DIR (the ImageNet-1k folder holding train/ and val/).")
        summary = prepare_imgnetdogs(args.imagenet_root, args.out, val_labels=args.val_labels)
    else:
        if not args.root:
            raise UsageError("ktmu prepare compcars-s needs --root DIR (the CompCars-S folder laid out <make>/<model>/<year>/<image>).")
        summary = prepare_compcars_s(args.root, args.out)
    print(dumps_json(summary))
    print(f"wrote {Path(args.out) / 'train.jsonl'}, test.jsonl and prepared.json ({time.time() - t0:.1f} s); "
          f"use: --world {args.dataset} --data-root {args.out}")
    return 0
