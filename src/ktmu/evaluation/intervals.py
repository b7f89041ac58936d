"""Bootstrap 95 % intervals of accuracy-like statistics, within one seed and across seeds.

**Within a seed** (:func:`bootstrap_interval`): resample the test images with replacement
``resamples`` times (seeded), recompute the statistic on each resample, and take the
percentile interval (the 2.5th and 97.5th percentiles for a 95 % level). This is the sampling
uncertainty of the test set for one trained model.

**Across seeds** (:func:`seed_interval`, rule chosen here): pool the bootstrap replicates of
every seed, each seed's replicates shifted so that their mean is that seed's estimate, with the
same number of replicates per seed; the estimate is the mean of the seed estimates and the
interval is the percentile interval of the pooled replicates. Why this rule rather than a
t-interval of the seed means:

* it covers both sources of variation a reader re-running the study meets: which test images
  (the spread of each seed's replicates) and which training seed (the spread of their centres);
* it works from one seed up and reduces to the within-seed interval (up to the centring shift)
  for one seed, whereas a t-interval needs at least two seeds and with three to five seeds is
  dominated by the t quantile (4.30 for two degrees of freedom);
* it assumes no normality, and a statistic that never varies gives a zero-width interval.

It describes where *one run* of the method lands (a prediction-style interval), so it is wider
than an interval for the mean over seeds; that is the conservative choice for tables whose rows
each come from a handful of seeds. Centring each seed's replicates on its estimate removes the
Monte-Carlo drift of the bootstrap mean, so seeds are compared at their actual estimates.

:func:`format_interval` writes ``"97.8 ± 0.4"``: the estimate and half the interval's width
(percentile intervals need not be symmetric; the half-width is what a table reports).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ktmu.evaluation.arrays import as_numpy

Statistic = Callable[[np.ndarray], float]
RESAMPLES = 1000  # Efron & Tibshirani (1993): about 1000 replicates for percentile intervals at 95 %
LEVEL = 0.95


def percent_mean(values: np.ndarray) -> float:
    """100 * the mean over images (axis 0): accuracy in percent from 0/1 hits."""
    return float(100.0 * np.mean(values))


@dataclass(frozen=True)
class Interval:
    """An estimate with a confidence interval."""

    estimate: float
    low: float
    high: float
    level: float = LEVEL
    seeds: int = 1
    resamples: int = RESAMPLES  # bootstrap replicates per seed

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def __str__(self) -> str:
        return format_interval(self)


def format_interval(interval: Interval, digits: int = 1) -> str:
    """``"97.8 ± 0.4"``: the estimate and the interval's half-width, each to ``digits`` decimals."""
    return f"{interval.estimate:.{digits}f} ± {interval.half_width:.{digits}f}"


def _check(values: Any) -> np.ndarray:
    v = as_numpy(values, np.float64)
    if v.ndim == 0 or len(v) == 0:
        raise ValueError("no test images to bootstrap: pass one value (or row) per test image.")
    return v


def _check_level(level: float) -> None:
    if not 0 < level < 1:
        raise ValueError(f"level must be a probability between 0 and 1 (e.g. 0.95), got {level}.")


def bootstrap_replicates(values: Any, statistic: Statistic | None = None, resamples: int = RESAMPLES, seed: int = 0) -> np.ndarray:
    """(resamples,) values of ``statistic`` on seeded resamples (with replacement) of the rows of ``values``.

    ``values``: one entry or row per test image (e.g. 0/1 hits, or paired original/unlearned hits
    as an (N, 2) array); ``statistic`` maps a resampled array to a number (default: accuracy in
    percent, :func:`percent_mean`, computed without a Python loop).
    """
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}.")
    v = _check(values)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(v), size=(resamples, len(v)))
    if statistic is None:
        flat = v.reshape(len(v), -1).mean(axis=1)  # a row's mean: the mean over all entries of a resample
        return 100.0 * flat[idx].mean(axis=1)
    return np.array([statistic(v[i]) for i in idx], dtype=np.float64)


def bootstrap_interval(values: Any, statistic: Statistic | None = None, resamples: int = RESAMPLES, seed: int = 0, level: float = LEVEL) -> Interval:
    """Percentile bootstrap interval of ``statistic`` over the test images of one run (see module doc)."""
    _check_level(level)
    stat = statistic or percent_mean
    v = _check(values)
    reps = bootstrap_replicates(v, statistic, resamples, seed)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(reps, [tail, 100 - tail])
    return Interval(float(stat(v)), float(low), float(high), level, 1, resamples)


def pooled_seed_interval(estimates: Sequence[float], replicates: Sequence[Any], level: float = LEVEL) -> Interval:
    """Combine seeds: percentile interval of every seed's replicates, each centred on its seed's estimate (see module doc).

    ``estimates[s]``: the statistic on seed ``s``'s full test set; ``replicates[s]``: that seed's
    bootstrap replicates (the same number for every seed, so each seed weighs the same).
    """
    _check_level(level)
    if len(estimates) == 0 or len(estimates) != len(replicates):
        raise ValueError(f"need one estimate and one replicate array per seed; got {len(estimates)} and {len(replicates)}.")
    reps = [as_numpy(r, np.float64).ravel() for r in replicates]
    sizes = {len(r) for r in reps}
    if len(sizes) != 1 or 0 in sizes:
        raise ValueError(f"every seed needs the same, non-zero number of bootstrap replicates; got {sorted(len(r) for r in reps)}.")
    est = np.asarray(estimates, dtype=np.float64)
    pooled = np.concatenate([r - r.mean() + e for r, e in zip(reps, est)])
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(pooled, [tail, 100 - tail])
    return Interval(float(est.mean()), float(low), float(high), level, len(reps), sizes.pop())


def seed_interval(values_per_seed: Sequence[Any], statistic: Statistic | None = None, resamples: int = RESAMPLES, seed: int = 0,
                  level: float = LEVEL) -> Interval:
    """Interval of ``statistic`` across training seeds: bootstrap each seed's test values, then pool (see module doc).

    ``values_per_seed[s]``: one value or row per test image for the model trained with seed ``s``.
    Seed ``s`` is resampled with its own stream spawned from ``seed``, so adding a seed does not
    change the others' replicates.
    """
    if len(values_per_seed) == 0:
        raise ValueError("no seeds given: pass one array of per-image values per training seed.")
    stat = statistic or percent_mean
    streams = np.random.SeedSequence(seed).spawn(len(values_per_seed))
    values = [_check(v) for v in values_per_seed]
    estimates = [float(stat(v)) for v in values]
    reps = [bootstrap_replicates(v, statistic, resamples, int(s.generate_state(1)[0])) for v, s in zip(values, streams)]
    return pooled_seed_interval(estimates, reps, level)
