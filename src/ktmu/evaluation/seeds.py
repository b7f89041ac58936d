"""Mean ± 95 % interval of a method's scores over several seeds (``--seeds N``).

Seed ``s`` (``--seed`` + i) draws the proxy forget set and orders training; the test split and
the original model are the same for every seed.

**Within a seed** (:func:`paired_replicates`): a paired bootstrap over the world's test images.
Each replicate resamples the test images with replacement (``resamples`` = 1000 replicates, the
generator seeded with the run's seed), stratified so that D_r and D_f (and, for a hybrid goal,
D_f's images under forgotten and kept coarse concepts) keep their sizes: a resample never lacks
D_f, which is the study's fixed, small set. On the *same* resample it recomputes the original's
and the unlearned model's D_f/D_r accuracies, then Quality/Utility/Q-U (the study's,
:func:`ktmu.evaluation.metrics.summarize`) and Q-U* (chance-aware, :func:`ktmu.evaluation.metrics.summarize_chance_aware`).
Pairing matters: the original's accuracy on a resample moves with the unlearned model's, so the
interval measures the run, not the luck of the test draw twice.

**Zero-shot** (:func:`zero_shot_replicates`): the unlearned model's per-image fine hits on each
other domain (e.g. digits for a fashion world) are resampled the same way, stratified by domain
(each keeps its size; its own generator, seeded with the run's seed, so the world's replicates
do not change), and each replicate's zero-shot accuracy is the mean over domains of their fine
accuracies, as in :class:`ktmu.evaluation.protocol.UnlearningEvaluator`. No score compares it with the
original, so no original is resampled with it. Without zero-shot domains there is no interval.

**Across seeds** (:func:`aggregate`): :func:`ktmu.evaluation.intervals.pooled_seed_interval` pools
every seed's replicates, each centred at that seed's estimate (its value on the full test set);
the reported value is the mean over seeds and the interval is the 2.5th-97.5th percentile of
the pooled replicates. A metric that is nan on some replicate (e.g. Q-U* when a resampled
original is barely above chance) has a nan interval: it cannot be stated with confidence.
The zero-shot accuracy is pooled the same way (``interval["zero_shot"]``).

With ``--audit`` every seed's unlearned model is audited too; :mod:`ktmu.audit.seeds` gives the
audit's headline numbers the same mean ± interval.

Hand-worked case: an unlearned model identical to the original has Quality 0 on every resample,
so its interval is [0, 0]; a model that gets every D_f image wrong has D_f fine accuracy 0 on
every resample, also a zero-width interval.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from ktmu.engine.goals import D_F_FORGOTTEN_COARSE, D_F_KEPT_COARSE, D_R, goal_spec
from ktmu.evaluation.intervals import RESAMPLES, pooled_seed_interval
from ktmu.evaluation.zero_shot import WorldEval
from ktmu.evaluation.metrics import run_summary

ACCURACIES = ("forget_coarse", "forget_fine", "retain_coarse", "retain_fine", "forget_kept_coarse", "zero_shot")
METRICS = ("quality", "utility", "qu", "quality_ca", "utility_ca", "qu_ca")


@dataclass(frozen=True)
class Hits:
    """Per-image 0/1 correctness of one model on the world's test split (fine and coarse)."""

    fine: np.ndarray
    coarse: np.ndarray

    @classmethod
    def of(cls, ev: WorldEval) -> "Hits":
        return cls((ev.fine_pred == ev.fine_labels).numpy(), (ev.coarse_pred == ev.coarse_labels).numpy())


@dataclass(frozen=True)
class Groups:
    """The test images' strata: D_r, D_f under forgotten coarse concepts, D_f under kept coarse concepts."""

    d_r: np.ndarray
    d_f_forgotten_coarse: np.ndarray
    d_f_kept_coarse: np.ndarray

    @classmethod
    def of(cls, evaluator) -> "Groups":
        """From a :class:`ktmu.evaluation.protocol.UnlearningEvaluator`'s masks."""
        return cls(evaluator.d_r, evaluator.d_f_forgotten_coarse, evaluator.d_f_kept_coarse)


def _resampled_sums(groups: Groups, hits: Sequence[Hits], resamples: int, seed: int) -> dict[str, list[dict[str, tuple[np.ndarray, int]]]]:
    """Per stratum and model: level -> (hits summed over each replicate's resample, the stratum size)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name in (D_R, D_F_FORGOTTEN_COARSE, D_F_KEPT_COARSE):  # the draw order: the replicates depend on it
        members = np.flatnonzero(getattr(groups, name))
        idx = members[rng.integers(0, len(members), size=(resamples, len(members)))] if len(members) else np.zeros((resamples, 0), dtype=np.int64)
        out[name] = [{"fine": (h.fine[idx].sum(axis=1), len(members)), "coarse": (h.coarse[idx].sum(axis=1), len(members))} for h in hits]
    return out


def _accuracy(parts: Sequence[tuple[np.ndarray, int]]) -> np.ndarray:
    """Percent accuracy per replicate of the union of strata ((hit sums, size) each); nan when empty."""
    n = sum(size for _, size in parts)
    if n == 0:
        return np.full(len(parts[0][0]), math.nan)
    return 100.0 * sum(hits for hits, _ in parts) / n


def _accuracies(sums: dict, model: int, goal: str) -> dict[str, np.ndarray]:
    """The evaluator's accuracy keys per replicate, for model 0 (original) or 1 (unlearned): the goal table's accuracies and strata."""
    out = {}
    for acc in goal_spec(goal).accuracies:
        parts = [sums[stratum][model][acc.level] for stratum in acc.images]
        if acc.optional and not sum(size for _, size in parts):
            continue
        out[acc.key] = _accuracy(parts)
    return out


def paired_replicates(original: Hits, unlearned: Hits, groups: Groups, goal: str, n_fine: int, n_coarse: int,
                      resamples: int = RESAMPLES, seed: int = 0) -> dict[str, np.ndarray]:
    """(resamples,) replicates of every unlearned accuracy and of every metric, from one paired bootstrap (module doc)."""
    sums = _resampled_sums(groups, [original, unlearned], resamples, seed)
    orig, new = _accuracies(sums, 0, goal), _accuracies(sums, 1, goal)
    reps: dict[str, np.ndarray] = dict(new)
    per = {m: np.empty(resamples) for m in METRICS}
    for b in range(resamples):
        o = {k: float(v[b]) for k, v in orig.items()}
        u = {k: float(v[b]) for k, v in new.items()}
        scores = run_summary(o, u, goal, n_fine, n_coarse)
        for m in METRICS:
            per[m][b] = scores[m]
    return {**reps, **per}


def zero_shot_replicates(domains: Sequence[np.ndarray], resamples: int = RESAMPLES, seed: int = 0) -> np.ndarray:
    """(resamples,) zero-shot accuracies: each domain's 0/1 fine hits resampled within the domain, then the mean over domains (module doc).

    Example: domains [1, 1, 1, 1] and [0, 0] give 100 and 0 on every resample, so every replicate is 50.
    """
    if not domains or any(len(d) == 0 for d in domains):
        raise ValueError("zero-shot replicates need at least one domain, each with images.")
    rng = np.random.default_rng([seed, 1])  # not the world's generator: adding zero-shot leaves the world's replicates as they were
    per_domain = []
    for hits in domains:
        h = np.asarray(hits, dtype=np.float64)
        per_domain.append(100.0 * h[rng.integers(0, len(h), size=(resamples, len(h)))].mean(axis=1))
    return np.mean(per_domain, axis=0)


def run_replicates(record: dict, original: WorldEval, unlearned: WorldEval, evaluator, resamples: int = RESAMPLES,
                   others: Mapping[str, WorldEval] | None = None) -> dict[str, np.ndarray]:
    """:func:`paired_replicates` of one run's record, seeded with the run's seed; with ``others`` (zero-shot domain -> the unlearned
    model's predictions) also ``zero_shot``."""
    u = record["unlearned"]
    reps = paired_replicates(Hits.of(original), Hits.of(unlearned), Groups.of(evaluator), record["request"]["goal"],
                             u["n_fine"], u["n_coarse"], resamples, seed=record["seed"])
    if others:
        reps["zero_shot"] = zero_shot_replicates([Hits.of(ev).fine for ev in others.values()], resamples, seed=record["seed"])
    return reps


def _estimate(record: dict, key: str) -> float:
    """A seed's value of ``key``; null (a record read back from results.json holds NaN as null) is nan."""
    value = record[key] if key in METRICS else record["unlearned"][key]
    return math.nan if value is None else float(value)


def aggregate(records: Sequence[dict], replicates: Sequence[dict[str, np.ndarray]]) -> dict:
    """One record for several seeds: the first seed's keys, plus ``seeds``, ``mean`` and ``interval`` (module doc).

    ``interval`` maps each metric to ``{"low", "high", "half_width"}``.
    """
    if not records or len(records) != len(replicates):
        raise ValueError(f"need one replicate set per seed's record; got {len(records)} records and {len(replicates)}.")
    mean, interval = {}, {}
    for key in [k for k in ACCURACIES if k in replicates[0]] + list(METRICS):
        estimates = [_estimate(r, key) for r in records]
        reps = [r[key] for r in replicates]
        if any(math.isnan(e) for e in estimates) or any(np.isnan(r).any() for r in reps):
            mean[key] = float(np.mean(estimates))
            interval[key] = {"low": math.nan, "high": math.nan, "half_width": math.nan}
            continue
        iv = pooled_seed_interval(estimates, reps)
        mean[key] = iv.estimate
        interval[key] = {"low": iv.low, "high": iv.high, "half_width": iv.half_width}
    if "zero_shot" not in mean:  # no zero-shot domains (or no hits kept): a mean and no interval
        mean["zero_shot"] = float(np.mean([_estimate(r, "zero_shot") for r in records]))
    return {**records[0], "seeds": list(records), "mean": mean, "interval": interval}
