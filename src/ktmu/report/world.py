"""What a concept world contains, as a JSON-ready record and as a readable listing (``ktmu world NAME``)."""
from __future__ import annotations

from typing import Any

from ktmu.concepts import Concept, Hierarchy


def _fine_record(c: Concept) -> dict[str, Any]:
    record: dict[str, Any] = {"name": c.name, "parent": c.parent, "aliases": list(c.aliases)}
    if c.audit_names:  # held-out names exist only where a world file gives them
        record["audit_names"] = list(c.audit_names)
    return record


def world_record(h: Hierarchy) -> dict[str, Any]:
    """A world as plain data: ``{"name", "coarse", "fine": [{"name", "parent", "aliases"[, "audit_names"]}], "levels"}``.

    ``coarse`` lists the coarse names in label order; ``fine`` is in label order too, so a list's
    position is the label index the datasets use.
    """
    return {
        "name": h.name,
        "coarse": list(h.coarse_names),
        "fine": [_fine_record(c) for c in h.fine],
        "levels": {level: list(names) for level, names in h.levels.items()},
    }


def _with_names(c: Concept) -> str:
    text = c.name
    if c.aliases:
        text += f" (also: {', '.join(c.aliases)})"
    if c.audit_names:
        text += f" [held out for the audit: {', '.join(c.audit_names)}]"
    return text


def format_world(h: Hierarchy) -> str:
    """A readable listing of a world: each coarse concept with its fine concepts and their other names, then the levels."""
    lines = [f"world {h.name}: {len(h.coarse)} coarse, {len(h.fine)} fine concepts"]
    for coarse in h.coarse:
        children = h.children(coarse.name)
        lines.append(f"{_with_names(coarse)} ({len(children)})")
        lines.extend(f"  {_with_names(c)}" for c in children)
    if h.levels:
        lines.append("levels (named forget requests):")
        lines.extend(f"  {level} ({len(names)}): {', '.join(names)}" for level, names in h.levels.items())
    return "\n".join(lines)
