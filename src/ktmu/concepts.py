"""Concept hierarchy: coarse and fine concepts with aliases, loaded from YAML/JSON and validated."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from ktmu.registry import suggest
from ktmu.errors import KtmuError

Level = Literal["coarse", "fine"]


class HierarchyError(KtmuError, ValueError):
    """A concept hierarchy file or lookup that does not make sense; the message names the problem."""


@dataclass(frozen=True)
class Concept:
    """One named concept. Fine concepts have a coarse parent; coarse concepts have none."""

    name: str
    level: Level
    parent: str | None = None
    aliases: tuple[str, ...] = ()
    # Held-out names: other names of the concept that only the knowledge audit uses. Methods,
    # requests and ``Hierarchy.find`` never see them, so an audit that still finds the concept
    # under one of them shows the knowledge survived, not just the words a method was shown.
    audit_names: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        """The canonical name followed by its aliases: every name a method may use."""
        return (self.name, *self.aliases)

    @property
    def all_names(self) -> tuple[str, ...]:
        """Every name the concept has: ``names`` followed by the held-out ``audit_names`` (for pretraining and the audit)."""
        return (*self.names, *self.audit_names)


@dataclass(frozen=True)
class Hierarchy:
    """A two-level concept world. Index order is file order and defines the dataset labels."""

    name: str
    coarse: tuple[Concept, ...]
    fine: tuple[Concept, ...]
    domain: str = ""
    levels: dict[str, tuple[str, ...]] = field(default_factory=dict, compare=False)  # named requests, e.g. difficulty levels
    # The world's own prompt templates (``templates: {train: [...], test: [...]}`` in the world file):
    # ``train`` captions class names during unlearning, ``test`` in evaluation. Empty = ktmu's generic set.
    train_templates: tuple[str, ...] = field(default=(), compare=False)
    test_templates: tuple[str, ...] = field(default=(), compare=False)
    _lookup: dict[str, Concept] = field(default_factory=dict, repr=False, compare=False)
    _audit_lookup: dict[str, Concept] = field(default_factory=dict, repr=False, compare=False)  # held-out names only

    def __post_init__(self) -> None:
        self._validate()

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> "Hierarchy":
        """Build from ``{"name", "coarse": [{name, aliases, audit_names}], "fine": [{name, parent, aliases, audit_names}]}``."""
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
                        aliases=_name_list(item.get("aliases"), f"{source}: aliases of {level} concept #{i}"),
                        audit_names=_name_list(item.get("audit_names"), f"{source}: audit_names of {level} concept #{i}"),
                    )
                )
            return tuple(out)

        return cls(
            name=str(data.get("name", Path(source).stem)),
            domain=str(data.get("domain", "")),
            coarse=concepts(data.get("coarse", []), "coarse"),
            fine=concepts(data["fine"], "fine"),
            levels={str(k): _name_list(v, f"{source}: level {k!r}") for k, v in _levels(data.get("levels"), source).items()},
            **_templates(data.get("templates"), source),
        )

    @classmethod
    def load(cls, path: str | Path) -> "Hierarchy":
        """Load a hierarchy from a ``.yaml``/``.yml`` or ``.json`` file."""
        path = Path(path)
        if not path.is_file():
            raise HierarchyError(f"hierarchy file {path} does not exist.")
        try:
            text = path.read_text(encoding="utf-8")
            data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError) as e:
            raise HierarchyError(f"hierarchy file {path} is not valid UTF-8 {'JSON' if path.suffix == '.json' else 'YAML'}: {e}") from e
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
        audit: dict[str, Concept] = {}
        for c in (*self.coarse, *self.fine):
            for held in c.audit_names:
                key = held.lower()
                if key in owner:
                    whose = "one of its own method-visible names" if owner[key] == c.name else f"a concept or alias of {owner[key]!r}"
                    raise HierarchyError(
                        f"audit name {held!r} of {c.name!r} clashes with {whose}; a held-out name must be unknown "
                        f"to methods and belong to one concept (remove it from 'aliases' or from 'audit_names')."
                    )
                if key in audit and audit[key].name != c.name:
                    raise HierarchyError(f"audit name {held!r} of {c.name!r} clashes with an audit name of {audit[key].name!r}.")
                audit[key] = c
        object.__setattr__(self, "_audit_lookup", audit)
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

    def find(self, name: str, include_audit: bool = False) -> Concept:
        """Return the concept called ``name`` or one of its aliases (case-insensitive).

        Held-out audit names resolve only with ``include_audit=True`` (the knowledge audit);
        requests and methods must never reach a concept through them.
        """
        key = name.strip().lower()
        if key in self._lookup:
            return self._lookup[key]
        if include_audit and key in self._audit_lookup:
            return self._audit_lookup[key]
        if key in self._audit_lookup:
            c = self._audit_lookup[key]
            raise HierarchyError(
                f"{name!r} is a held-out audit name of {c.name!r} in world {self.name!r}: only the audit uses it. "
                f"Name the concept by one of {', '.join(repr(n) for n in c.names)}."
            )
        everything = (*self.coarse, *self.fine)
        choices = [c.name for c in everything] + [a for c in everything for a in c.aliases]
        if include_audit:
            choices += [a for c in everything for a in c.audit_names]
        raise HierarchyError(
            f"no concept {name!r} in world {self.name!r}.{suggest(name, choices)} "
            f"Concepts: {', '.join(self.coarse_names + self.fine_names)}."
        )

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


def _name_list(value: Any, what: str) -> tuple[str, ...]:
    """Names from a world file: a list of names, one name, or nothing; blank names are dropped."""
    if value is None:
        return ()
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        value = [value]  # "aliases: blouse" means one alias, not one per letter
    if not isinstance(value, list):
        raise HierarchyError(f"{what} must be a list of names, got {value!r}.")
    return tuple(n for n in (str(a).strip() for a in value) if n)


def _levels(value: Any, source: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise HierarchyError(f"{source}: 'levels' must map level names to lists of concepts, got {value!r}.")
    return value


def _templates(value: Any, source: str) -> dict[str, tuple[str, ...]]:
    """``{"train_templates", "test_templates"}`` from a world file's ``templates: {train: [...], test: [...]}``."""
    if value is None:
        return {}
    if not isinstance(value, dict) or set(value) - {"train", "test"}:
        raise HierarchyError(f"{source}: 'templates' must be a mapping with 'train' and/or 'test' lists of captions like \"a photo of a {{}}.\".")
    out = {}
    for split, items in value.items():
        names = _name_list(items, f"{source}: templates.{split}")
        bad = [t for t in names if t.count("{}") != 1]
        if bad:
            raise HierarchyError(f"{source}: template {bad[0]!r} in templates.{split} needs exactly one '{{}}' where the concept name goes.")
        out[f"{split}_templates"] = names
    return out


def builtin_world(name: str) -> Hierarchy:
    """Load one of the hierarchies shipped in ``ktmu/worlds``."""
    path = Path(__file__).parent / "worlds" / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise HierarchyError(f"no built-in world {name!r}.{suggest(name, known)} Built-in worlds: {', '.join(known)}.")
    return Hierarchy.load(path)


WORLD_FILE_SUFFIXES = (".yaml", ".yml", ".json")  # a name ending so is a world file, anything else a built-in world


def load_world(name_or_path: str | Path) -> Hierarchy:
    """A world by built-in name (``fashion``) or from a world file (``.yaml``/``.yml``/``.json``), as ``ktmu world`` takes it."""
    return Hierarchy.load(name_or_path) if Path(name_or_path).suffix in WORLD_FILE_SUFFIXES else builtin_world(str(name_or_path))
