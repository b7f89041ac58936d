"""Build a hierarchy from (coarse, fine) name pairs found in a user's data."""
from __future__ import annotations

from typing import Iterable

from ktmu.concepts import Hierarchy
from ktmu.data.base import DatasetError


def hierarchy_from_pairs(pairs: Iterable[tuple[str, str]], name: str) -> Hierarchy:
    """One coarse concept per distinct coarse name, one fine per fine name, in sorted order."""
    parent: dict[str, str] = {}
    for coarse, fine in pairs:
        if parent.setdefault(fine, coarse) != coarse:
            raise DatasetError(f"fine label {fine!r} appears under two coarse labels: {parent[fine]!r} and {coarse!r}.")
    if not parent:
        raise DatasetError(f"no labelled images found for {name!r}.")
    return Hierarchy.from_dict(
        {
            "name": name,
            "coarse": sorted(set(parent.values())),
            "fine": [{"name": f, "parent": parent[f]} for f in sorted(parent)],
        },
        source=name,
    )
