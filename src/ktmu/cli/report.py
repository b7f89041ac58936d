"""``ktmu report RUN_DIR [RUN_DIR ...] --out FILE.html``: one self-contained HTML page of a run's results and figures."""
from __future__ import annotations

import argparse
from typing import Any

from ktmu.cli import options
from ktmu.cli.console import say


HELP = ("one self-contained HTML page of run folders (unlearn, bench, audit, perf): figures inline, the numbers behind each "
        "embedded as JSON, tables, provenance; opens from disk with no network")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Declare ``ktmu report`` and its options."""
    from ktmu.report.page import FORMATS

    sp = options.command(subparsers, "report", HELP)
    sp.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders (or result files: results.json, audit.json, a perf --json file)")
    sp.add_argument("--out", help="the HTML file to write (default for one folder: RUN_DIR/report.html)")
    sp.add_argument("--overwrite", action="store_true", help="replace an existing --out (and figure files in --figures)")
    sp.add_argument("--figures", metavar="DIR", help="also write each figure as its own file in DIR (for papers)")
    sp.add_argument("--format", choices=FORMATS, default="png", help="file format of --figures (default png)")
    return sp


def run(args: argparse.Namespace) -> int:
    """Build and write the page; one ``ktmu: error:`` line for run folders that cannot be reported."""
    import time

    from ktmu.report.page import write_report
    from ktmu.workflows.provenance import command_line

    t0 = time.perf_counter()
    out = write_report(args.runs, args.out, overwrite=args.overwrite, figures_dir=args.figures, fmt=args.format, command=command_line())
    if not args.quiet:  # --quiet: only errors
        extra = f" and its figures in {args.figures}" if args.figures else ""
        say(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB){extra} in {time.perf_counter() - t0:.1f} s")
    return 0
