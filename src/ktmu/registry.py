"""A small generic registry: names -> classes or factories, with did-you-mean errors and lazy targets."""
from __future__ import annotations

import ast
import difflib
import importlib
import importlib.util
import inspect
import sys
from typing import Callable, Generic, Iterator, TypeVar

from ktmu.errors import KtmuError

T = TypeVar("T")


class RegistryError(KtmuError, KeyError):
    """An unknown or duplicate name in a registry; the message says what to do."""

    def __str__(self) -> str:  # KeyError quotes its message; users should read plain text
        return str(self.args[0]) if self.args else ""


def suggest(name: str, choices: list[str], n: int = 3) -> str:
    """Return a ' Did you mean ...?' sentence for the closest choices, or ''."""
    close = difflib.get_close_matches(name.lower(), [c.lower() for c in choices], n=n, cutoff=0.5)
    lowered = {c.lower(): c for c in choices}
    if not close:
        return ""
    return " Did you mean " + " or ".join(repr(lowered[c]) for c in close) + "?"


def _first_line(doc: str | None) -> str:
    return doc.strip().splitlines()[0].strip() if doc and doc.strip() else ""


def _source_docstring(module: str, attr: str | None) -> str | None:
    """The docstring of ``module`` (``attr`` None) or of its top-level class or function ``attr``, parsed, not imported."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    with open(spec.origin, encoding="utf-8") as fh:
        tree = ast.parse(fh.read())
    if attr is None:
        return ast.get_docstring(tree)
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == attr:
            return ast.get_docstring(node)
    return None


class Registry(Generic[T]):
    """Maps unique lowercase names to objects; values may be lazy ``"module:attr"`` strings."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T | str] = {}

    def register(self, name: str, obj: T | str | None = None) -> Callable[[T], T] | T | str:
        """Register ``obj`` under ``name``; used bare it is a class decorator."""
        key = name.lower()
        if key in self._items:
            raise RegistryError(f"{self.kind} {name!r} is already registered; pick another name.")
        if obj is not None:
            self._items[key] = obj
            return obj

        def deco(target: T) -> T:
            self._items[key] = target
            return target

        return deco

    def get(self, name: str) -> T:
        """Return the object registered as ``name`` (importing a lazy target on first use)."""
        key = name.lower()
        if key not in self._items:
            raise RegistryError(
                f"unknown {self.kind} {name!r}.{suggest(name, self.names())} "
                f"Known {self.kind}s: {', '.join(self.names())}."
            )
        obj = self._items[key]
        if isinstance(obj, str):
            module, _, attr = obj.partition(":")
            obj = getattr(importlib.import_module(module), attr)
            self._items[key] = obj
        return obj  # type: ignore[return-value]

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        return sorted(self._items)

    def describe(self, name: str, module: bool = False) -> str:
        """The first line of the docstring of ``name``'s object (``module``: of the module defining it), or ''.

        A lazy ``"module:attr"`` target that is not imported yet is read from its source file, so
        that listing every entry imports no heavy backend.
        """
        if name.lower() not in self._items:
            self.get(name)  # the did-you-mean error
        obj = self._items[name.lower()]
        if isinstance(obj, str):
            mod, _, attr = obj.partition(":")
            if mod not in sys.modules:
                return _first_line(_source_docstring(mod, None if module else attr))
            obj = getattr(sys.modules[mod], attr)
        return _first_line(inspect.getdoc(inspect.getmodule(obj) if module else obj))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
