"""Where the mass goes: what the forgotten concepts' test images are called after unlearning.

Every D_f test image is predicted as exactly one fine concept, which is (a) still a forgotten
concept (the unlearning missed it, or it swapped one forgotten name for another), (b) a kept
*sibling*, a fine concept under the image's own coarse parent (the intended outcome of a fine
goal: "a top, but not a shirt"), or (c) a kept fine concept of *another* coarse concept (the
image lost its parent too).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ktmu.evaluation.arrays import as_numpy, class_set


@dataclass(frozen=True)
class MassSplit:
    """Shares (fractions summing to 1) of the D_f test images by where their fine prediction lands."""

    forgotten: float  # predicted as any forgotten fine concept
    sibling: float  # predicted as a kept fine concept with the image's own coarse parent
    other: float  # predicted as a kept fine concept under another coarse concept
    n: int  # number of images


def forgotten_mass(predicted_fine: Any, true_fine: Any, fine_to_coarse: Sequence[int], forgotten: Any) -> MassSplit:
    """Split D_f test images by where their predicted fine label lands: forgotten, sibling or other.

    ``predicted_fine``/``true_fine``: fine indices of the D_f test images (every true label must be
    a forgotten class); ``fine_to_coarse``: ``Hierarchy.fine_to_coarse()``; ``forgotten``: the
    request's forgotten fine classes (indices or a boolean mask). "Sibling" is judged against each
    image's own parent, so a request forgetting concepts under different parents is split right.
    """
    pred, true = as_numpy(predicted_fine).astype(int), as_numpy(true_fine).astype(int)
    parent = np.asarray(fine_to_coarse, dtype=int)
    k = len(parent)
    if pred.shape != true.shape or pred.ndim != 1:
        raise ValueError(f"predicted and true fine labels must be two equal-length 1-d arrays; got {pred.shape} and {true.shape}.")
    if pred.size == 0:
        raise ValueError("no D_f test images: pass the predictions of the forgotten concepts' test images.")
    if min(pred.min(), true.min()) < 0 or max(pred.max(), true.max()) >= k:
        raise ValueError(f"fine labels must be indices 0..{k - 1} of fine_to_coarse.")
    forgotten_idx = class_set(forgotten, k)
    if not np.isin(true, forgotten_idx).all():
        stray = sorted(set(true[~np.isin(true, forgotten_idx)].tolist()))
        raise ValueError(f"images of kept classes {stray} were passed; give only D_f test images (true label forgotten).")
    still = np.isin(pred, forgotten_idx)
    sibling = ~still & (parent[pred] == parent[true])
    n = pred.size
    return MassSplit(float(still.sum() / n), float(sibling.sum() / n), float((~still & ~sibling).sum() / n), n)
