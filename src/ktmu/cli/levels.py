"""``ktmu levels``: rank fine concepts by how hard they are to forget apart from their siblings (train data only)."""
from __future__ import annotations

import argparse
from typing import Any

from ktmu.cli import options
from ktmu.cli.console import say

HELP = "rank fine concepts by how hard they are to forget apart from their siblings (train data only)"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    sp = options.command(subparsers, "levels", HELP)
    options.add_world_options(sp, zero_shot=False)
    options.add_runtime_options(sp, training=False)
    return sp


def run(args: argparse.Namespace) -> int:
    from ktmu.backbones import load_backbone
    from ktmu.data import load_dataset
    from ktmu.evaluation.difficulty import sibling_difficulty

    rt = options.runtime(args)
    train = load_dataset(args.world, "train", **options.data_options(args))
    backbone = load_backbone(args.model, device=rt.device, precision=rt.precision)
    backbone.set_image_pipeline(rt.image_pipeline)
    rows = sibling_difficulty(backbone, train, workers=rt.workers, progress=not args.quiet)
    say(f"{'concept':<12} {'sibling conf.':>13} {'text sim.':>9} {'train acc':>9}  siblings")
    for r in rows:
        say(f"{r['concept']:<12} {r['sibling_confusion']:>13.3f} {r['text_similarity']:>9.3f} {r['train_acc']:>9.1f}  {', '.join(r['siblings']) or '-'}")
    levels = train.hierarchy.levels
    say("levels in the world file: " + ("; ".join(f"{k}: {', '.join(v)}" for k, v in levels.items()) or "none"))
    return 0
