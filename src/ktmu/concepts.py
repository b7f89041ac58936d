"""Concept hierarchy: coarse and fine concepts with aliases, loaded from YAML/JSON and validated."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from .registry import suggest

Level = Literal["coarse", "fine"]


class HierarchyError(ValueError):
    """A concept hierarchy file or lookup that does not make sense; the message names the problem."""


@dataclass(frozen=True)
class Concept:
    """One named concept. Fine concepts have a coarse parent; coarse concepts have none."""

    name: str
    level: Level
    parent: str | None = None
    aliases: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        """The canonical name followed by its aliases."""
        return (self.name, *self.aliases)


@dataclass(frozen=True)
class Hierarchy:
    """A two-level concept world. Index order is file order and defines the dataset labels."""

    name: str
    coarse: tuple[Concept, ...]
    fine: tuple[Concept, ...]
    domain: str = ""
    levels: dict[str, tuple[str, ...]] = field(default_factory=dict, compare=False)  # named requests, e.g. difficulty levels
    _lookup: dict[str, Concept] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._validate()

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> "Hierarchy":
        """Build from ``{"name", "coarse": [{name, aliases}], "fine": [{name, parent, aliases}]}``."""
        if not isinstance(data, dict) or "fine" not in data:
            raise HierarchyError(f"{source}: expected a mapping with 'coarse' and 'fine' lists.")

        def concepts(items: Any, level: Level) -> tuple[Concept, ...]:
            if not isinstance(items, list):
                raise HierarchyError(f"{source}: '{level}' must be a list of concepts.")
            out = []
            for i, item in enumerate(items):
                if isinstance(item, str):
                    item = {"name": item}
                if not isinstance(item, dict) or not str(item.get("name", "")).strip():
                    raise HierarchyError(f"{source}: {level} concept #{i} has no name.")
                parent = item.get("parent")
                if level == "coarse" and parent:
                    raise HierarchyError(
                        f"{source}: coarse concept {item['name']!r} has a parent; only fine concepts do."
                    )
                out.append(
                    Concept(
                        name=str(item["name"]).strip(),
                        level=level,
                        parent=str(parent).strip() if parent else None,
                        aliases=tuple(str(a).strip() for a in item.get("aliases", []) or []),
                    )
                )
            return tuple(out)

        return cls(
            name=str(data.get("name", Path(source).stem)),
            domain=str(data.get("domain", "")),
            coarse=concepts(data.get("coarse", []), "coarse"),
            fine=concepts(data["fine"], "fine"),
            levels={str(k): tuple(str(n) for n in v) for k, v in (data.get("levels") or {}).items()},
        )

    @classmethod
    def load(cls, path: str | Path) -> "Hierarchy":
        """Load a hierarchy from a ``.yaml``/``.yml`` or ``.json`` file."""
        path = Path(path)
        if not path.is_file():
            raise HierarchyError(f"hierarchy file {path} does not exist.")
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        return cls.from_dict(data, source=str(path))

    # ---- validation ---------------------------------------------------------------------------
    def _validate(self) -> None:
        if not self.fine:
            raise HierarchyError(f"hierarchy {self.name!r} has no fine concepts.")
        if not self.coarse:
            raise HierarchyError(f"hierarchy {self.name!r} has no coarse concepts; every fine concept needs one.")
        lookup: dict[str, Concept] = {}
        owner: dict[str, str] = {}
        for c in (*self.coarse, *self.fine):
            key = c.name.lower()
            if key in owner:
                raise HierarchyError(f"duplicate concept name {c.name!r} in hierarchy {self.name!r}.")
            owner[key] = c.name
            lookup[key] = c
        for c in self.coarse:
            if c.parent is not None or c.level != "coarse":
                raise HierarchyError(f"coarse concept {c.name!r} has a parent or a fine level; only fine concepts have parents.")
        coarse_names = {c.name.lower() for c in self.coarse}
        for c in self.fine:
            if c.parent is None:
                raise HierarchyError(f"fine concept {c.name!r} has no coarse parent; add 'parent: <coarse name>'.")
            if c.parent.lower() not in coarse_names:
                hint = suggest(c.parent, [k.name for k in self.coarse])
                raise HierarchyError(f"fine concept {c.name!r} names unknown parent {c.parent!r}.{hint}")
        for c in (*self.coarse, *self.fine):
            for alias in c.aliases:
                key = alias.lower()
                if key in owner and owner[key] != c.name:
                    raise HierarchyError(
                        f"alias {alias!r} of {c.name!r} clashes with concept or alias of {owner[key]!r}."
                    )
                owner[key] = c.name
                lookup[key] = c
        used = {c.parent.lower() for c in self.fine if c.parent}
        for c in self.coarse:
            if c.name.lower() not in used:
                raise HierarchyError(f"coarse concept {c.name!r} has no fine concept under it.")
        object.__setattr__(self, "_lookup", lookup)
        for level, names in self.levels.items():
            for n in names:
                if n.lower() not in lookup:
                    raise HierarchyError(f"level {level!r} names unknown concept {n!r}.")

    # ---- queries ------------------------------------------------------------------------------
    @property
    def coarse_names(self) -> list[str]:
        return [c.name for c in self.coarse]

    @property
    def fine_names(self) -> list[str]:
        return [c.name for c in self.fine]

    def find(self, name: str) -> Concept:
        """Return the concept called ``name`` or one of its aliases (case-insensitive)."""
        key = name.strip().lower()
        if key not in self._lookup:
            choices = [c.name for c in (*self.coarse, *self.fine)] + [a for c in (*self.coarse, *self.fine) for a in c.aliases]
            raise HierarchyError(
                f"no concept {name!r} in world {self.name!r}.{suggest(name, choices)} "
                f"Concepts: {', '.join(self.coarse_names + self.fine_names)}."
            )
        return self._lookup[key]

    def index(self, concept: Concept | str) -> int:
        """The label index of a concept within its level."""
        c = self.find(concept) if isinstance(concept, str) else concept
        names = self.coarse_names if c.level == "coarse" else self.fine_names
        return names.index(c.name)

    def fine_to_coarse(self) -> list[int]:
        """For each fine index, the index of its coarse parent."""
        coarse = [c.lower() for c in self.coarse_names]
        return [coarse.index(c.parent.lower()) for c in self.fine if c.parent]

    def children(self, coarse: str) -> list[Concept]:
        """The fine concepts under a coarse concept."""
        parent = self.find(coarse)
        return [c for c in self.fine if c.parent and c.parent.lower() == parent.name.lower()]

    def siblings(self, fine: str) -> list[Concept]:
        """The other fine concepts under the same coarse parent."""
        c = self.find(fine)
        return [s for s in self.children(c.parent or "") if s.name != c.name] if c.level == "fine" else []


def builtin_world(name: str) -> Hierarchy:
    """Load one of the hierarchies shipped in ``ktmu/worlds``."""
    path = Path(__file__).parent / "worlds" / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise HierarchyError(f"no built-in world {name!r}.{suggest(name, known)} Built-in worlds: {', '.join(known)}.")
    return Hierarchy.load(path)
