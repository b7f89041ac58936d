"""Worst-case Quality: the study's Quality measured under the probe that finds the most of the concept left.

The study scores forgetting as Quality = relative drop of D_f fine accuracy with the canonical
name and the training templates (:func:`ktmu.evaluation.metrics.relative_drop`). The audit measures the same
D_f images through several probes — e.g. the canonical name, a held-out alias, held-out
templates, a linear probe on the image features — each with an accuracy before and after.

Rule: Quality_p = relative_drop(original[p], unlearned[p]) for every probe p (each probe against
its own original accuracy, so a probe the original was weaker at is not penalised for it), and
worst-case Quality = min_p Quality_p, reported with the probe that attains it (the first in the
original's key order on ties). Like relative_drop it is clipped to [0, 100], and a probe whose
original accuracy is 0 scores 100 (there was nothing to forget through it).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

from ktmu.evaluation.metrics import relative_drop


@dataclass(frozen=True)
class WorstCase:
    """Worst-case Quality, the probe that set it, and every probe's own Quality (percent)."""

    quality: float
    probe: str
    per_probe: dict[str, float]


def worst_case_quality(original: Mapping[str, float], unlearned: Mapping[str, float]) -> WorstCase:
    """min over probes of relative_drop(original[p], unlearned[p]) (see module doc); accuracies in percent.

    Both mappings must name the same probes, e.g. ``{"name": 80.3, "held_out_alias": 74.0,
    "held_out_template": 79.1, "linear_probe": 97.0}``; leave out a probe that was not measured.
    """
    if not original:
        raise ValueError("no probes given: pass at least the canonical-name accuracy, e.g. {'name': 80.3}.")
    if set(original) != set(unlearned):
        raise ValueError(f"original and unlearned accuracies must name the same probes; only in original: "
                         f"{sorted(set(original) - set(unlearned))}, only in unlearned: {sorted(set(unlearned) - set(original))}.")
    bad = [p for p in original if math.isnan(original[p]) or math.isnan(unlearned[p])]
    if bad:
        raise ValueError(f"probes {bad} have no accuracy (nan); leave out a probe that was not measured.")
    per_probe = {p: relative_drop(original[p], unlearned[p]) for p in original}
    worst = min(per_probe, key=per_probe.__getitem__)  # min keeps the first of equal values
    return WorstCase(per_probe[worst], worst, per_probe)
