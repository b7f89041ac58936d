"""Indistinguishability from the oracle: do the forgotten images' margins look like those of a model that never knew the concept?

Per D_f test image the *margin* is the true fine class's logit minus the best other class's logit
(the model's own logits: its temperature times the cosine of image and class text features, the
template ensemble the evaluation uses): > 0 where the image is still called by its concept, about
0 on the boundary, < 0 where another class wins. An unlearned model can reach the oracle's accuracy
(every margin < 0) with a very different distribution (e.g. every margin just below 0, where the
oracle's lie far below): the two-sample Kolmogorov-Smirnov test (``scipy.stats.ks_2samp``,
two-sided) compares the whole distributions. The statistic is the largest gap between the two
empirical CDFs (0 = identical, 1 = disjoint); a small p-value says the unlearned model's margins
are distinguishable from the oracle's.

Hand-worked case: margins (1, 2, 3) against (4, 5, 6) -> every value of one below every value of
the other, statistic 1.0; exact two-sided p-value 2 / C(6, 3) = 0.1.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ktmu.evaluation.arrays import as_numpy


@dataclass(frozen=True)
class KsTest:
    """A two-sample Kolmogorov-Smirnov test of two margin samples."""

    statistic: float
    p_value: float
    n: int  # size of the first sample (the audited model's D_f images)
    n_oracle: int


def margins(logits: Any, labels: Any) -> np.ndarray:
    """Per row: the logit of the true class minus the largest other logit ((N, K) logits, N labels)."""
    z, y = as_numpy(logits, np.float64), as_numpy(labels).astype(int)
    if z.ndim != 2 or len(z) != len(y) or z.shape[1] < 2:
        raise ValueError(f"margins need (N, K >= 2) logits with one label per row; got {z.shape} and {len(y)} labels.")
    if len(y) and (y.min() < 0 or y.max() >= z.shape[1]):
        raise ValueError(f"labels must be class indices 0..{z.shape[1] - 1}.")
    rows = np.arange(len(y))
    true = z[rows, y]
    others = z.copy()
    others[rows, y] = -np.inf
    return true - others.max(axis=1)


def ks_test(sample: Any, oracle: Any) -> KsTest:
    """Two-sided two-sample Kolmogorov-Smirnov test of ``sample`` against ``oracle`` (scipy's ``ks_2samp``, exact for small samples)."""
    from scipy.stats import ks_2samp  # heavy import, only when the test runs

    a, b = as_numpy(sample, np.float64).ravel(), as_numpy(oracle, np.float64).ravel()
    if not len(a) or not len(b):
        raise ValueError(f"the KS test needs two non-empty samples; got {len(a)} and {len(b)} margins.")
    res = ks_2samp(a, b)
    return KsTest(float(res.statistic), float(res.pvalue), len(a), len(b))
