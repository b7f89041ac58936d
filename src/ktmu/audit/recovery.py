"""Relearning: how much of a forgotten concept a short fine-tune on a few of its images brings back.

recovery = (after - unlearned) / (original - unlearned): 0 = nothing came back, 1 = back to the
original accuracy (it may exceed 1, or fall below 0, and is not clipped). An oracle that never
knew the concept relearns it too, from scratch; :func:`curve_gap` compares a method's relearning
curve with the oracle's, so "relearns faster than a model that never knew it" is measurable, and
:func:`steps_to_half` says how many steps it took to get half of the original's accuracy back.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

MIN_GAP = 1.0  # accuracy points: 10 of 1,000 D_f test images; a smaller drop is within test noise of none


@dataclass(frozen=True)
class Recovery:
    """A recovery ratio, or nan with the ``reason`` it is undefined."""

    value: float
    reason: str = ""


def relearning_recovery(original: float, unlearned: float, after: float, min_gap: float = MIN_GAP) -> Recovery:
    """(after - unlearned) / (original - unlearned), accuracies in percent; nan with a reason when the unlearning removed under ``min_gap`` points.

    Example: original 80, unlearned 2, after relearning 41 -> (41 - 2) / (80 - 2) = 0.5.
    """
    if any(math.isnan(x) for x in (original, unlearned, after)):
        raise ValueError(f"accuracies must be numbers; got original={original}, unlearned={unlearned}, after={after}.")
    gap = original - unlearned
    if gap < min_gap:
        return Recovery(float("nan"), f"unlearning lowered the accuracy by {gap:.2f} points (< {min_gap:g}): nothing was removed to recover.")
    return Recovery((after - unlearned) / gap)


def curve_gap(curve: Sequence[float], oracle_curve: Sequence[float]) -> float:
    """Mean absolute difference between a relearning curve and the oracle's, evaluated at the same steps (accuracy points).

    Example: (10, 40, 60) vs oracle (10, 20, 30) -> (0 + 20 + 30) / 3 = 16.67.
    """
    a, b = np.asarray(curve, dtype=np.float64), np.asarray(oracle_curve, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape or a.size == 0:
        raise ValueError(f"curves must be non-empty and measured at the same steps; got {a.size} and {b.size} points.")
    if np.isnan(a).any() or np.isnan(b).any():
        raise ValueError("a curve has a missing (nan) point; evaluate both curves at every step.")
    return float(np.abs(a - b).mean())


@dataclass(frozen=True)
class HalfWay:
    """The first measured relearning step at which D_f accuracy reached half the original's, or the budget when it never did."""

    step: int
    reached: bool


def steps_to_half(steps: Sequence[int], curve: Sequence[float], original: float) -> HalfWay:
    """The first of ``steps`` whose ``curve`` point is at least half of ``original`` (D_f fine accuracy, percent); capped at the budget.

    Example: steps (0, 10, 25, 50), curve (3, 20, 41, 60), original 80 -> 25 (41 >= 40), reached;
    with curve (3, 5, 8, 12) -> 50 (the budget), not reached.
    """
    if len(steps) != len(curve) or not len(steps):
        raise ValueError(f"a relearning curve needs one accuracy per measured step; got {len(steps)} steps and {len(curve)} points.")
    if math.isnan(original):
        raise ValueError("the original's D_f accuracy is missing (nan); the half-way mark needs it.")
    for step, value in zip(steps, curve):
        if value >= original / 2:
            return HalfWay(int(step), True)
    return HalfWay(int(steps[-1]), False)
