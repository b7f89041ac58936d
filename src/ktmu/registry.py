"""A small generic registry: names -> classes or factories, with did-you-mean errors and lazy targets."""
from __future__ import annotations

import difflib
import importlib
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
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
