"""Recipes: YAML files in ``configs/`` that fix every setting of a bench or unlearning run.

A recipe has three parts (each file begins with a comment giving the command that runs it)::

    model: open_clip:ViT-L-14:openai      # session keys: what is loaded and how (RecipeSession)
    world: imgnetdogs
    level: difficult
    zero_shot: [stanford_cars, food101]    # names only; folders come from --zero-shot NAME=DIR
    seed: 1
    train: both
    trainer:                               # TrainConfig fields (seed and workers are session keys)
      epochs: 8
      selection: study
    methods:                               # registered method -> its hyperparameters
      nhl-kl: {lr: 1.0e-7, margin: 2.0}

Everything is checked when the file is read, before any data or model loads: an unknown key, a
value of the wrong type or out of range is a :class:`RecipeError` naming the file and the key (with
did-you-mean for misspelt keys and method names). The values become the command's defaults; a
flag given on the command line always wins (see ``ktmu.cli.app``).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import yaml

from ktmu.registry import RegistryError, suggest
from ktmu.settings import SettingsError, cast_mapping, in_range
from ktmu.engine.config import TrainConfig

SECTIONS = ("trainer", "methods")  # the two nested sections; every other top-level key is a session key
# Trainer fields that are session keys instead: the seed also draws the forget set, and the worker
# count is a runtime choice that does not change results.
TRAINER_AT_TOP = ("seed", "workers")


class RecipeError(SettingsError):
    """A recipe that cannot be used as written; the message names the file, the key and what to write."""


@dataclass
class RecipeSession:
    """The top-level keys of a recipe: what is loaded and how. None = not set (the command's default applies)."""

    settings_label: ClassVar[str] = "the recipe's top level"

    model: str | None = None  # backbone spec, e.g. open_clip:ViT-L-14:openai
    world: str | None = None  # dataset whose concepts are forgotten (its folder comes from --data-root)
    level: str | None = None  # named request of the world (easy, medium, difficult, ...)
    goal: str | None = None  # fine, coarse or hybrid
    max_per_concept: int | None = field(default=None, metadata=in_range(ge=1))  # forget-set images per forgotten fine concept
    seed: int | None = field(default=None, metadata=in_range(ge=0))  # draws the forget set and seeds the trainer
    precision: str | None = None  # fp32, bf16 or amp-fp16
    train: str | None = None  # which weights train: default, both, image, text, temperature or '+'-joined
    grad_checkpointing: bool | None = None  # recompute activations in backward (memory saver; results unchanged)
    eval_batch_size: int | None = field(default=None, metadata=in_range(ge=1))  # images per evaluation forward pass
    workers: int | None = field(default=None, metadata=in_range(ge=0))  # DataLoader worker processes
    device: str | None = None  # auto, cpu, cuda or cuda:N
    # zero_shot is a session key too, a list of domain names, checked separately (it is not a scalar).


SESSION_KEYS: tuple[str, ...] = tuple(f.name for f in fields(RecipeSession)) + ("zero_shot",)


@dataclass(frozen=True)
class Recipe:
    """A validated recipe file: its session values, trainer settings and per-method hyperparameters."""

    path: Path
    sha256: str
    session: dict[str, Any]  # session keys the file sets (zero_shot included), validated
    trainer: dict[str, Any]  # TrainConfig fields the file sets, validated
    methods: dict[str, dict[str, Any]]  # registered method name -> hyperparameters the file sets, validated

    def method(self, name: str) -> dict[str, Any]:
        """The hyperparameters this recipe sets for ``name``; a method it does not list is an error."""
        if name not in self.methods:
            raise RecipeError(
                f"{self.path}: the recipe has no settings for method {name!r}.{suggest(name, list(self.methods))} "
                f"It lists {', '.join(self.methods) or 'no method'}; add `{name}: {{}}` under methods: to run it with its own defaults."
            )
        return dict(self.methods[name])

    def values(self) -> dict[str, Any]:
        """The file's content as validated (for results.json)."""
        return {**self.session, "trainer": dict(self.trainer), "methods": {k: dict(v) for k, v in self.methods.items()}}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _mapping(value: Any, where: str, path: Path) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RecipeError(f"{path}: {where} must be a mapping of key: value lines, got {type(value).__name__} {value!r}.")
    return value


def _zero_shot(value: Any, path: Path) -> list[str]:
    from ktmu.data.domains import DOMAINS

    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise RecipeError(f"{path}: zero_shot must be a list of domain names (e.g. [food101, cifar100]) or none, got {value!r}.")
    if [n.lower() for n in names] == ["none"]:
        return ["none"]
    for name in names:
        if "=" in name:
            raise RecipeError(f"{path}: zero_shot lists names only, got {name!r}; give folders on the command line: --zero-shot {name}.")
        try:
            DOMAINS.get(name)
        except RegistryError as e:
            raise RecipeError(f"{path}: zero_shot: {e}") from None
    return list(names)


def _session(raw: dict, path: Path) -> dict[str, Any]:
    known = list(SESSION_KEYS + SECTIONS)
    for key in raw:
        if key.replace("-", "_").lower() not in SESSION_KEYS:  # the sections themselves were taken out, spelt exactly
            raise RecipeError(f"{path}: unknown top-level key {key!r}.{suggest(key, known)} A recipe's top level holds {', '.join(known)}.")
    scalars = {k: v for k, v in raw.items() if k.replace("-", "_").lower() != "zero_shot"}
    try:
        out = cast_mapping(RecipeSession, scalars)
    except SettingsError as e:
        raise RecipeError(f"{path}: {e}") from None
    if "world" in out and out["world"] is not None:
        from ktmu.data import DATASETS

        try:
            DATASETS.get(out["world"])
        except RegistryError as e:
            raise RecipeError(f"{path}: world: {e}") from None
    for key, value in raw.items():
        if key.replace("-", "_").lower() == "zero_shot":
            out["zero_shot"] = _zero_shot(value, path)
    return out


def _trainer(raw: dict, path: Path) -> dict[str, Any]:
    for key in raw:
        if isinstance(key, str) and key.replace("-", "_").lower() in TRAINER_AT_TOP:
            raise RecipeError(f"{path}: trainer: {key} is a top-level key (it applies to the whole session); move it out of trainer:.")
    try:
        values = cast_mapping(TrainConfig, raw)
        TrainConfig(**values)  # the cross-field and choice checks
    except SettingsError as e:
        raise RecipeError(f"{path}: trainer: {e}") from None
    return values


def _methods(raw: dict, path: Path) -> dict[str, dict[str, Any]]:
    from ktmu.methods import METHODS, build_method

    out: dict[str, dict[str, Any]] = {}
    for name, hyper in raw.items():
        try:
            cls = METHODS.get(str(name))
        except RegistryError as e:
            raise RecipeError(f"{path}: methods: {e}") from None
        try:
            values = cast_mapping(cls, _mapping(hyper, f"methods: {name}", path))
            build_method(str(name), **values)  # ranges and the method's own checks
        except SettingsError as e:
            raise RecipeError(f"{path}: methods: {name}: {e}") from None
        out[cls.name] = values
    return out


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe file; every problem is a :class:`RecipeError` naming the file."""
    p = Path(path)
    if not p.is_file():
        hint = " It is a folder; name one .yaml file in it." if p.is_dir() else " Recipes ship in configs/ of the ktmu repository (e.g. configs/study/imgnetdogs-difficult.yaml)."
        raise RecipeError(f"recipe {p} does not exist.{hint}")
    data = p.read_bytes()
    try:
        raw = yaml.safe_load(data.decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise RecipeError(f"{p} is not valid YAML: {e}") from None
    raw = _mapping(raw, "the file", p)
    bad = [k for k in raw if not isinstance(k, str)]
    if bad:
        raise RecipeError(f"{p}: keys must be text, got {bad[0]!r}.")
    session = _session({k: v for k, v in raw.items() if k not in SECTIONS}, p)
    trainer = _trainer(_mapping(raw.get("trainer"), "trainer", p), p)
    methods = _methods(_mapping(raw.get("methods"), "methods", p), p)
    return Recipe(p, _sha256(data), session, trainer, methods)
