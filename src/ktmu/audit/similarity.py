"""Sibling damage against semantic distance: do kept concepts close to the forgotten one pay more?

For every kept fine concept: its accuracy change (unlearned - original, percentage points), its
text-feature cosine similarity to the forgotten concept(s) (the maximum over forgotten concepts:
damage spreads from the nearest one), and whether it shares a coarse parent with a forgotten
concept. The Spearman rank correlation of change against similarity summarises the relation:
strongly negative means the closer a concept is to what was forgotten, the more it lost.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ktmu.evaluation.arrays import as_numpy, class_set


@dataclass(frozen=True)
class SiblingRow:
    """One kept fine concept."""

    index: int
    name: str
    change: float  # unlearned - original accuracy, percentage points (nan when it has no test images)
    similarity: float  # max cosine of its text feature to a forgotten concept's
    same_parent: bool  # shares its coarse parent with a forgotten concept


@dataclass(frozen=True)
class SiblingDamage:
    """Per-concept rows and the Spearman correlation of change vs similarity (nan with a ``reason`` when undefined)."""

    rows: tuple[SiblingRow, ...]
    spearman: float
    p_value: float
    reason: str = ""  # why spearman is nan; empty when it is defined


def sibling_damage(
    original_acc: Any,
    unlearned_acc: Any,
    text_features: Any,
    forgotten: Any,
    fine_to_coarse: Sequence[int],
    names: Sequence[str] | None = None,
) -> SiblingDamage:
    """Accuracy change vs text similarity to the forgotten concepts, over the kept fine concepts.

    ``original_acc``/``unlearned_acc``: (K,) per-fine-class accuracy in percent; ``text_features``:
    (K, D) class text features (normalised here); ``forgotten``: indices or a (K,) mask. Concepts
    whose change is nan are listed but left out of the correlation. Ties get average ranks
    (``scipy.stats.spearmanr``). The correlation is nan, with the reason, when fewer than 3
    concepts have a change or when either column is constant (a rank correlation is undefined).
    """
    orig, new = as_numpy(original_acc, np.float64), as_numpy(unlearned_acc, np.float64)
    text = as_numpy(text_features, np.float64)
    parent = np.asarray(fine_to_coarse, dtype=int)
    k = len(parent)
    if orig.shape != (k,) or new.shape != (k,) or text.ndim != 2 or len(text) != k:
        raise ValueError(f"expected ({k},) accuracies and ({k}, D) text features for the {k} fine classes of fine_to_coarse; "
                         f"got {orig.shape}, {new.shape} and {text.shape}.")
    if names is not None and len(names) != k:
        raise ValueError(f"names has {len(names)} entries for {k} fine classes.")
    forgotten_idx = class_set(forgotten, k)
    if forgotten_idx.size == 0:
        raise ValueError("no forgotten class given: sibling damage is measured against at least one forgotten concept.")
    norms = np.linalg.norm(text, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError("a class text feature is all zeros; pass the encoder's features for every fine class.")
    unit = text / norms
    cos = unit @ unit[forgotten_idx].T  # (K, forgotten)
    forgotten_parents = set(parent[forgotten_idx].tolist())
    rows = tuple(
        SiblingRow(int(i), names[i] if names is not None else str(i), float(new[i] - orig[i]), float(cos[i].max()),
                   int(parent[i]) in forgotten_parents)
        for i in range(k) if i not in set(forgotten_idx.tolist())
    )
    usable = [r for r in rows if not math.isnan(r.change)]
    change = np.array([r.change for r in usable])
    sim = np.array([r.similarity for r in usable])
    nan = float("nan")
    if len(usable) < 3:
        return SiblingDamage(rows, nan, nan, f"only {len(usable)} kept concept(s) with an accuracy change; a rank correlation needs at least 3.")
    if np.ptp(change) == 0:
        return SiblingDamage(rows, nan, nan, "every kept concept's accuracy changed by the same amount; the ranks are all tied.")
    if np.ptp(sim) == 0:
        return SiblingDamage(rows, nan, nan, "every kept concept is equally similar to the forgotten ones; the ranks are all tied.")
    from scipy.stats import spearmanr  # heavy import, only when a correlation is computed

    res = spearmanr(change, sim)
    return SiblingDamage(rows, float(res.statistic), float(res.pvalue))
