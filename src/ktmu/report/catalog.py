"""What ktmu has, by kind: methods, backbones, worlds, zero-shot domains and recipes, one line each (``ktmu ls``).

Each line is a name and the first line of its docstring (a method's and a domain's: its module's,
which names the paper or the dataset; a recipe's: its first comment line, the command that runs
it). Nothing heavy is imported: an entry not loaded yet is described from its source file.
"""
from __future__ import annotations

from pathlib import Path

KINDS = ("methods", "backbones", "worlds", "domains", "recipes")


def _registry_entries(kind: str) -> list[tuple[str, str]]:
    if kind == "methods":
        from ktmu.methods import METHODS

        return [(n, METHODS.describe(n, module=True)) for n in METHODS.names()]
    if kind == "backbones":
        from ktmu.backbones import BACKBONES

        return [(n, BACKBONES.describe(n)) for n in BACKBONES.names()]
    if kind == "worlds":  # what --world takes: the dataset adapters
        from ktmu.data import DATASETS

        return [(n, DATASETS.describe(n)) for n in DATASETS.names()]
    from ktmu.data.domains import BUILTIN_WORLDS, DOMAINS

    return [(n, f"the built-in {n} world's test split (ships with ktmu; no folder needed)" if n in BUILTIN_WORLDS
             else DOMAINS.describe(n, module=True)) for n in DOMAINS.names()]


def _recipe_entries() -> list[tuple[str, str]]:
    from ktmu.study.recipes import recipe_files, recipe_folder

    folder = recipe_folder()
    if folder is None:
        return []
    base = folder.parent
    return [(_relative(path, base), command) for path, command in recipe_files(folder)]


def _relative(path: Path, base: Path) -> str:
    try:
        return path.relative_to(base).as_posix()
    except ValueError:  # pragma: no cover - rglob stays under its folder
        return str(path)


def catalog(kind: str | None = None) -> dict[str, list[tuple[str, str]]]:
    """Kind -> ``(name, description)`` for every kind in :data:`KINDS`, or only ``kind``."""
    if kind is not None and kind not in KINDS:
        from ktmu.errors import UsageError
        from ktmu.registry import suggest

        raise UsageError(f"ktmu ls: unknown kind {kind!r}.{suggest(kind, list(KINDS))} Kinds: {', '.join(KINDS)}.")
    return {k: (_recipe_entries() if k == "recipes" else _registry_entries(k)) for k in ([kind] if kind else KINDS)}


def _plain(text: str) -> str:
    return text.replace("``", "")  # docstrings' code marks, noise on a terminal


def format_catalog(entries: dict[str, list[tuple[str, str]]], headers: bool = True) -> str:
    """One line per entry, names aligned; with ``headers`` each kind under a ``kind (count):`` line."""
    blocks = []
    for kind, rows in entries.items():
        width = max((len(name) for name, _ in rows), default=0)
        lines = [f"{'  ' if headers else ''}{name.ljust(width)}  {_plain(desc)}".rstrip() for name, desc in rows]
        if headers:
            lines.insert(0, f"{kind} ({len(rows)}):" if rows else f"{kind}: none found")
        elif not rows:
            lines = [f"no {kind} found"]
        blocks.append("\n".join(lines))
    return ("\n\n" if headers else "\n").join(blocks)
