"""The audit's headline numbers as mean ± 95 % interval over seeds: per-image hits, a paired bootstrap, pooled seeds.

**Per-image hits** (:class:`ProbeHits`): for every model the auditor measures, the 0/1 hits of
the D_f test images (test images of the forgotten fine concepts, in test-split order) under each
headline probe. They live in memory only (:class:`ktmu.audit.run.Measurement`); audit.json and
results.json keep the numbers. A worst-case probe keeps one column per alternative
(:class:`WorstHits`): the held-out alias probe one group per concept with a column per held-out
name, the held-out template probe one group with a column per template; the others (canonical
name, linear probe, relearned model) one column.

**Within a seed** (:func:`audit_replicates`): a bootstrap over the D_f test images, stratified by
forgotten concept (each concept keeps its number of test images, so a resample never lacks one),
``resamples`` = 1000 replicates seeded with the audit's draw seed. It is *paired*: on the same
resample it recomputes every model's accuracies (original, audited, oracle), then every number
that compares them. A worst case is recomputed on each resample (the worst name or template may
change), as the statistic is "the worst one", not "the one that was worst on the full set".

* ``d_f_fine``, ``held_out_alias``, ``held_out_template``, ``probe_recall``, ``mlp_recall``,
  ``knn_recall``, ``soft_prompt``, ``relearn_after`` (at the budget), ``relearn_at_50``,
  ``retain_at_50``: accuracies (percent) on the resample;
* ``recovery`` = (after - before) / (original - before) of the forget relearning attack, where
  before and after are the audited model's D_f accuracy at the curve's first and last step and
  original the original's canonical-name accuracy; nan on a resample where the original is less
  than :data:`ktmu.audit.recovery.MIN_GAP` points above (as :func:`~ktmu.audit.recovery.relearning_recovery`);
* ``quality`` (the study's Quality) and ``wc_quality`` (worst-case Quality over the probes the
  record's worst case used), each probe against the original's accuracy on the same resample;
* ``gap_*``: this model minus the oracle (with an oracle) for each accuracy above;
* ``erasure_probe``, ``erasure_relearn`` (with an oracle): :func:`ktmu.audit.erasure.erasure` of the
  linear-probe recall and of the D_f accuracy after 50 relearning steps, original and oracle on the
  same resample; nan on a resample where the two are less than ``MIN_GAP`` points apart.

**Across seeds** (:func:`aggregate_audits`): as :mod:`ktmu.evaluation.seeds`, every seed's replicates are
centred on that seed's number in its audit record and pooled
(:func:`ktmu.evaluation.intervals.pooled_seed_interval`); the value is the mean over seeds, the
interval the 2.5th-97.5th percentile of the pooled replicates. A number that is missing or nan
on some seed or replicate (e.g. recovery when the unlearning removed nothing) has no interval
(null, as audit records write nan); a number no seed has (the original's recovery) is left out.
The shares of mass f/s/o, the sibling damage and the relearning curves are the first seed's.
Like every pooled interval (:mod:`.intervals`) it may reach past a clipped metric's bound (e.g.
below 0 for a worst-case Quality near 0), since each seed's replicates are shifted to its value.

Hand-worked case: a model that misses every D_f image has every accuracy 0 on every resample, so
its intervals have zero width; against an original that gets every D_f image right its Quality
is 100 on every resample.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from ktmu.evaluation.arrays import as_numpy
from ktmu.evaluation.intervals import RESAMPLES, pooled_seed_interval
from ktmu.audit.erasure import erasure_replicates
from ktmu.audit.recovery import MIN_GAP
from ktmu.audit.report import HEADLINE, get_path

# worst-case Quality's probe names (ktmu.audit.run) -> the ProbeHits field holding their hits
WC_PROBES = {"name": "name", "held_out_alias": "held_out_alias", "held_out_template": "held_out_template", "linear_probe": "linear_probe"}
_ACCURACIES = {"d_f_fine": "name", "held_out_alias": "held_out_alias", "held_out_template": "held_out_template",
               "probe_recall": "linear_probe", "relearn_after": "relearn_after", "relearn_at_50": "relearn_at_50",
               "retain_at_50": "retain_at_50", "mlp_recall": "mlp", "knn_recall": "knn", "soft_prompt": "soft_prompt"}
# erasure headline key -> the accuracy it normalises between the original (0) and the oracle (1)
_ERASURES = {"erasure_probe": "probe_recall", "erasure_relearn": "relearn_at_50"}


@dataclass(frozen=True)
class WorstHits:
    """0/1 hits of D_f test images under several alternatives, in groups; its accuracy is the pooled worst case.

    ``positions[g]``: group g's images as indices into the D_f test images; ``hits[g]``: their
    (images, alternatives) hits. Accuracy = 100 * sum_g max_j (hits of column j in g) / sum_g images,
    i.e. each group's images scored under the group's worst (highest-accuracy) alternative. One
    group of every image with one column is plain accuracy (:meth:`of`).
    """

    positions: tuple[np.ndarray, ...]
    hits: tuple[np.ndarray, ...]

    def __post_init__(self) -> None:
        if len(self.positions) != len(self.hits) or not self.positions:
            raise ValueError(f"need one hit table per group of positions and at least one group; got {len(self.positions)} and {len(self.hits)}.")
        for p, h in zip(self.positions, self.hits):
            if h.ndim != 2 or h.shape[0] != len(p) or h.shape[1] == 0:
                raise ValueError(f"a group of {len(p)} images needs an ({len(p)}, alternatives) hit table with an alternative; got {h.shape}.")

    @classmethod
    def of(cls, hits) -> "WorstHits":
        """Plain accuracy: one group of every image, one column (``hits``: one 0/1 value per D_f test image)."""
        h = as_numpy(hits, np.float64).ravel()
        return cls((np.arange(len(h)),), (h[:, None],))

    @classmethod
    def columns(cls, table) -> "WorstHits":
        """One group of every image: the worst of the columns of an (images, alternatives) table."""
        t = as_numpy(table, np.float64)
        return cls((np.arange(len(t)),), (t,))

    def accuracy(self, counts: np.ndarray) -> np.ndarray:
        """Percent per row of ``counts`` ((replicates, D_f images) multiplicities of each image); nan where a row has no image of any group."""
        counts = np.asarray(counts, dtype=np.float64)
        found = sum((counts[:, p] @ h).max(axis=1) for p, h in zip(self.positions, self.hits))
        n = sum(counts[:, p].sum(axis=1) for p in self.positions)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n > 0, 100.0 * found / np.where(n > 0, n, 1), math.nan)


@dataclass(frozen=True)
class ProbeHits:
    """One model's per-image hits on the D_f test images under each headline probe (None: the probe was skipped)."""

    name: WorstHits  # canonical names, training-template ensemble
    held_out_alias: WorstHits | None = None
    held_out_template: WorstHits | None = None
    linear_probe: WorstHits | None = None
    relearn_before: WorstHits | None = None  # the forget attack's curve, first step (the model itself)
    relearn_after: WorstHits | None = None  # ... and last step (the budget)
    relearn_at_50: WorstHits | None = None  # ... after 50 steps (the headline point)
    retain_at_50: WorstHits | None = None  # the retain-only attack after 50 steps
    mlp: WorstHits | None = None  # the MLP probe on frozen features
    knn: WorstHits | None = None  # the kNN probe on frozen features
    soft_prompt: WorstHits | None = None  # zero-shot with the soft-prompt attack's learned text features


def resample_counts(strata: Sequence[np.ndarray], n: int, resamples: int = RESAMPLES, seed: int = 0) -> np.ndarray:
    """(resamples, n) multiplicities of the D_f test images in stratified resamples with replacement.

    ``strata``: disjoint groups of indices 0..n-1 (one per forgotten concept); each replicate draws
    len(group) images of every group with replacement, so strata keep their sizes.
    """
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}.")
    rng = np.random.default_rng(seed)
    counts = np.zeros((resamples, n), dtype=np.float64)
    for group in strata:
        group = np.asarray(group, dtype=np.int64)
        if len(group):
            counts[:, group] += rng.multinomial(len(group), np.full(len(group), 1.0 / len(group)), size=resamples)
    return counts


def relative_drop(original: np.ndarray, unlearned: np.ndarray) -> np.ndarray:
    """:func:`ktmu.evaluation.metrics.relative_drop` per replicate: 100 * (original - unlearned) / original, clipped to [0, 100]; 100 where original is 0."""
    o, u = np.asarray(original, dtype=np.float64), np.asarray(unlearned, dtype=np.float64)
    safe = np.where(o > 0, o, 1.0)
    return np.where(o > 0, np.clip(100.0 * (o - u) / safe, 0.0, 100.0), 100.0)


def recovery(original: np.ndarray, before: np.ndarray, after: np.ndarray, min_gap: float = MIN_GAP) -> np.ndarray:
    """:func:`ktmu.audit.recovery.relearning_recovery` per replicate; nan where original - before < ``min_gap``."""
    gap = np.asarray(original, dtype=np.float64) - before
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(gap >= min_gap, (np.asarray(after) - before) / np.where(gap != 0, gap, 1.0), math.nan)


def _model_statistics(m: ProbeHits, original: ProbeHits, oracle: ProbeHits | None, wc_probes: Sequence[str],
                      counts: np.ndarray, gaps: bool = True) -> dict[str, np.ndarray]:
    acc = {key: getattr(m, f).accuracy(counts) for key, f in _ACCURACIES.items() if getattr(m, f) is not None}
    ref = original.name.accuracy(counts)
    out = dict(acc)
    if m.relearn_before is not None and m.relearn_after is not None:
        out["recovery"] = recovery(ref, m.relearn_before.accuracy(counts), acc["relearn_after"])
    out["quality"] = relative_drop(ref, acc["d_f_fine"])
    if wc_probes:
        per_probe = [relative_drop(getattr(original, WC_PROBES[p]).accuracy(counts), getattr(m, WC_PROBES[p]).accuracy(counts)) for p in wc_probes]
        out["wc_quality"] = np.min(np.stack(per_probe), axis=0)
    if oracle is None:
        return out
    for key, f in _ACCURACIES.items():
        if gaps and getattr(m, f) is not None and getattr(oracle, f) is not None:
            out[f"gap_{key}"] = acc[key] - getattr(oracle, f).accuracy(counts)
    for key, reads in _ERASURES.items():
        f = _ACCURACIES[reads]
        if all(getattr(h, f) is not None for h in (m, original, oracle)):
            out[key] = erasure_replicates(acc[reads], getattr(original, f).accuracy(counts), getattr(oracle, f).accuracy(counts))
    return out


def audit_statistics(hits: Mapping[str, ProbeHits], counts: np.ndarray,
                     wc_probes: Mapping[str, Sequence[str]] | None = None) -> dict[str, dict[str, np.ndarray]]:
    """Role -> headline key -> its value on each row of ``counts`` ((rows, D_f images) multiplicities; a row of ones: the full test set).

    ``hits``: every measured model's :class:`ProbeHits` (``original`` required); ``wc_probes``: per
    role, the probes its worst-case Quality took the minimum over (the record's
    ``worst_case.accuracies`` keys; default: every probe both the model and the original measured).
    """
    if "original" not in hits:
        raise ValueError("the audit's bootstrap compares against the original model: pass its hits under 'original'.")
    original, oracle = hits["original"], hits.get("oracle")
    out = {}
    for role, m in hits.items():
        probes = (wc_probes or {}).get(role)
        if probes is None:
            probes = [p for p, f in WC_PROBES.items() if getattr(m, f) is not None and getattr(original, f) is not None]
        out[role] = _model_statistics(m, original, oracle, probes, counts, gaps=role != "oracle")
    return out


def audit_replicates(hits: Mapping[str, ProbeHits], strata: Sequence[np.ndarray], wc_probes: Mapping[str, Sequence[str]] | None = None,
                     resamples: int = RESAMPLES, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Role -> headline key -> (resamples,) replicates from one paired bootstrap of the D_f test images (module doc).

    ``strata``: the D_f images of each forgotten concept; the rest as :func:`audit_statistics`.
    """
    if "original" not in hits:
        raise ValueError("the audit's bootstrap compares against the original model: pass its hits under 'original'.")
    n = len(hits["original"].name.positions[0])
    return audit_statistics(hits, resample_counts(strata, n, resamples, seed), wc_probes)


def headline_interval(estimates: Sequence[float | None], replicates: Sequence[np.ndarray | None]) -> tuple[float | None, dict]:
    """The mean over seeds and ``{"low", "high", "half_width"}`` of one headline number.

    Written as audit records write nan: null. The interval is null when a seed lacks the number or
    a replicate is nan; the mean is null when a seed lacks it.
    """
    est = [math.nan if e is None else float(e) for e in estimates]
    if any(math.isnan(e) for e in est) or any(r is None or np.isnan(r).any() for r in replicates):
        mean = float(np.mean(est))
        return (None if math.isnan(mean) else mean), {"low": None, "high": None, "half_width": None}
    iv = pooled_seed_interval(est, list(replicates))
    return iv.estimate, {"low": iv.low, "high": iv.high, "half_width": iv.half_width}


def aggregate_audits(audits: Sequence[dict], replicates: Sequence[Mapping[str, Mapping[str, np.ndarray]]], keep_seeds: bool = True) -> dict:
    """One audit record for several seeds: the first seed's, each model with ``mean`` and ``interval`` of its headline numbers.

    ``audits[s]``: seed s's audit record; ``replicates[s]``: its :func:`audit_replicates`. A number
    enters when some seed's record has it (the original has no recovery). ``keep_seeds``: also
    keep the per-seed records under ``seeds`` (``ktmu audit``; a results.json row keeps them under
    its own ``seeds``). ``interval_seeds`` is the number of seeds pooled.
    """
    if not audits or len(audits) != len(replicates):
        raise ValueError(f"need one replicate set per seed's audit; got {len(audits)} audits and {len(replicates)}.")
    models = {}
    for role, first in audits[0]["models"].items():
        mean, interval = {}, {}
        for key, path in HEADLINE.items():
            estimates = [get_path(a["models"].get(role, {}), *path) for a in audits]
            if all(e is None for e in estimates):
                continue
            mean[key], interval[key] = headline_interval(estimates, [r.get(role, {}).get(key) for r in replicates])
        models[role] = {**first, "mean": mean, "interval": interval}
    out = {**audits[0], "models": models, "interval_seeds": len(audits)}
    if keep_seeds:
        out["seeds"] = list(audits)
    return out
