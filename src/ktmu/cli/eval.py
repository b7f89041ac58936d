"""``ktmu eval``: zero-shot accuracy of a model on a world's test split and the zero-shot domains."""
from __future__ import annotations

import argparse
import time
from typing import Any

from ktmu.cli import options
from ktmu.cli.console import dump, say

HELP = "zero-shot accuracy of a model on a world's test split and the zero-shot domains"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    sp = options.command(subparsers, "eval", HELP)
    options.add_world_options(sp)
    sp.add_argument("--domains", nargs="+", help="evaluate these built-in domains by name instead (e.g. fashion digits)")
    options.add_json_file_option(sp)
    options.add_runtime_options(sp, training=False)
    return sp


def run(args: argparse.Namespace) -> int:
    from ktmu.backbones import load_backbone
    from ktmu.evaluation.zero_shot import evaluate_datasets
    from ktmu.outputs import prepare_out_file
    from ktmu.report.zero_shot import format_eval_table
    from ktmu.workflows.options import evaluation_sets

    t0 = time.time()
    rt = options.runtime(args)
    items, note = evaluation_sets(args.world, args.model, args.zero_shot, args.domains, args.data_root, args.hierarchy)
    if note:
        say(note)
    if args.json:
        prepare_out_file(args.json)
    backbone = load_backbone(args.model, device=rt.device, precision=rt.precision)
    backbone.set_image_pipeline(rt.image_pipeline)
    result = evaluate_datasets(backbone, items, progress=not args.quiet, batch_size=rt.eval_batch_size, workers=rt.workers)
    say(format_eval_table(result))
    say(f"({time.time() - t0:.1f} s)")
    if args.json:
        dump(result, args.json)
        say(f"wrote {args.json}")
    return 0
