"""Where does a merged concept still lie apart from its siblings? (analysis for the knowledge audit's independent check)

The audit's probes read the forgotten concept from image features with 100 train images per class;
the independent check of docs/audit.md reads it with 300 and finds more of it in tar-merge-mmd's
features than in the oracle's. This script measures, per model, on the fashion world's "shirt"
(the embedded difficult request, proxy forget set of seed 0):

* the linear-probe and kNN (k = 10) recall of shirts with 100 and with 300 train images per class
  (drawn outside the proxy forget set, seed 7; the test split as the audit's);
* the gap between the mean unit feature of shirts and that of their siblings (t-shirt, pullover, coat:
  the kept fine concepts under "top"), as a Euclidean length and as a squared Mahalanobis distance
  under the siblings' pooled within-class covariance (from the 300-per-class images, shrunk by 0.1 of
  its mean eigenvalue towards the isotropic), for three sets of shirts: the proxy forget set (the
  images a method trained on), unseen train shirts and test shirts.

A gap that is small in Euclidean length but large in Mahalanobis distance lies along directions in
which the siblings hardly vary: what a probe with enough images reads and a Gaussian-kernel merge
(merge-mmd) barely sees.

Run: ``python scripts/linear_residual.py SPEC [SPEC ...]``, e.g. ``python scripts/linear_residual.py mini-clip
mini-clip:without-shirt mini-clip:runs/check/tar/model.safetensors`` (about 40 s per model on 2 cores).
"""
from __future__ import annotations

import sys

import numpy as np

from ktmu.audit.feature_probes import knn_probe
from ktmu.audit.linear_probe import fit_linear_probe, probe_train_indices
from ktmu.backbones import load_backbone
from ktmu.backbones.encode import embed_source
from ktmu.data import load_dataset
from ktmu.data.stream import image_source
from ktmu.engine.request import UnlearningRequest, forget_set_indices

SIBLINGS = ("t-shirt", "pullover", "coat")
BUDGETS = (100, 300)


def main(specs: list[str]) -> None:
    train, test = load_dataset("fashion", "train"), load_dataset("fashion", "test")
    names = [c.name for c in train.hierarchy.fine]
    shirt, siblings = names.index("shirt"), [names.index(n) for n in SIBLINGS]
    request = UnlearningRequest.parse(train.hierarchy, ["shirt"])
    y_train, y_test = np.asarray(train.fine_labels), np.asarray(test.fine_labels)
    forget_idx = forget_set_indices(request, train, seed=0)
    pool = np.setdiff1d(np.arange(len(y_train)), forget_idx)
    probe_idx = pool[probe_train_indices(y_train[pool], max(BUDGETS), seed=7)]
    yp = y_train[probe_idx]
    print("model | probe recall 100 / 300 per class | kNN recall 100 / 300 | shirt-sibling gap, |d| and Mahalanobis: forget set; unseen; test")
    for spec in specs:
        bb = load_backbone(spec)
        xf = embed_source(bb, image_source(train, bb.preprocess), forget_idx).numpy()
        xp = embed_source(bb, image_source(train, bb.preprocess), probe_idx).numpy()
        xt = embed_source(bb, image_source(test, bb.preprocess)).numpy()
        probes, knns = [], []
        for budget in BUDGETS:
            keep = np.concatenate([np.where(yp == c)[0][:budget] for c in range(len(names))])
            probes.append(fit_linear_probe(xp[keep], yp[keep], xt, y_test, [shirt], per_class=10**9).forgotten_recall)
            knns.append(knn_probe(xp[keep], yp[keep], xt, y_test, [shirt], per_class=10**9).forgotten_recall)
        near = xp[np.isin(yp, siblings)]
        cov = sum(np.cov(xp[yp == c].T) for c in siblings) / len(siblings)
        inv = np.linalg.inv(cov + 0.1 * np.trace(cov) / len(cov) * np.eye(len(cov)))

        def gap(x: np.ndarray) -> str:
            d = x.mean(0) - near.mean(0)
            return f"{np.linalg.norm(d):.3f} / {float(d @ inv @ d):5.2f}"

        print(f"{spec} | {probes[0]:.1f} / {probes[1]:.1f} | {knns[0]:.1f} / {knns[1]:.1f} | "
              f"{gap(xf)}; {gap(xp[yp == shirt])}; {gap(xt[y_test == shirt])}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__.split("Run: ")[1].strip())
    main(sys.argv[1:])
