"""``ktmu tune``: choose each method's learning rate on forget-set data only (no test image is seen)."""
from __future__ import annotations

import argparse
from typing import Any

from ktmu.cli import options
from ktmu.cli.console import say

HELP = "choose each method's learning rate on forget-set data only"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    from ktmu.runs.tune import DEFAULT_LRS, THRESHOLD

    sp = options.command(subparsers, "tune", HELP)
    sp.add_argument("--methods", nargs="+", help="default: all registered")
    sp.add_argument("--lrs", nargs="+", type=float, default=list(DEFAULT_LRS))
    sp.add_argument("--threshold", type=float, default=THRESHOLD, help="forget-train fine accuracy (%%) that counts as forgotten")
    options.add_request_options(sp)
    options.add_session_options(sp)
    return sp


def run(args: argparse.Namespace) -> int:
    from ktmu.methods import METHODS
    from ktmu.runs.options import check_learning_rates
    from ktmu.runs.tune import tune_lr

    methods = args.methods or METHODS.names()
    for name in methods:
        METHODS.get(name)
    check_learning_rates(args.lrs)
    rt = options.runtime(args)
    plan = options.plan(args, args.forget, args.goal, evaluate=False)
    session = options.open_session(args, plan, rt)
    say(f"tuning on forget-set data only: forget {', '.join(session.request.concepts)} ({session.request.goal}), {len(session.forget)} images")
    say("score = forget-train accuracy at the forgotten level (fine accuracy for a fine goal)")
    say(f"{'method':<12} {'lr':>8} {'epoch':>5} {'score %':>8} {'forget coarse %':>15}")
    for name in methods:
        rows, chosen = tune_lr(session, name, args.lrs, args.epochs, args.threshold, progress=not args.quiet)
        for r in rows:
            mark = "  <- chosen" if r.lr == chosen else ""
            say(f"{name:<12} {r.lr:>8.0e} {r.epoch:>5} {r.score:>8.1f} {r.forget_coarse:>15.1f}{mark}", flush=True)
    return 0
