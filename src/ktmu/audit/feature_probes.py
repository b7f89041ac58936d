"""Two more readers of frozen image features: a small MLP and k-nearest-neighbours, beside the linear probe.

A method can make the forgotten concept linearly inseparable (a closed-form projection such as
LEACE does exactly that) and still leave it in the features, readable by a non-linear probe or by
plain proximity. Both probes here read the same budgeted train images as the linear probe
(:func:`ktmu.audit.linear_probe.probe_train_indices`, the same seed) and report the same
:class:`~ktmu.audit.linear_probe.ProbeResult` (recall of the forgotten concepts, accuracy on the
kept ones):

* :func:`fit_mlp_probe`: one hidden layer of :data:`MLP_HIDDEN` ReLU units (scikit-learn's
  ``MLPClassifier``, Adam, its default L2 penalty, batches of 200), on the features standardised as
  the linear probe standardises them; deterministic given the seed (which also seeds the weight
  initialisation and the batch order);
* :func:`knn_probe`: the majority fine label of the ``k`` = :data:`KNN_K` train images nearest by
  cosine similarity of the model's own features (CLIP compares by cosine, so no standardisation);
  a tie in votes goes to the class whose tied neighbours are the more similar in sum.

Hand-worked kNN case: train points (1, 0) of class 0, (0.8, 0.6) of class 1 and (0, 1) of class 1,
k = 1; the test point (0.9, 0.1) is nearest to (1, 0) (cosine 0.99) -> class 0; with k = 3 the votes
are 2 for class 1, 1 for class 0 -> class 1.
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from ktmu.audit.linear_probe import ProbeData, ProbeResult

# one hidden layer of 64: on the mini-CLIP (shirt) its recalls are within 0.5 points of 256 units' (original 77.7 / 78.1, nhl-kl
# 76.7 / 76.6, oracle 61.4 / 60.9) at less than half the time (2-3 s against 5-7 s on a shared CPU core)
MLP_HIDDEN = 64
MLP_EPOCHS = 200  # at most 200 Adam passes (scikit-learn's default; it stops earlier once the loss stops improving): 500 changed < 1 point
KNN_K = 10  # neighbours per vote: the brief's choice; a tenth of the 100-image per-class budget, so one class's images can outvote noise


def fit_mlp_probe(train_features: Any, train_labels: Any, test_features: Any, test_labels: Any, forgotten: Any,
                  num_classes: int | None = None, per_class: int = 100, seed: int = 0, hidden: int = MLP_HIDDEN,
                  epochs: int = MLP_EPOCHS, alpha: float = 1e-4) -> ProbeResult:
    """A one-hidden-layer MLP probe on standardised frozen features (the linear probe's train images and scaling); its test recalls.

    ``alpha``: scikit-learn's default L2 penalty, the same for every model audited. Convergence
    warnings are silenced: the budget is fixed on purpose (every model gets the same ``epochs``).
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier  # heavy import, only when a probe is fitted

    if hidden < 1 or epochs < 1:
        raise ValueError(f"the MLP probe needs at least one hidden unit and one epoch; got {hidden} and {epochs}.")
    data = ProbeData.of(train_features, train_labels, test_features, test_labels, forgotten, num_classes, per_class, seed)
    x, x_test = data.standardised()
    mlp = MLPClassifier(hidden_layer_sizes=(hidden,), alpha=alpha, max_iter=epochs, random_state=seed, shuffle=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp.fit(x, data.y_train)
    return data.result(mlp.predict(x_test))


def knn_probe(train_features: Any, train_labels: Any, test_features: Any, test_labels: Any, forgotten: Any,
              num_classes: int | None = None, per_class: int = 100, seed: int = 0, k: int = KNN_K) -> ProbeResult:
    """k-nearest-neighbours by cosine similarity on the linear probe's train images; its test recalls (module doc)."""
    data = ProbeData.of(train_features, train_labels, test_features, test_labels, forgotten, num_classes, per_class, seed)
    return data.result(knn_predict(data.x_train, data.y_train, data.x_test, k, data.num_classes))


def knn_predict(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, k: int, num_classes: int, chunk: int = 2048) -> np.ndarray:
    """The cosine-kNN label of each test row (ties in votes: the larger summed similarity; then the lower class index)."""
    if k < 1:
        raise ValueError(f"k-nearest-neighbours needs k >= 1, got {k}.")
    k = min(k, len(x_train))
    unit = lambda x: x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)  # noqa: E731
    train, y = unit(np.asarray(x_train, np.float64)), np.asarray(y_train, int)
    out = np.empty(len(x_test), dtype=int)
    for start in range(0, len(x_test), chunk):  # (chunk, n_train) similarities at a time: 10,000 test images stay small
        sims = unit(np.asarray(x_test[start:start + chunk], np.float64)) @ train.T
        near = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        votes = np.zeros((len(sims), num_classes))
        weight = np.zeros((len(sims), num_classes))
        rows = np.repeat(np.arange(len(sims)), k)
        np.add.at(votes, (rows, y[near].ravel()), 1.0)
        np.add.at(weight, (rows, y[near].ravel()), np.take_along_axis(sims, near, axis=1).ravel())
        best = votes == votes.max(axis=1, keepdims=True)
        out[start:start + chunk] = np.where(best, weight, -np.inf).argmax(axis=1)
    return out
