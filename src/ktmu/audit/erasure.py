"""Erasure: where a probe's reading of the unlearned model sits between the original (0) and the oracle that never knew the concept (1).

erasure = 1 - clip((unlearned - oracle) / (original - oracle), 0, 1), for a number that is high in
the original and low in the oracle (a probe's recall, the D_f accuracy after relearning). 1 is
oracle-like (no more of the concept readable than in a model that never learned it), 0 is
original-like (all of it still there); a reading below the oracle's counts as 1, above the
original's as 0. Undefined (nan, with a reason) without an oracle, or when the original and the
oracle are less than :data:`~ktmu.audit.recovery.MIN_GAP` points apart: then the probe cannot tell
knowing from not knowing, and no reading of it says how much was erased.

Example: original 75, oracle 55, unlearned 70 -> 1 - (70 - 55) / (75 - 55) = 0.25.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ktmu.audit.recovery import MIN_GAP


@dataclass(frozen=True)
class Erasure:
    """An erasure in [0, 1], or nan with the ``reason`` it is undefined."""

    value: float
    reason: str = ""


def erasure(unlearned: float, original: float, oracle: float | None, min_gap: float = MIN_GAP) -> Erasure:
    """1 - clip((unlearned - oracle) / (original - oracle), 0, 1) (module doc); nan with a reason without an oracle or a gap."""
    if oracle is None:
        return Erasure(math.nan, "no oracle was audited (pass --oracle SPEC): erasure is measured against a model that never knew the concept")
    values = {"unlearned": unlearned, "original": original, "oracle": oracle}
    missing = [k for k, v in values.items() if v is None or math.isnan(v)]
    if missing:
        return Erasure(math.nan, f"the {' and '.join(missing)} model's number is missing")
    gap = original - oracle
    if abs(gap) < min_gap:
        return Erasure(math.nan, f"the original ({original:.2f}) and the oracle ({oracle:.2f}) are {abs(gap):.2f} points apart "
                                 f"(< {min_gap:g}): this probe cannot tell knowing the concept from not knowing it")
    return Erasure(float(1.0 - np.clip((unlearned - oracle) / gap, 0.0, 1.0)))


def erasure_replicates(unlearned: np.ndarray, original: np.ndarray, oracle: np.ndarray, min_gap: float = MIN_GAP) -> np.ndarray:
    """:func:`erasure` per bootstrap replicate (arrays of the three readings); nan where the original and the oracle are within ``min_gap``."""
    u, g, o = (np.asarray(a, dtype=np.float64) for a in (unlearned, original, oracle))
    gap = g - o
    with np.errstate(invalid="ignore", divide="ignore"):
        value = 1.0 - np.clip((u - o) / np.where(gap != 0, gap, 1.0), 0.0, 1.0)
    return np.where(np.abs(gap) >= min_gap, value, math.nan)
