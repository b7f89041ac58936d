"""``ktmu perf``: unlearning step time per method against plain fine-tuning and the study's loop, checkpoint scoring, evaluation throughput and peak memory."""
from __future__ import annotations

import argparse
from typing import Any

from ktmu.cli import options
from ktmu.cli.console import dump, say

HELP = ("measure unlearning step time per method against plain fine-tuning (and the reference study's loop), "
        "checkpoint-scoring overhead, evaluation throughput and peak memory")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    from ktmu.workflows.perf import BASELINES, PerfOptions
    from ktmu.workflows.perf_timing import PERF_PRECISIONS, VARIANTS

    pd = PerfOptions()
    sp = options.command(subparsers, "perf", HELP)
    sp.add_argument("--model", default=pd.model, help="backbone spec (random-init specs need no weights)")
    sp.add_argument("--methods", nargs="+", help="default: all registered")
    sp.add_argument("--batch-size", type=int, default=pd.batch_size)
    sp.add_argument("--images", type=int, default=pd.images, help="images for the evaluation-throughput measurement")
    sp.add_argument("--image-size", type=int, default=pd.image_size, help="synthetic image side in pixels (0 = the model's own)")
    sp.add_argument("--classes", type=int, default=pd.classes, help="fine classes of the synthetic world")
    sp.add_argument("--steps", type=int, default=pd.steps, help="timed steps per method")
    sp.add_argument("--epochs", type=int, default=pd.epochs, help="epochs of the nhl-kl run that measures the overhead outside the steps")
    sp.add_argument("--repeats", type=int, default=pd.repeats,
                    help="interleaved rounds; each ratio is the median of its per-round ratios, printed with their spread")
    sp.add_argument("--baseline", choices=BASELINES, help="also time the reference study's own loop (fp32) on the same model and batch: vs_study")
    sp.add_argument("--variants", nargs="+", choices=VARIANTS, default=[],
                    help="time ktmu's step with each of these changes too (AdamW implementation, channels-last)")
    sp.add_argument("--precisions", nargs="+", choices=PERF_PRECISIONS, default=[],
                    help="time ktmu's step in these precisions too (tf32: CUDA only), beside --precision")
    sp.add_argument("--profile", action="store_true", help="profile one run of plain steps: where the step's time goes, by kernel")
    sp.add_argument("--run-epochs", type=int, default=pd.run_epochs, help="epochs of the whole run vs_study_run is estimated for (the study's dogs: 8)")
    sp.add_argument("--run-steps", type=int, default=pd.run_steps, help="steps per epoch of that run (the study's dogs: 47)")
    options.add_json_file_option(sp)
    options.add_runtime_options(sp, training=True)
    return sp


def run(args: argparse.Namespace) -> int:
    from ktmu.methods import METHODS
    from ktmu.outputs import prepare_out_file
    from ktmu.workflows.options import check_perf_options
    from ktmu.workflows.perf import PerfOptions, format_perf, run_perf

    rt = options.runtime(args)
    if args.json:
        prepare_out_file(args.json)
    for name in args.methods or ():
        METHODS.get(name)
    opts = PerfOptions(model=args.model, runtime=rt, batch_size=args.batch_size, images=args.images, methods=args.methods,
                       image_size=args.image_size, classes=args.classes, steps=args.steps, epochs=args.epochs, repeats=args.repeats,
                       baseline=args.baseline, variants=args.variants, precisions=args.precisions, profile=args.profile,
                       run_epochs=args.run_epochs, run_steps=args.run_steps)
    check_perf_options(opts)
    result = run_perf(opts, progress=not args.quiet)
    say(format_perf(result))
    if args.json:
        dump(result, args.json)
        say(f"wrote {args.json}")
    return 0
