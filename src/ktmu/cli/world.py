"""``ktmu world NAME``: a world's coarse and fine concepts with their aliases, and its named levels."""
from __future__ import annotations

import argparse
from typing import Any

from ktmu.cli import options

HELP = "print a world: coarse and fine concepts with their aliases, and its named levels"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    sp = options.command(subparsers, "world", HELP)
    sp.add_argument("name", help="a built-in world (fashion, digits, imgnetdogs, compcars-s) or a world file (.yaml/.json)")
    sp.add_argument("--json", action="store_true", help='print {"name", "coarse", "fine": [{"name", "parent", "aliases"}], "levels"}')
    return sp


def run(args: argparse.Namespace) -> int:
    from ktmu.concepts import load_world
    from ktmu.outputs import dumps_json
    from ktmu.report.world import format_world, world_record

    world = load_world(args.name)
    print(dumps_json(world_record(world)) if args.json else format_world(world))
    return 0
