"""Cumulative scores of a model that several requests changed in turn, against the base model none of them had touched.

A step's own record compares the step's result with the *previous* model: its cost. Damage that
earlier steps did is then already in the "original" and never shows. The cumulative record
compares the result with the *base* model on every concept forgotten so far, taken together as one
request (:meth:`ktmu.engine.request.UnlearningRequest.together`):

* Quality, Utility, Q-U and their chance-aware versions of that request (:func:`ktmu.evaluation.metrics.run_summary`),
  so D_r is the images of concepts no request forgot and zero-shot is measured against the base;
* ``zero_shot_drop``: base zero-shot minus the model's, in points;
* ``concepts``: each forgotten concept's own D_f accuracy at its level (fine for a fine concept, coarse
  for a coarse one, over its images) before and after, and its Quality (relative drop), so that a
  concept an earlier request forgot and a later one reopened is seen by name (:func:`concept_scores`).

Example (tests/test_sequence.py): base shirt 80 % -> 4 %, coat 90 % -> 9 %: Quality 95 and 90.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import torch

from ktmu.concepts import Hierarchy
from ktmu.evaluation.metrics import relative_drop, run_summary
from ktmu.evaluation.zero_shot import WorldEval, accuracy


def concept_accuracies(ev: WorldEval, world: Hierarchy, concepts: Sequence[str]) -> dict[str, dict]:
    """Each concept's ``{"level", "images", "acc"}``: the accuracy at its level over the test images of it (or of its fine children)."""
    out = {}
    for name in concepts:
        c = world.find(name)
        fine = [world.index(c)] if c.level == "fine" else [world.index(k) for k in world.children(c.name)]
        mask = torch.isin(ev.fine_labels, torch.as_tensor(fine, dtype=ev.fine_labels.dtype))
        pred, labels = (ev.fine_pred, ev.fine_labels) if c.level == "fine" else (ev.coarse_pred, ev.coarse_labels)
        out[c.name] = {"level": c.level, "images": int(mask.sum()), "acc": accuracy(pred[mask], labels[mask])}
    return out


def concept_scores(base: Mapping[str, dict], now: Mapping[str, dict], requests: Mapping[str, int]) -> dict[str, dict]:
    """Per concept: its level, images, which request forgot it (1 = the oldest), base and current accuracy, and Quality.

    ``base`` / ``now``: :func:`concept_accuracies` of the base model and of the current one.
    Quality is :func:`ktmu.evaluation.metrics.relative_drop` of the two accuracies (nan when they are).
    Example: base 80, now 4 -> Quality 95; base 80, now 88 -> 0.
    """
    out = {}
    for name, b in base.items():
        before, after = b["acc"], now[name]["acc"]
        quality = math.nan if math.isnan(before) or math.isnan(after) else relative_drop(before, after)
        out[name] = {"level": b["level"], "request": requests[name], "images": b["images"], "base": before, "unlearned": after,
                     "quality": quality}
    return out


def cumulative_summary(base: Mapping[str, float], now: Mapping[str, float], goal: str, n_fine: int, n_coarse: int) -> dict[str, float]:
    """The metrics of all requests together against the base: :func:`run_summary`'s keys and ``zero_shot_drop`` (points).

    Example: base zero-shot 98.8, now 97.1 -> ``zero_shot_drop`` 1.7.
    """
    return {**run_summary(base, now, goal, n_fine, n_coarse), "zero_shot_drop": base["zero_shot"] - now["zero_shot"]}


def mean_concepts(records: Sequence[Mapping[str, dict]]) -> dict[str, dict[str, float]]:
    """The mean over seeds of each concept's current accuracy and Quality (``records``: each seed's :func:`concept_scores`; null is nan)."""
    names = list(records[0])
    return {n: {k: float(np.mean([math.nan if r[n][k] is None else r[n][k] for r in records])) for k in ("unlearned", "quality")}
            for n in names}


def aggregate_cumulative(records: Sequence[dict], replicates: Sequence[dict[str, np.ndarray]]) -> dict:
    """One cumulative record for several seeds: :func:`ktmu.evaluation.seeds.aggregate` of each seed's (the seeds themselves stay
    under the run's ``seeds``), with the mean ``zero_shot_drop`` and its interval, and each concept's means (``concepts_mean``)."""
    from ktmu.evaluation.seeds import aggregate

    out = aggregate(records, replicates)
    out.pop("seeds")
    base = records[0]["base"]["zero_shot"]
    base = math.nan if base is None else base  # null: no zero-shot domain (a record read back from results.json)
    out["mean"]["zero_shot_drop"] = base - out["mean"]["zero_shot"]
    iv = out["interval"].get("zero_shot")
    if iv is not None:  # the base is the same model for every seed: the drop's interval mirrors zero-shot's
        out["interval"]["zero_shot_drop"] = {"low": base - iv["high"], "high": base - iv["low"], "half_width": iv["half_width"]}
    out["concepts_mean"] = mean_concepts([r["concepts"] for r in records])
    return out
