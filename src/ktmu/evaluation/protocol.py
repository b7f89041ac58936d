"""The study's evaluation protocol: D_f test, D_r test and zero-shot on the untouched domains."""
from __future__ import annotations

import copy
from typing import Mapping, Sequence

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
    * ``retain_fine`` / ``retain_coarse``: accuracy on D_r test (all other test images of the world; for a
      request on a model that forgot concepts before, ``also_forgotten``, not their images either).
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
        self._masks(test)
        self.last: WorldEval | None = None
        self.last_others: dict[str, WorldEval] = {}

    def _masks(self, test: ConceptDataset) -> None:
        """The request's image sets: D_f (its own concepts), D_r (no concept any request forgot) and D_f's coarse strata."""
        request = self.request
        fine = test.fine_labels
        self.d_f = np.isin(fine, request.forget_fine)
        # D_r: images of concepts no request forgot; without earlier requests (also_forgotten) exactly ~d_f
        self.d_r = ~np.isin(fine, request.forgotten_fine_classes)
        coarse_forgotten = np.isin(test.coarse_labels, request.forget_coarse)
        self.d_f_forgotten_coarse = self.d_f & coarse_forgotten
        self.d_f_kept_coarse = self.d_f & ~coarse_forgotten
        self.strata = {D_R: self.d_r, D_F_FORGOTTEN_COARSE: self.d_f_forgotten_coarse, D_F_KEPT_COARSE: self.d_f_kept_coarse}

    def with_request(self, request: UnlearningRequest) -> "UnlearningEvaluator":
        """An evaluator of another request on the same test split and zero-shot domains, sharing their loaded images.

        Predictions do not depend on the request, so :meth:`score` of either scores the other's
        :attr:`last` predictions (cumulative scores of a sequence of requests, :mod:`ktmu.evaluation.cumulative`).
        """
        check_test_covers_request(request, self.world.dataset)
        other = copy.copy(self)
        other.request = request
        other._masks(self.world.dataset)
        other.last, other.last_others = None, {}
        return other

    def predict(self, backbone: Backbone) -> tuple[WorldEval, dict[str, WorldEval]]:
        """``backbone``'s predictions on the world's test split and on each zero-shot domain (by name); they do not depend on the request."""
        return self.world.evaluate(backbone), {o.dataset.hierarchy.name: o.evaluate(backbone) for o in self.others}

    def evaluate(self, backbone: Backbone) -> dict:
        """The scores of ``backbone``'s current weights (:meth:`score` of its predictions, kept in :attr:`last` / :attr:`last_others`)."""
        self.last, self.last_others = self.predict(backbone)
        return self.score(self.last, self.last_others)

    def score(self, ev: WorldEval, others: Mapping[str, WorldEval]) -> dict:
        """The scores of one model's predictions: ``ev`` on the world's test split, ``others`` on each zero-shot domain (by name)."""
        d_r = ev.subset(self.d_r)
        world = self.request.world
        out = {}
        for acc in goal_spec(self.request.goal).accuracies:
            images = select(self.strata, acc.images)
            if acc.optional and not images.any():
                continue
            part = ev.subset(images)
            out[acc.key] = part.fine_acc if acc.level == "fine" else part.coarse_acc
        summaries_others = {name: other.summary() for name, other in others.items()}
        zero_shot = {name: r["fine_acc"] for name, r in summaries_others.items()}
        own = ev.summary()
        summaries = {self.world.dataset.hierarchy.name: own, **summaries_others}
        out["zero_shot"] = float(np.mean(list(zero_shot.values()))) if zero_shot else float("nan")
        out["zero_shot_domains"] = zero_shot
        out["retain_fine_top_share"] = d_r.top_class_share
        out["n_fine"], out["n_coarse"] = len(world.fine), len(world.coarse)
        out["d_f_test_images"], out["d_r_test_images"] = int(self.d_f.sum()), int(self.d_r.sum())
        out["d_f_forgotten_coarse_images"] = int(self.d_f_forgotten_coarse.sum())
        out["d_r_fine_classes"] = int(len(np.unique(d_r.fine_labels.numpy()))) if len(d_r.fine_labels) else 0
        out["per_class_fine"] = own["per_class"]
        out["domains"] = summaries  # the full ``ktmu eval`` record of every domain
        return out
