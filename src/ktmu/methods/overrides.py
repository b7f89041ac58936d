"""A method's settings for one run: a recipe's values, then ``--set KEY=VALUE`` items, checked before anything loads.

A bench's ``--set`` applies to every benched method that has the key (``--set kl_weight=7`` on
``ga`` and ``nhl-kl`` sets nhl-kl's and leaves ga, which has no such setting, as it is); a key that
none of them has is a typo and an error. Example::

    method_settings("nhl-kl", ["margin=3"], base={"lr": 1e-4})     # {"lr": 1e-4, "margin": 3.0}
    bench_settings(["ga", "nhl-kl"], ["kl_weight=7"])              # {"ga": {}, "nhl-kl": {"kl_weight": 7.0}}
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

from ktmu.methods import METHODS, build_method
from ktmu.registry import suggest
from ktmu.settings import SettingsError, parse_set, resolve_key

# A recipe's settings of a method by name (``Recipe.method``): raises for a method the recipe does not list.
BaseSettings = Callable[[str], Mapping[str, Any]]


def has_setting(cls: type, item: str) -> bool:
    """Whether ``--set KEY=VALUE`` names a setting of ``cls`` (a malformed item counts, so that parsing reports it)."""
    key, sep, _ = item.partition("=")
    if not sep or not key.strip():
        return True
    try:
        resolve_key(cls, key)
    except SettingsError:
        return False
    return True


def method_settings(name: str, set_items: Sequence[str] = (), base: Mapping[str, Any] | None = None,
                    shared: bool = False) -> dict[str, Any]:
    """The settings ``name`` runs with: ``base`` (a recipe's values), then the ``--set`` items, which win.

    ``shared`` (a bench): only the items naming a setting of this method apply. The method is
    built once with the result, so a bad name or value fails here, before any model loads.
    """
    cls = METHODS.get(name)
    pairs = [item for item in set_items if not shared or has_setting(cls, item)]
    settings = {**(base or {}), **parse_set(pairs, cls)}
    build_method(name, **settings)
    return settings


def check_shared_settings(set_items: Sequence[str], methods: Sequence[str]) -> None:
    """Refuse a bench ``--set`` item that names a setting of none of ``methods`` (a typo), with did-you-mean."""
    classes = [METHODS.get(m) for m in methods]
    for item in set_items:
        if not any(has_setting(cls, item) for cls in classes):
            key = item.partition("=")[0].strip()
            known = sorted({f.name for cls in classes for f in dataclasses.fields(cls)})
            raise SettingsError(f"--set {key}: none of the benched methods ({', '.join(methods)}) has this setting."
                                f"{suggest(key.replace('-', '_'), known)} Known settings: {', '.join(known)}.")


def bench_settings(methods: Sequence[str], set_items: Sequence[str] = (), base: BaseSettings | None = None) -> dict[str, dict[str, Any]]:
    """Every benched method's settings (``base(name)``: a recipe's values, then the ``--set`` items each method has)."""
    check_shared_settings(set_items, methods)
    return {name: method_settings(name, set_items, base(name) if base else None, shared=True) for name in methods}
