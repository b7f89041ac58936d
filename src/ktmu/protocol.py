"""The study's evaluation protocol: D_f test, D_r test and zero-shot on the untouched domains."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .backbones import Backbone
from .data import ConceptDataset
from .evaluate import ZeroShotEvaluator
from .request import UnlearningRequest


class UnlearningEvaluator:
    """Scores any number of models for one request; test images are preprocessed once.

    * ``forget_fine`` / ``forget_coarse``: accuracy on D_f test (test images of the forgotten fine
      concepts); for a hybrid goal ``forget_coarse`` covers only the images under forgotten coarse
      concepts and ``forget_kept_coarse`` the rest of D_f.
    * ``retain_fine`` / ``retain_coarse``: accuracy on D_r test (all other test images of the world).
    * ``zero_shot``: mean fine accuracy over the other domains; ``zero_shot_domains`` each one.
    """

    def __init__(self, request: UnlearningRequest, test: ConceptDataset, other_domains: Sequence[ConceptDataset], preprocess, progress: bool = False) -> None:
        self.request = request
        self.world = ZeroShotEvaluator(test, preprocess, progress=progress)
        self.others = [ZeroShotEvaluator(d, preprocess, progress=progress) for d in other_domains]
        fine = test.fine_labels
        self.d_f = np.isin(fine, request.forget_fine)
        coarse_forgotten = np.isin(test.coarse_labels, request.forget_coarse)
        self.d_f_forgotten_coarse = self.d_f & coarse_forgotten
        self.d_f_kept_coarse = self.d_f & ~coarse_forgotten

    def evaluate(self, backbone: Backbone) -> dict:
        ev = self.world.evaluate(backbone)
        d_f, d_r = ev.subset(self.d_f), ev.subset(~self.d_f)
        out = {
            "forget_coarse": d_f.coarse_acc,
            "forget_fine": d_f.fine_acc,
            "retain_coarse": d_r.coarse_acc,
            "retain_fine": d_r.fine_acc,
        }
        if self.request.goal == "hybrid":
            out["forget_coarse"] = ev.subset(self.d_f_forgotten_coarse).coarse_acc
            if self.d_f_kept_coarse.any():
                out["forget_kept_coarse"] = ev.subset(self.d_f_kept_coarse).coarse_acc
        others = {o.dataset.hierarchy.name: o.evaluate(backbone).summary() for o in self.others}
        zero_shot = {name: r["fine_acc"] for name, r in others.items()}
        own = ev.summary()
        summaries = {self.world.dataset.hierarchy.name: own, **others}
        out["zero_shot"] = float(np.mean(list(zero_shot.values()))) if zero_shot else float("nan")
        out["zero_shot_domains"] = zero_shot
        out["per_class_fine"] = own["per_class"]
        out["domains"] = summaries  # the full ``ktmu eval`` record of every domain
        return out
