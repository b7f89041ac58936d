"""Request -> forget set -> unlearning -> evaluation: the pieces ``ktmu unlearn``/``bench``/``demo`` share."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import torch

from .backbones import Backbone, load_backbone
from .concepts import Hierarchy
from .data import load_dataset
from .methods import build_method
from .metrics import summarize
from .protocol import UnlearningEvaluator
from .provenance import git_commit, versions
from .request import MAX_PER_CONCEPT, UnlearningRequest
from .train import ForgetSet, TrainConfig, unlearn

BUILTIN_WORLDS = ("fashion", "digits")
DEFAULT_LEVEL = "difficult"


@dataclass
class Session:
    """A loaded model and world, ready to serve many unlearning runs from the same original."""

    backbone: Backbone
    world: Hierarchy
    request: UnlearningRequest
    forget: ForgetSet
    evaluator: UnlearningEvaluator | None  # None for sessions that must not see test data (tuning)
    original_state: dict[str, torch.Tensor]
    original_scores: dict | None
    max_per_concept: int
    seed: int


def level_request(world: Hierarchy, level: str) -> list[str]:
    """The concepts of a named request (e.g. a difficulty level) defined in the world file."""
    if level not in world.levels:
        from .registry import suggest

        raise ValueError(f"world {world.name!r} has no level {level!r}.{suggest(level, list(world.levels))} Levels: {', '.join(world.levels)}.")
    return list(world.levels[level])


def open_session(
    forget: Sequence[str] | None = None,
    goal: str = "fine",
    world: str = "fashion",
    model: str = "mini-clip",
    level: str = DEFAULT_LEVEL,
    max_per_concept: int = MAX_PER_CONCEPT,
    seed: int = 0,
    progress: bool = True,
    evaluate: bool = True,
    data_options: dict | None = None,
    device: str = "cpu",
) -> Session:
    """Load the model and data, resolve the request (``forget=None`` -> the level's request) and score the original.

    ``evaluate=False`` loads no test data at all (for tuning on forget-set data only).
    ``data_options`` go to the world's dataset loader (e.g. ``{"root": DIR, "hierarchy": FILE}``
    for ``jsonl`` and ``imagefolder`` worlds); zero-shot is measured on the built-in worlds other
    than ``world``.
    """
    backbone = load_backbone(model, device=device)
    opts = data_options or {}
    train = load_dataset(world, "train", **opts)
    names = list(forget) if forget else level_request(train.hierarchy, level)
    request = UnlearningRequest.parse(train.hierarchy, names, goal)
    forget_set = ForgetSet.from_request(request, train, backbone.preprocess, max_per_concept, seed)
    evaluator, original_scores = None, None
    if evaluate:
        others = [load_dataset(w, "test") for w in BUILTIN_WORLDS if w != world]
        evaluator = UnlearningEvaluator(request, load_dataset(world, "test", **opts), others, backbone.preprocess, progress=progress)
        original_scores = evaluator.evaluate(backbone)
    return Session(backbone, train.hierarchy, request, forget_set, evaluator, backbone.snapshot(), original_scores, max_per_concept, seed)


def recorded_scores(d: dict) -> dict:
    """The accuracies that results.json records (the per-class and per-domain detail goes elsewhere)."""
    return {k: v for k, v in d.items() if k not in ("per_class_fine", "domains")}


def run_method(session: Session, method: str, train_cfg: TrainConfig | None = None, progress: bool = True, **hyper) -> dict:
    """Unlearn with ``method`` from the session's original weights; returns the results.json record."""
    if session.evaluator is None or session.original_scores is None:
        raise ValueError("this session was opened with evaluate=False; open one with evaluate=True to score methods.")
    session.backbone.restore(session.original_state)
    m = build_method(method, **hyper)
    cfg = train_cfg or TrainConfig(seed=session.seed)
    t0 = time.time()
    log = unlearn(session.backbone, m, session.forget, session.world, cfg, progress=progress)
    train_seconds = time.time() - t0
    scores = session.evaluator.evaluate(session.backbone)
    summary = summarize(session.original_scores, scores, session.request.goal)
    return {
        "method": m.name,
        "request": {**session.request.describe(), "forget_set_size": len(session.forget), "max_per_concept": session.max_per_concept},
        "original": recorded_scores(session.original_scores),
        "unlearned": recorded_scores(scores),
        **summary,
        "per_class_fine": {"original": session.original_scores["per_class_fine"], "unlearned": scores["per_class_fine"]},
        "config": {
            "model": session.backbone.name,
            "method": m.hyperparameters(),
            "train": {**asdict(cfg), "lr": log.lr, "epochs": len(log.epochs)},
            "selected_epoch": log.selected_epoch,
            "selection_rule": "lowest forget-train accuracy at the forgotten level (fine goal: fine), earliest on ties",
            "epochs": log.epochs,
            "train_seconds": round(train_seconds, 2),
        },
        "seed": session.seed,
        "git_commit": git_commit(),
        "versions": versions(),
    }


def save_unlearned(session: Session, out_dir: str | Path, record: dict) -> Path:
    """Write the current (unlearned) weights as safetensors next to results.json."""
    path = Path(out_dir) / "model.safetensors"
    session.backbone.save_weights(path, metadata={"format": "ktmu-unlearned", "method": record["method"], "concepts": ",".join(session.request.concepts)})
    return path
