"""``ktmu validate CONFIG``: check a recipe without loading any data or model, and summarise what it runs."""
from __future__ import annotations

import argparse
from typing import Any

from ktmu.cli import options

HELP = "check a recipe (configs/*.yaml) without loading any data or model, and summarise what it runs"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    sp = options.command(subparsers, "validate", HELP)
    # dest is not "config": that name makes a command take the recipe's values as its defaults
    sp.add_argument("recipe_file", metavar="CONFIG", help="the recipe to check, e.g. configs/study/imgnetdogs-difficult.yaml")
    return sp


def _values(values: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items()) or "-"


def run(args: argparse.Namespace) -> int:
    from ktmu.study.recipes import check_recipe, load_recipe, recipe_command

    recipe = load_recipe(args.recipe_file)
    check_recipe(recipe)
    command = recipe_command(recipe.path)
    session = {k: v for k, v in recipe.session.items() if k != "zero_shot"}
    print(f"{recipe.path}: a valid recipe (sha256 {recipe.sha256[:16]}...)")
    if command.startswith("ktmu "):
        print(f"  runs with: {command}")
    print(f"  session: {_values(session)}")
    print(f"  trainer: {_values(recipe.trainer)}")
    print(f"  methods ({len(recipe.methods)}): {', '.join(recipe.methods) or 'none'}")
    zero_shot = recipe.session.get("zero_shot")
    if zero_shot:
        print(f"  zero-shot: {', '.join(zero_shot)}" + ("" if zero_shot == ["none"] else " (folders from --zero-shot NAME=DIR)"))
    return 0
