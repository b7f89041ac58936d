"""Recipes: YAML files in ``configs/`` that fix every setting of a bench or unlearning run.

A recipe has three parts (each file begins with a comment giving the command that runs it)::

    model: open_clip:ViT-L-14:openai      # session keys: what is loaded and how (RecipeSession)
    world: imgnetdogs
    level: difficult
    zero_shot: [stanford_cars, food101]    # names only; folders come from --zero-shot NAME=DIR
    steps: [shirt, coat, sandal]           # ktmu sequence only: one request per step (a name, or a list of names)
    seed: 1
    train: both
    trainer:                               # TrainConfig fields (seed and workers are session keys)
      epochs: 8
      selection: study
    methods:                               # registered method -> its hyperparameters
      nhl-kl: {lr: 1.0e-7, margin: 2.0}

Everything is checked when the file is read, before any data or model loads: an unknown key, a
value of the wrong type or out of range is a :class:`RecipeError` naming the file and the key (with
did-you-mean for misspelt keys and method names). The values become the command's defaults
(:func:`recipe_defaults`); a flag given on the command line always wins (see :func:`ktmu.cli.parse_args`),
and results.json records the file and what the command line changed (:func:`recipe_record`).
:func:`check_recipe` checks the names a recipe refers to without loading any data or model
(``ktmu validate``); :func:`recipe_files` lists the shipped recipes (``ktmu ls recipes``).
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Mapping

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
    neighbours: int | None = field(default=None, metadata=in_range(ge=0))  # K neighbour exemplars per neighbour concept (0: retain-free)
    neighbours_scope: str | None = None  # siblings (the forgotten concepts' siblings) or all (every kept fine concept)
    # zero_shot and steps are session keys too, lists checked separately (they are not scalars).


LIST_KEYS = ("zero_shot", "steps")  # session keys whose values are lists
SESSION_KEYS: tuple[str, ...] = tuple(f.name for f in fields(RecipeSession)) + LIST_KEYS


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


def _steps(value: Any, path: Path) -> list[list[str]]:
    """A recipe's ``steps`` (``ktmu sequence``): a list of steps, each a concept name or a list of names."""
    steps = value if isinstance(value, list) else None
    out = [[s] if isinstance(s, str) else s for s in steps or []]
    if not out or not all(isinstance(s, list) and s and all(isinstance(n, str) and n for n in s) for s in out):
        raise RecipeError(f"{path}: steps must be a list of steps, each a concept name or a list of names (e.g. [shirt, coat, [sandal, bag]]), "
                          f"got {value!r}.")
    return out


def _session(raw: dict, path: Path) -> dict[str, Any]:
    known = list(SESSION_KEYS + SECTIONS)
    for key in raw:
        if key.replace("-", "_").lower() not in SESSION_KEYS:  # the sections themselves were taken out, spelt exactly
            raise RecipeError(f"{path}: unknown top-level key {key!r}.{suggest(key, known)} A recipe's top level holds {', '.join(known)}.")
    scalars = {k: v for k, v in raw.items() if k.replace("-", "_").lower() not in LIST_KEYS}
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
        elif key.replace("-", "_").lower() == "steps":
            out["steps"] = _steps(value, path)  # read by ktmu sequence (cli/sequence.py), not a flag's default
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


# ---- a recipe meets a command -----------------------------------------------------------------------
# Trainer fields with a command-line flag of the same name: a recipe's value becomes that flag's
# default. The other trainer fields travel to the TrainConfig as ``trainer_settings``.
TRAINER_FLAGS = ("lr", "epochs", "batch_size", "selection", "schedule")


def recipe_defaults(recipe: Recipe, command: str) -> dict[str, Any]:
    """A command's defaults from a recipe: session keys and flagged trainer fields by name, the other trainer fields bundled.

    ``trainer_settings`` holds the trainer fields without a flag, ``recipe`` the recipe itself; for
    ``bench`` the recipe's ``methods:`` section is what runs (``methods``).
    """
    defaults = {k: v for k, v in recipe.session.items() if v is not None and k != "steps"}  # steps: ktmu sequence reads the recipe
    defaults.update({k: v for k, v in recipe.trainer.items() if k in TRAINER_FLAGS})
    defaults["trainer_settings"] = {k: v for k, v in recipe.trainer.items() if k not in TRAINER_FLAGS}
    defaults["recipe"] = recipe
    if command == "bench" and recipe.methods:
        defaults["methods"] = list(recipe.methods)
    return defaults


def check_recipe_zero_shot(recipe: Recipe, zero_shot: list[str] | None) -> str | None:
    """Check the run's ``--zero-shot`` against the recipe's suite; a note to print when they differ, else None.

    A recipe names its zero-shot domains; the folders of those read from disk must come from the
    command line (``--zero-shot NAME=DIR``, or ``--zero-shot none``): else a :class:`RecipeError`.
    """
    from ktmu.data.domains import DOMAINS

    names = recipe.session.get("zero_shot")
    if not names or names == ["none"]:
        return None
    given = zero_shot or []
    if given == names:  # not given on the command line
        need = [n for n in names if DOMAINS.get(n).needs_root]
        if need:
            raise RecipeError(f"{recipe.path} measures zero-shot on {', '.join(names)}: give their folders, "
                              f"--zero-shot {' '.join(f'{n}=DIR' for n in names)} (or --zero-shot none to skip them).")
        return None
    ran = sorted(g.partition("=")[0].lower() for g in given)
    if ran != sorted(n.lower() for n in names):
        return (f"note: {recipe.path} measures zero-shot on {', '.join(names)}; this run measures {', '.join(ran) or 'none'} "
                "(--zero-shot), so its zero-shot column is not the recipe's.")
    return None


def recipe_record(recipe: Recipe | None, session: Mapping[str, Any], cfg: TrainConfig,
                  hypers: Mapping[str, Mapping[str, Any]]) -> dict[str, Any] | None:
    """What results.json records of the recipe (None without one): file, sha256, content, the values that ran, what the command line changed.

    ``session``: the run's value of every :data:`SESSION_KEYS` key; ``hypers``: method -> the settings it ran with.
    """
    from ktmu.methods import build_method

    if recipe is None:
        return None
    trainer = asdict(cfg)
    methods = {name: build_method(name, **h).hyperparameters() for name, h in hypers.items()}
    # a command that runs no steps (all but ktmu sequence) leaves the recipe's steps unread, not overridden
    changed = [k for k, v in recipe.session.items() if v is not None and session.get(k) != v and not (k == "steps" and session.get(k) is None)]
    changed += [f"trainer.{k}" for k, v in recipe.trainer.items() if trainer.get(k) != v]
    changed += [f"methods.{m}.{k}" for m in methods for k, v in recipe.methods.get(m, {}).items() if methods[m].get(k) != v]
    return {"path": str(recipe.path), "absolute_path": str(recipe.path.resolve()), "sha256": recipe.sha256, "file": recipe.values(),
            "resolved": {**{k: session.get(k) for k in SESSION_KEYS}, "trainer": trainer, "methods": methods},
            "overridden_on_command_line": changed}


# ---- checking and listing recipes ------------------------------------------------------------------
COMMAND_DEFAULTS = {"world": "fashion"}  # the commands' default world, for a recipe that names a level but no world


def check_recipe(recipe: Recipe) -> None:
    """Check what :func:`load_recipe` leaves to run time and needs no data: the model kind, precision, goal and level.

    A level is checked against a built-in world's hierarchy; a world read from your own folder
    (jsonl, imagefolder) takes its hierarchy from the command line, so its level is not checked here.
    """
    from ktmu.backbones import BACKBONES
    from ktmu.concepts import HierarchyError, builtin_world
    from ktmu.engine.request import GOALS
    from ktmu.runtime.device import PRECISIONS

    s = recipe.session
    kind = str(s.get("model") or "mini-clip").partition(":")[0]
    if kind not in BACKBONES:
        raise RecipeError(f"{recipe.path}: model: unknown backbone kind {kind!r}.{suggest(kind, BACKBONES.names())} "
                          f"Known kinds: {', '.join(BACKBONES.names())}.")
    for key, choices in (("precision", PRECISIONS), ("goal", GOALS)):
        if s.get(key) is not None and s[key] not in choices:
            raise RecipeError(f"{recipe.path}: {key} must be one of {', '.join(choices)}, got {s[key]!r}.{suggest(s[key], list(choices))}")
    if s.get("level") is None:
        return
    world = s.get("world") or COMMAND_DEFAULTS["world"]
    try:
        levels = builtin_world(world).levels
    except HierarchyError:
        return  # a world of your own: its levels come with --hierarchy
    if s["level"] not in levels:
        raise RecipeError(f"{recipe.path}: level: world {world!r} has no level {s['level']!r}.{suggest(s['level'], list(levels))} "
                          f"Levels: {', '.join(levels) or 'none'}.")


def recipe_folder() -> Path | None:
    """The ``configs/`` folder of the ktmu checkout this module runs from, else ``./configs``, else None."""
    for folder in (Path(__file__).resolve().parents[3] / "configs", Path("configs")):
        if folder.is_dir():
            return folder
    return None


def recipe_command(path: str | Path) -> str:
    """A recipe file's first comment line, the command that runs it (a trailing line-continuation ``\\`` dropped); '' without one."""
    lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    first = next((line.lstrip("#").strip() for line in lines if line.startswith("#")), "")
    return first.removesuffix("\\").strip()


def recipe_files(folder: str | Path | None = None) -> list[tuple[Path, str]]:
    """Every ``*.yaml`` under ``folder`` (default :func:`recipe_folder`) with :func:`recipe_command`."""
    root = Path(folder) if folder is not None else recipe_folder()
    return [] if root is None else [(path, recipe_command(path)) for path in sorted(root.rglob("*.yaml"))]
