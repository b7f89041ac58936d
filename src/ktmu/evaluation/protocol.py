"""The study's evaluation protocol: D_f test, D_r test and zero-shot on the untouched domains."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ktmu.backbones import Backbone
from ktmu.data import ConceptDataset
from ktmu.engine.goals import D_F_FORGOTTEN_COARSE, D_F_KEPT_COARSE, D_R, goal_spec, select
from ktmu.evaluation.zero_shot import WorldEval, ZeroShotEvaluator
from ktmu.engine.request import RequestError, UnlearningRequest

Domain = ConceptDataset | tuple[ConceptDataset, Sequence[str]]  # a dataset, or a dataset with its own templates


def check_test_covers_request(request: UnlearningRequest, test: ConceptDataset) -> None:
    """Refuse a test split without images of some forgotten fine concept: D_f test would be empty or partial."""
    present = set(np.unique(test.fine_labels).tolist())
    missing = [request.world.fine_names[i] for i in request.forget_fine if i not in present]
    if missing:
        raise RequestError(f"the test split has no images of {', '.join(map(repr, missing))}; D_f test cannot be measured. "
                           "Add test images of every concept you forget, or forget other concepts.")


class UnlearningEvaluator:
    """Scores any number of models for one request; small test splits are preprocessed once, large ones streamed.

    * ``forget_fine`` / ``forget_coarse``: accuracy on D_f test (test images of the forgotten fine
      concepts); for a hybrid goal ``forget_coarse`` covers only the images under forgotten coarse
      concepts and ``forget_kept_coarse`` the rest of D_f (the goal's accuracies and their images:
      :data:`ktmu.engine.goals.GOAL_TABLE`).
    * ``retain_fine`` / ``retain_coarse``: accuracy on D_r test (all other test images of the world).
    * ``zero_shot``: mean fine accuracy over the other domains; ``zero_shot_domains`` each one.
    * ``retain_fine_top_share``: the largest fraction of D_r test predicted as one fine class (collapse check).

    ``last`` keeps the per-image predictions of the latest :meth:`evaluate` on the world's test split
    (with ``d_f`` and friends, what :mod:`ktmu.evaluation.seeds` resamples for intervals), and ``last_others``
    those on each zero-shot domain (by name); they never enter the scores.
    """

    def __init__(self, request: UnlearningRequest, test: ConceptDataset, other_domains: Sequence[Domain], preprocess, progress: bool = False,
                 batch_size: int = 256, workers: int = 0) -> None:
        check_test_covers_request(request, test)
        self.request = request
        opts = dict(progress=progress, batch_size=batch_size, workers=workers)
        self.world = ZeroShotEvaluator(test, preprocess, **opts)
        self.others = []
        for d in other_domains:
            dataset, templates = d if isinstance(d, tuple) else (d, None)
            self.others.append(ZeroShotEvaluator(dataset, preprocess, templates, **opts))
        fine = test.fine_labels
        self.d_f = np.isin(fine, request.forget_fine)
        coarse_forgotten = np.isin(test.coarse_labels, request.forget_coarse)
        self.d_f_forgotten_coarse = self.d_f & coarse_forgotten
        self.d_f_kept_coarse = self.d_f & ~coarse_forgotten
        self.strata = {D_R: ~self.d_f, D_F_FORGOTTEN_COARSE: self.d_f_forgotten_coarse, D_F_KEPT_COARSE: self.d_f_kept_coarse}
        self.last: WorldEval | None = None
        self.last_others: dict[str, WorldEval] = {}

    def evaluate(self, backbone: Backbone) -> dict:
        ev = self.world.evaluate(backbone)
        self.last = ev
        d_r = ev.subset(~self.d_f)
        world = self.request.world
        out = {}
        for acc in goal_spec(self.request.goal).accuracies:
            images = select(self.strata, acc.images)
            if acc.optional and not images.any():
                continue
            part = ev.subset(images)
            out[acc.key] = part.fine_acc if acc.level == "fine" else part.coarse_acc
        self.last_others = {o.dataset.hierarchy.name: o.evaluate(backbone) for o in self.others}
        others = {name: ev.summary() for name, ev in self.last_others.items()}
        zero_shot = {name: r["fine_acc"] for name, r in others.items()}
        own = ev.summary()
        summaries = {self.world.dataset.hierarchy.name: own, **others}
        out["zero_shot"] = float(np.mean(list(zero_shot.values()))) if zero_shot else float("nan")
        out["zero_shot_domains"] = zero_shot
        out["retain_fine_top_share"] = d_r.top_class_share
        out["n_fine"], out["n_coarse"] = len(world.fine), len(world.coarse)
        out["d_f_test_images"], out["d_r_test_images"] = int(self.d_f.sum()), int((~self.d_f).sum())
        out["d_f_forgotten_coarse_images"] = int(self.d_f_forgotten_coarse.sum())
        out["d_r_fine_classes"] = int(len(np.unique(d_r.fine_labels.numpy()))) if len(d_r.fine_labels) else 0
        out["per_class_fine"] = own["per_class"]
        out["domains"] = summaries  # the full ``ktmu eval`` record of every domain
        return out
