"""``ktmu demo``: the main job on the embedded model: its zero-shot table, then forget the default request with nhl-kl."""
from __future__ import annotations

import argparse
import time
from typing import Any

from ktmu.cli import options
from ktmu.cli.console import say

HELP = "the main job: zero-shot table, then forget the default request with nhl-kl"
METHOD = "nhl-kl"  # the study's method, tuned on the embedded model


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    sp = options.command(subparsers, "demo", HELP)
    options.add_session_options(sp)
    return sp


def run(args: argparse.Namespace) -> int:
    from ktmu.report.tables import text_table
    from ktmu.report.zero_shot import format_eval_table
    from ktmu.runs.session import run_method

    t0 = time.time()
    cfg = options.train_config(args)
    rt = options.runtime(args)
    plan = options.plan(args)
    say("ktmu demo: the embedded mini-CLIP (MiniLM-L6 text tower + small CNN image tower), zero-shot:")
    session = options.open_session(args, plan, rt)
    say(format_eval_table({"model": session.backbone.name, "domains": session.original_scores["domains"]}))
    req = session.request
    say(f"\nUnlearning request ({args.level}): forget {', '.join(req.concepts)} ({req.goal}) with {METHOD}, "
        f"using {len(session.forget)} forget-set images and no retain data ...")
    record = run_method(session, METHOD, cfg, progress=not args.quiet)
    say(text_table(record["original"], [record]))
    per = record["per_class_fine"]
    say("fine accuracy per class, before -> after: " + ", ".join(f"{k} {per['original'][k]:.0f}->{per['unlearned'][k]:.0f}" for k in per["original"]))
    say(f"({time.time() - t0:.1f} s)")
    return 0
