"""Weight diagnostics: how far unlearning moved the weights, and whether a loss barrier separates them from the original's.

Relearning is fast when the unlearned weights sit in the original's basin: a few steps downhill
on the forgotten images lead back. Two numbers from the weights themselves (Siddiqui et al., 2025,
on linear mode connectivity and resistance to relearning):

* :func:`relative_distance` = ||theta - theta_0|| / ||theta_0||, over the weights the method could
  train (the original's trainable state), as one flat vector;
* the **D_f loss barrier** on the straight line theta(t) = theta_0 + t (theta - theta_0): the
  cross-entropy of the D_f test images' fine labels (zero-shot, the template ensemble, the model's
  temperature) at :data:`BARRIER_POINTS` evenly spaced t in [0, 1], and
  barrier = max over t of loss(t) - ((1 - t) loss(0) + t loss(1)), the largest rise above the
  chord between the end points (:func:`loss_barrier`; 0 when the loss never rises above it). A
  model that only hid the concept often has loss(1) far above loss(0) with no bump between them;
  a barrier means the way back to the original is uphill.

Only parameters are interpolated; buffers (batch-norm statistics) stay the audited model's, and
the audited weights are restored afterwards (:func:`interpolation_losses`).

Hand-worked barrier: t (0, 0.5, 1), losses (1, 4, 3) -> chord at 0.5 is 2, barrier 4 - 2 = 2 at t = 0.5.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from ktmu.backbones import Backbone

BARRIER_POINTS = 11  # t = 0, 0.1, ..., 1: a bump narrower than a tenth of the line is not a basin wall; each point embeds D_f once


@dataclass(frozen=True)
class Barrier:
    """The largest rise of a loss curve above the chord between its end points, and where it is."""

    value: float
    t: float


def relative_distance(reference: Mapping[str, torch.Tensor], current: Mapping[str, torch.Tensor]) -> float:
    """||current - reference|| / ||reference|| over the names of ``reference`` (one flat vector; float64 sums)."""
    missing = sorted(set(reference) - set(current))
    if missing:
        raise ValueError(f"the audited weights lack {missing[:5]} of the original's; compare checkpoints of one architecture.")
    diff = ref = 0.0
    for name, before in reference.items():
        a, b = before.detach().to("cpu", torch.float64), current[name].detach().to("cpu", torch.float64)
        if a.shape != b.shape:
            raise ValueError(f"weight {name} is {tuple(b.shape)} in the audited model but {tuple(a.shape)} in the original.")
        diff += float(((b - a) ** 2).sum())
        ref += float((a ** 2).sum())
    return math.sqrt(diff) / math.sqrt(ref) if ref > 0 else math.nan


def loss_barrier(ts: Sequence[float], losses: Sequence[float]) -> Barrier:
    """max over t of losses(t) - ((1 - t) losses(0) + t losses(1)), with ``ts`` from 0 to 1 (module doc); never below 0."""
    t, loss = np.asarray(ts, np.float64), np.asarray(losses, np.float64)
    if t.ndim != 1 or t.shape != loss.shape or len(t) < 2 or t[0] != 0 or t[-1] != 1 or np.any(np.diff(t) <= 0):
        raise ValueError(f"a barrier needs increasing points from t = 0 to t = 1, one loss each; got {t.tolist()} and {loss.tolist()}.")
    if np.isnan(loss).any():
        raise ValueError("a loss on the line is nan; the barrier needs a finite loss at every point.")
    rise = loss - ((1 - t) * loss[0] + t * loss[-1])
    i = int(np.argmax(rise))
    return Barrier(max(0.0, float(rise[i])), float(t[i]) if rise[i] > 0 else 0.0)


def line_points(n: int = BARRIER_POINTS) -> list[float]:
    """``n`` evenly spaced t from 0 to 1 (rounded so that 0.1 prints as 0.1)."""
    if n < 2:
        raise ValueError(f"the loss line needs at least its 2 end points, got {n}.")
    return [round(i / (n - 1), 6) for i in range(n)]


def interpolation_losses(backbone: Backbone, reference: Mapping[str, torch.Tensor], ts: Sequence[float],
                         loss: Callable[[], float], known: Mapping[float, float] | None = None) -> list[float]:
    """``loss()`` of the weights theta_0 + t (theta - theta_0) for each t (theta: the backbone's weights now, theta_0: ``reference``).

    ``known``: losses already measured at some t (e.g. 1.0: the audited model's own), not recomputed.
    The backbone's weights are restored afterwards, also on error.
    """
    params = dict(backbone.model.named_parameters())
    current = {k: params[k].detach().clone() for k in reference}
    start = {k: v.to(current[k].device) for k, v in reference.items()}
    out = []
    try:
        for t in ts:
            if known and t in known:
                out.append(float(known[t]))
                continue
            backbone.load_trainable({k: start[k] + t * (current[k] - start[k]) for k in start})
            out.append(float(loss()))
    finally:
        backbone.load_trainable(current)
    return out


def weight_diagnostics(backbone: Backbone, reference: Mapping[str, torch.Tensor] | None, points: int, own_loss: float,
                       loss: Callable[[], float], reference_loss: float | None = None) -> dict | str:
    """The record of :func:`relative_distance` and the barrier on ``points`` of the line from ``reference``, or why there is none.

    ``own_loss``: ``loss()`` of the backbone's weights now (t = 1); ``reference_loss``: of the
    reference's, when already known (t = 0).
    """
    if reference is None:
        return "no original weights to compare with (audit the model next to its original)"
    distance = relative_distance(reference, dict(backbone.model.named_parameters()))
    ts = line_points(points)
    if distance == 0:  # the original itself: the line is one point
        losses = [own_loss] * len(ts)
    else:
        known = {1.0: own_loss, **({0.0: reference_loss} if reference_loss is not None else {})}
        losses = interpolation_losses(backbone, reference, ts, loss, known=known)
    barrier = loss_barrier(ts, losses)
    return {"relative_distance": distance, "barrier": barrier.value, "barrier_t": barrier.t, "t": ts, "d_f_loss": losses,
            "tensors": len(reference)}
