"""One model's raw audit results (:class:`Measurement`) and the small pieces that collect them while the probes run."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from ktmu.audit.linear_probe import ProbeResult
from ktmu.audit.seeds import ProbeHits, WorstHits
from ktmu.audit.soft_prompt import SoftPromptRun

RelearnRun = tuple[list[float], dict]  # the D_f curve at the configured steps, and what the attack cost the kept concepts


@dataclass
class Measurement:
    """Every probe's raw result for one model."""

    role: str
    spec: str
    name: dict  # canonical-name accuracies: d_f_fine, d_f_coarse, d_r_fine, d_r_coarse, per_class_fine
    fine_pred: torch.Tensor  # (N_test,) canonical zero-shot fine predictions
    per_class: np.ndarray  # (K,) canonical fine accuracy per class
    text_features: torch.Tensor  # (K, D) canonical class text features (template ensemble)
    aliases: dict
    templates: dict
    probe: ProbeResult | str  # or the reason it was skipped
    relearn: dict[str, RelearnRun | str]  # part -> (curve, after-attack scores), or the reason it was skipped
    study: dict | None = None  # the study's evaluation (UnlearningEvaluator.evaluate), when measured
    seconds: dict[str, float] = field(default_factory=dict)
    features: torch.Tensor | None = None  # (N_test, D) test image features: another seed's probes reuse them
    hits: ProbeHits | None = None  # per-image D_f hits of the headline probes, for intervals over seeds (never written out)
    mlp: ProbeResult | str = "not measured"
    knn: ProbeResult | str = "not measured"
    soft_prompt: SoftPromptRun | str = "not measured"
    margins: np.ndarray | None = None  # (N_D_f,) per-image D_f margins (true class logit - best other), for the KS test
    d_f_loss: float = float("nan")  # D_f test cross-entropy of the fine labels (zero-shot logits)
    weights: dict | str = "not measured"  # the weight diagnostics' record (ktmu.audit.weights), or why there is none
    scale: float = float("nan")  # the model's logit scale


class Laps:
    """Seconds per named part of a measurement: each call closes the part that ran since the last one."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._clock = time.perf_counter()

    def __call__(self, key: str) -> None:
        now = time.perf_counter()
        self.seconds[key] = round(now - self._clock, 3)
        self._clock = now

    def total(self) -> dict[str, float]:
        """Every part's seconds and their sum under ``total``."""
        return {**self.seconds, "total": round(sum(self.seconds.values()), 3)}


class DfRecorder:
    """D_f fine accuracy of the current weights for a relearning curve, keeping every call's per-image hits."""

    def __init__(self, d_f_hits: Callable[[], torch.Tensor]) -> None:
        self.d_f_hits = d_f_hits
        self.hits: list[WorstHits] = []

    def __call__(self) -> float:
        hits = self.d_f_hits()
        self.hits.append(WorstHits.of(hits.numpy()))
        return float(hits.float().mean() * 100) if len(hits) else float("nan")

    @property
    def first(self) -> WorstHits | None:
        return self.hits[0] if self.hits else None

    @property
    def last(self) -> WorstHits | None:
        return self.hits[-1] if self.hits else None

    def at(self, steps: tuple[int, ...], step: int) -> WorstHits | None:
        """The hits measured after ``step`` steps (None when the curve has no such point)."""
        return self.hits[steps.index(step)] if step in steps and len(self.hits) == len(steps) else None
