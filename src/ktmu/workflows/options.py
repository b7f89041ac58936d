"""A command's plain option values turned into checked library objects, before any data or model loads.

Each function is what ``ktmu`` runs for one group of options, and what a notebook calls to get the
same checks: a value that cannot work is a :class:`ktmu.errors.UsageError` that names the option
and says what to write. Example::

    rt = resolve_runtime(device="cpu", workers=2)
    plan = plan_run(world="fashion", forget=["shirt"], max_per_concept=150)
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from ktmu.data import ConceptDataset
from ktmu.engine.config import TrainConfig
from ktmu.engine.request import MAX_PER_CONCEPT
from ktmu.errors import UsageError
from ktmu.workflows.perf import PerfOptions
from ktmu.workflows.session import DEFAULT_LEVEL, Plan, RuntimeOptions, plan_session

OWN_DATA_WORLDS = ("jsonl", "imagefolder")  # worlds read from the user's own folder: they need --data-root


def resolve_runtime(device: str = "auto", precision: str = "fp32", workers: int = 0, eval_batch_size: int = 256,
                    train: str = "default", grad_checkpointing: bool = False, force: bool = False,
                    compile: str | None = None, image_pipeline: str = "host") -> RuntimeOptions:
    """Device, precision and data-loading options, checked; under ``accelerate launch`` each process takes its own GPU."""
    from ktmu.backbones.speed import COMPILE_MODES
    from ktmu.data.device_preprocess import IMAGE_PIPELINES
    from ktmu.registry import suggest
    from ktmu.runtime.device import check_precision, resolve_device
    from ktmu.runtime.dist import get_dist

    resolved = resolve_device(device)
    dist = get_dist()
    if dist.enabled and resolved.type == "cuda":
        resolved = resolve_device(f"cuda:{dist.local_rank}")
    check_precision(precision, resolved)
    if workers < 0:
        raise UsageError("--workers must be 0 or more.")
    if eval_batch_size < 1:
        raise UsageError("--eval-batch-size must be at least 1.")
    if compile is not None and compile not in COMPILE_MODES:
        raise UsageError(f"--compile takes no value or one of {', '.join(COMPILE_MODES)}, not {compile!r}.")
    if image_pipeline not in IMAGE_PIPELINES:
        raise UsageError(f"--image-pipeline takes {' or '.join(IMAGE_PIPELINES)}, not {image_pipeline!r}.{suggest(image_pipeline, list(IMAGE_PIPELINES))}")
    return RuntimeOptions(device=str(resolved), precision=precision, train=train, grad_checkpointing=grad_checkpointing,
                          workers=workers, eval_batch_size=eval_batch_size, force=force, compile=compile, image_pipeline=image_pipeline)


def data_options(world: str, data_root: str | None = None, hierarchy: str | None = None) -> dict[str, str]:
    """The world loader's options (``root``, ``hierarchy``); an unknown world is a did-you-mean error, a world of your own needs ``data_root``."""
    from ktmu.data import DATASETS

    DATASETS.get(world)  # did-you-mean before anything else
    opts = {k: v for k, v in (("root", data_root), ("hierarchy", hierarchy)) if v}
    if world.lower() in OWN_DATA_WORLDS and "root" not in opts:
        raise UsageError(f"--world {world} reads your own images: add --data-root DIR (see README, 'Your own data').")
    return opts


def plan_run(world: str = "fashion", model: str = "mini-clip", level: str = DEFAULT_LEVEL, forget: Sequence[str] | None = None,
             goal: str = "fine", max_per_concept: int = MAX_PER_CONCEPT, data_root: str | None = None, hierarchy: str | None = None,
             zero_shot: Sequence[str] | None = None, evaluate: bool = True, force: bool = False, history: bool = True) -> Plan:
    """:func:`ktmu.workflows.session.plan_session` after checking the forget-set size and the world's data options.

    ``force``: forget again a concept the ``model`` checkpoint's ledger already holds (``--force``).
    ``history=False`` plans the request as named, whatever ``model``'s ledger holds (``ktmu audit``:
    the request names what was forgotten, not what to forget next).
    """
    from ktmu.engine.ledger import Ledger

    if max_per_concept < 1:
        raise UsageError("--max-per-concept must be at least 1.")
    return plan_session(forget=forget, goal=goal, world=world, model=model, level=level, evaluate=evaluate,
                        data_options=data_options(world, data_root, hierarchy), zero_shot=zero_shot, force=force,
                        ledger=None if history else Ledger())


def train_config(lr: float | None = None, epochs: int | None = None, seed: int = 0, batch_size: int = 32, workers: int = 0,
                 selection: str | None = None, schedule: str | None = None,
                 recipe_trainer: Mapping[str, Any] | None = None) -> TrainConfig:
    """The trainer settings of a run: a recipe's other trainer fields, then the flags; ``selection``/``schedule`` None = the default."""
    settings = dict(recipe_trainer or {})
    settings.update({k: v for k, v in (("selection", selection), ("schedule", schedule)) if v is not None})
    return TrainConfig(lr=lr, epochs=epochs, seed=seed, batch_size=batch_size, workers=workers, **settings)


def check_seeds(seeds: int) -> None:
    """Refuse a seed count below 1 (``--seeds``)."""
    if seeds < 1:
        raise UsageError(f"--seeds must be at least 1, got {seeds}.")


def check_learning_rates(lrs: Sequence[float]) -> None:
    """Refuse a tuning grid (``--lrs``) holding a rate that is not a positive finite number."""
    if any(not lr > 0 or not math.isfinite(lr) for lr in lrs):
        raise UsageError("--lrs must be positive finite learning rates.")


# PerfOptions field -> the least value that measures anything (0 image size = the model's own).
_PERF_MINIMUM = {"batch_size": 1, "images": 1, "image_size": 0, "classes": 1, "steps": 1, "epochs": 1, "repeats": 1,
                 "run_epochs": 1, "run_steps": 1}


def check_perf_options(opts: PerfOptions) -> None:
    """Refuse ``ktmu perf`` settings that would measure nothing (a batch of 0, no repetition, ...) or cannot run on the device."""
    import torch

    from ktmu.backbones.speed import compile_unavailable
    from ktmu.workflows.perf import BASELINES
    from ktmu.workflows.perf_timing import base_config, variant_configs

    for name, least in _PERF_MINIMUM.items():
        value = getattr(opts, name)
        if value < least:
            raise UsageError(f"--{name.replace('_', '-')} must be at least {least}, got {value}.")
    if opts.baseline is not None and opts.baseline not in BASELINES:
        raise UsageError(f"--baseline takes {', '.join(BASELINES)}, not {opts.baseline!r}.")
    rt = opts.runtime
    if isinstance(rt, RuntimeOptions):
        device = torch.device(rt.device)
        variant_configs(base_config(rt.precision), opts.variants, opts.precisions, rt.compile, device)  # refuses what cannot run here
        reason = compile_unavailable(device) if rt.compile else None
        if reason:
            raise UsageError(f"--compile: torch cannot compile on {device} here: {reason}. Run without --compile.")


def evaluation_sets(world: str = "fashion", model: str = "mini-clip", zero_shot: Sequence[str] | None = None,
                    domains: Sequence[str] | None = None, data_root: str | None = None,
                    hierarchy: str | None = None) -> tuple[list[Any], str | None]:
    """What ``ktmu eval`` measures, and a note to print once (the zero-shot default) or None.

    ``domains``: the built-in domains by name (kept for scripts written against ktmu 0.1); else the
    world's test split and the zero-shot domains (:func:`ktmu.data.domains.parse_zero_shot`).
    """
    from ktmu.data import load_dataset
    from ktmu.data.domains import DOMAINS, parse_zero_shot

    if domains:
        return [(DOMAINS.get(d).open(), DOMAINS.get(d).templates) for d in domains], None
    items: list[ConceptDataset | tuple] = [load_dataset(world, "test", **data_options(world, data_root, hierarchy))]
    choices, note = parse_zero_shot(zero_shot, model, world)
    return items + [(c.domain.open(c.root), c.domain.templates) for c in choices], note
