"""Unlearning methods, one per file, registered by name (lazy: a method imports when chosen)."""
from __future__ import annotations

from typing import Any

from ..registry import Registry
from .base import Batch, UnlearningMethod

METHODS: Registry[type[UnlearningMethod]] = Registry("method")
METHODS.register("ga", "ktmu.methods.ga:GradientAscent")
METHODS.register("gdiff", "ktmu.methods.gdiff:GradientDifference")
METHODS.register("ga-kl", "ktmu.methods.ga_kl:GradientAscentKL")
METHODS.register("relabel", "ktmu.methods.relabel:Relabeling")
METHODS.register("salun", "ktmu.methods.salun:SalUn")
METHODS.register("me-gd", "ktmu.methods.me_gd:MaxEntropyGD")
METHODS.register("task-vector", "ktmu.methods.task_vector:TaskVector")
METHODS.register("npo-kl", "ktmu.methods.npo_kl:NPOKL")
METHODS.register("nhl-kl", "ktmu.methods.nhl_kl:NHLKL")


def build_method(name: str, **overrides: Any) -> UnlearningMethod:
    """Instantiate a registered method, overriding hyperparameters by keyword (unknown keys are an error)."""
    cls = METHODS.get(name)
    known = set(cls().hyperparameters())
    bad = set(overrides) - known
    if bad:
        raise ValueError(f"method {name!r} has no hyperparameter {', '.join(sorted(bad))}; it has {', '.join(sorted(known))}.")
    return cls(**overrides)


__all__ = ["Batch", "METHODS", "UnlearningMethod", "build_method"]
