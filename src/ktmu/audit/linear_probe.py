"""Linear probe: do the frozen image features still separate a forgotten concept from the rest?

Zero-shot accuracy asks whether an image lands on the concept's *name*. A probe asks whether the
*features* still carry the concept: a multinomial logistic regression is fitted on image features
of every fine class (train split, a fixed seeded budget per class), and its recall on the test
features of the forgotten classes says how much of the concept a few labelled examples can read
back out. A model that only learned to avoid a word keeps a near-original probe recall.

The budget must be fixed and reported: on the mini-CLIP the original model's shirt recall is flat
from 16 to 300 train images per class (75.3, 73.7, 74.2, 75.7 % at 16, 64, 100, 300), but an
unlearned model's grows with it (simnpo: 62.6, 69.5, 71.3, 73.7 %), since more examples read
more of what is left. The default 100 is on the flat part for the original and is at most the
150-image proxy forget set of one concept, the scale of data an auditor would hold.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ktmu.evaluation.arrays import as_numpy, class_set


@dataclass(frozen=True)
class ProbeResult:
    """A fitted probe's test recalls, in percent."""

    recall: np.ndarray  # (K,) per-class recall on the test features; nan for a class with no test sample
    forgotten_recall: float  # recall pooled over the test samples of every forgotten class
    kept_accuracy: float  # accuracy on the other test samples: shows the probe itself works
    predictions: np.ndarray  # (N_test,) the probe's fine label for each test sample
    train_size: int  # samples the probe was fitted on (after the per-class budget)


def probe_train_indices(labels: Sequence[int] | np.ndarray, per_class: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of ``per_class`` seeded-random samples of every class in ``labels`` (all of a smaller class)."""
    if per_class < 1:
        raise ValueError(f"per_class must be at least 1 sample per class, got {per_class}.")
    y = as_numpy(labels).astype(int)
    rng = np.random.default_rng(seed)
    picked = [rng.permutation(np.flatnonzero(y == k))[:per_class] for k in np.unique(y)]  # classes in sorted order
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, dtype=int)


def fit_linear_probe(
    train_features: Any,
    train_labels: Any,
    test_features: Any,
    test_labels: Any,
    forgotten: Any,
    num_classes: int | None = None,
    per_class: int = 100,  # fixed and equal for every class and model audited; why 100: module doc
    seed: int = 0,
    c: float = 1.0,  # scikit-learn's default inverse L2 strength, on standardised features; the same for every model audited
    max_iter: int = 1000,  # L-BFGS iterations: enough for a few thousand samples of a few hundred dimensions
) -> ProbeResult:
    """Fit a multinomial logistic-regression probe on frozen features and return its test recalls.

    ``forgotten``: fine class indices or a (K,) boolean mask. Features are standardised with the
    (budgeted) train split's mean and standard deviation. The fit is deterministic given ``seed``
    (which only picks the budgeted samples; L-BFGS itself draws nothing). A class with no train
    sample is never predicted, so its recall is 0.
    """
    from sklearn.linear_model import LogisticRegression  # heavy import, only when a probe is fitted

    data = ProbeData.of(train_features, train_labels, test_features, test_labels, forgotten, num_classes, per_class, seed)
    x, x_test = data.standardised()
    probe = LogisticRegression(C=c, max_iter=max_iter)
    probe.fit(x, data.y_train)
    return data.result(probe.predict(x_test))


@dataclass(frozen=True)
class ProbeData:
    """A probe's checked inputs: the budgeted train features and labels, the test features and labels, the forgotten classes."""

    x_train: np.ndarray  # (n, D) float64, the budgeted train samples only
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    forgotten: np.ndarray  # sorted fine class indices

    @classmethod
    def of(cls, train_features: Any, train_labels: Any, test_features: Any, test_labels: Any, forgotten: Any,
           num_classes: int | None, per_class: int, seed: int) -> "ProbeData":
        """Check shapes and labels and apply the per-class budget (:func:`probe_train_indices`); errors name what is wrong."""
        x_train, y_train = as_numpy(train_features, np.float64), as_numpy(train_labels).astype(int)
        x_test, y_test = as_numpy(test_features, np.float64), as_numpy(test_labels).astype(int)
        for name, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
            if x.ndim != 2 or len(x) != len(y):
                raise ValueError(f"{name} features must be (N, D) with one label each; got {x.shape} features and {len(y)} labels.")
        if x_train.shape[1] != x_test.shape[1]:
            raise ValueError(f"train features are {x_train.shape[1]}-d but test features are {x_test.shape[1]}-d; use one model for both.")
        k = num_classes if num_classes is not None else int(max(y_train.max(initial=-1), y_test.max(initial=-1)) + 1)
        if max(y_train.max(initial=-1), y_test.max(initial=-1)) >= k or min(y_train.min(initial=0), y_test.min(initial=0)) < 0:
            raise ValueError(f"labels must be fine class indices 0..{k - 1}.")
        idx = probe_train_indices(y_train, per_class, seed)
        if len(np.unique(y_train[idx])) < 2:
            raise ValueError("a probe needs train features of at least two classes.")
        return cls(x_train[idx], y_train[idx], x_test, y_test, k, class_set(forgotten, k))

    def standardised(self) -> tuple[np.ndarray, np.ndarray]:
        """Train and test features standardised with the budgeted train samples' mean and standard deviation."""
        mean, std = self.x_train.mean(0), self.x_train.std(0)
        std = np.where(std == 0, 1.0, std)  # a constant feature carries nothing; leave it at 0 rather than divide by 0
        return (self.x_train - mean) / std, (self.x_test - mean) / std

    def result(self, predictions: Any) -> ProbeResult:
        """Per-class recall, pooled forgotten recall and kept accuracy of test ``predictions``, in percent."""
        pred = as_numpy(predictions).astype(int)
        hit = pred == self.y_test
        recall = np.full(self.num_classes, np.nan)
        for cls in range(self.num_classes):
            mine = self.y_test == cls
            if mine.any():
                recall[cls] = 100.0 * hit[mine].mean()
        is_forgotten = np.isin(self.y_test, self.forgotten)
        pct = lambda m: float(100.0 * hit[m].mean()) if m.any() else float("nan")  # noqa: E731
        return ProbeResult(recall, pct(is_forgotten), pct(~is_forgotten), pred, len(self.y_train))
