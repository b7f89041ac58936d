"""``ktmu ls [KIND]``: what ktmu has (methods, backbones, worlds, zero-shot domains, recipes), one line each."""
from __future__ import annotations

import argparse
from typing import Any

from ktmu.cli import options

HELP = "list the registered methods, backbones, worlds and zero-shot domains and the shipped recipes, one line each"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    from ktmu.report.catalog import KINDS

    sp = options.command(subparsers, "ls", HELP)
    sp.add_argument("kind", nargs="?", choices=KINDS, help="list only this kind (default: every kind, each under a heading)")
    return sp


def run(args: argparse.Namespace) -> int:
    from ktmu.report.catalog import catalog, format_catalog

    print(format_catalog(catalog(args.kind), headers=args.kind is None))
    return 0
