"""The ``ktmu`` command line: one module per command over the library; no decisions, only wiring.

Each command is a module ``ktmu.cli.<name>`` with ``add_parser(subparsers)`` (its options, mostly the
shared groups of :mod:`ktmu.cli.options`) and ``run(args) -> int``; adding a command is adding its
module and its name to :data:`COMMANDS`. Every command checks what it can before loading a model
(names, settings, data, the output folder). A user's mistake is a :class:`ktmu.errors.KtmuError`:
one ``ktmu: error: ...`` line and exit code 2; anything else is a bug and keeps its traceback
(exit code 1). Under ``accelerate launch`` every process runs the same command and only the main
one prints and writes.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Sequence

from ktmu.errors import KtmuError

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Command modules in the order `ktmu --help` lists them.
COMMANDS: tuple[str, ...] = ("eval", "pretrain", "unlearn", "sequence", "bench", "tune", "levels", "demo", "world", "prepare", "audit",
                             "perf", "report", "export", "ls", "validate")


def build_parser() -> argparse.ArgumentParser:
    """The ``ktmu`` parser: ``--version`` and one subcommand per module in :data:`COMMANDS` (its ``run`` in ``args.run``)."""
    from ktmu import __version__

    parser = argparse.ArgumentParser(prog="ktmu", description="Knowledge-tracing machine unlearning for CLIP-family models.")
    parser.add_argument("--version", action="version", version=f"ktmu {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"ktmu.cli.{name}")
        module.add_parser(sub).set_defaults(run=module.run)
    parser.commands = dict(sub.choices)  # type: ignore[attr-defined]  # name -> subparser, for a recipe's defaults
    return parser


def apply_recipe(parser: argparse.ArgumentParser, argv: Sequence[str], args: argparse.Namespace) -> argparse.Namespace:
    """With ``--config FILE``: parse ``argv`` again with the recipe's values as the command's defaults, so that a flag given wins."""
    if not getattr(args, "config", None):
        return args
    from ktmu.cli.console import say
    from ktmu.study.recipes import check_recipe_zero_shot, load_recipe, recipe_defaults

    recipe = load_recipe(args.config)
    parser.commands[args.command].set_defaults(**recipe_defaults(recipe, args.command))  # type: ignore[attr-defined]
    args = parser.parse_args(list(argv))
    note = check_recipe_zero_shot(recipe, args.zero_shot)
    if note:
        say(note)
    return args


def parse_args(argv: Sequence[str], parser: argparse.ArgumentParser | None = None) -> argparse.Namespace:
    """The namespace a command runs with: ``argv`` parsed, then a ``--config`` recipe applied (:func:`apply_recipe`)."""
    parser = parser or build_parser()
    return apply_recipe(parser, argv, parser.parse_args(list(argv)))


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``ktmu`` command; a :class:`~ktmu.errors.KtmuError` becomes one ``ktmu: error:`` line and exit code 2."""
    from ktmu.cli.console import quiet_libraries
    from ktmu.workflows.provenance import set_command

    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    set_command(argv)  # results record this command, also when main() is called from Python
    args = parser.parse_args(argv)
    quiet_libraries()
    try:
        args = apply_recipe(parser, argv, args)
        return args.run(args)
    except KtmuError as e:  # a user's mistake: one line; everything else is a bug and keeps its traceback
        message = str(e).replace("\n", " ")  # one line, whatever the message holds
        print(f"ktmu: error: {message}", file=sys.stderr)
        return 2


__all__ = ["COMMANDS", "apply_recipe", "build_parser", "main", "parse_args"]
