"""Checkpoint selection: which epoch's weights an unlearning run keeps, from forget-set data only (as in the study).

Two rules behind one interface (:class:`Selection`), chosen by ``TrainConfig.selection``:

* ``"ours"`` (:class:`OursSelection`, the default): after each epoch the candidate weights (for
  task vectors, the negated ones) are scored by zero-shot accuracy (template ensemble) on the
  forget train images at the forgotten level(s) (:func:`forget_scores`: the goal's Quality
  accuracies, :data:`ktmu.engine.goals.GOAL_TABLE`), and the epoch with the lowest score is kept;
  ties go to the earliest epoch, which has moved the weights least.
* ``"study"`` (:class:`StudySelection`): the study's rule, with no extra pass: the epoch's average
  fine accuracy on the forget batches it trained on, read from the training logits (one template,
  weights as they were before each step); most methods keep the lowest (strictly lower than
  before), the methods in :data:`STUDY_KEEPS_HIGHEST` keep the highest (">= best so far", a quirk
  of its code that ktmu reproduces rather than fixes; for task vectors it scores the fine-tuned,
  not the negated, weights).

The kept weights live in one preallocated buffer on the device (:class:`BestWeights`).
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Mapping

import torch

from ktmu.backbones import Backbone
from ktmu.backbones.encode import class_text_features, embed_source
from ktmu.concepts import Hierarchy
from ktmu.engine.forget_set import ForgetSet
from ktmu.engine.goals import D_F_FORGOTTEN_COARSE, D_F_KEPT_COARSE, goal_spec, select
from ktmu.methods import UnlearningMethod
from ktmu.prompts import eval_templates

# The study's selection keeps the epoch with the highest step-time forget accuracy (">=") for these
# methods and the lowest (strictly lower) for every other one (study.yaml, checkpoint_selection).
STUDY_KEEPS_HIGHEST = frozenset({"task-vector", "relabel", "salun"})


def _percent(hits: torch.Tensor) -> float:
    return float(hits.float().mean() * 100) if len(hits) else float("nan")


@torch.no_grad()
def forget_scores(backbone: Backbone, forget: ForgetSet, world: Hierarchy, batch_size: int = 256, workers: int = 0) -> dict[str, float]:
    """Zero-shot (template ensemble) accuracies on the forget-set images, and the selection score.

    ``forget_fine``: fine accuracy on all of them; ``forget_coarse``: coarse accuracy on all of
    them; ``score``: what checkpoint selection minimises, mirroring Quality: the mean of the goal's
    forgotten accuracies, each on the images the goal measures it on (fine accuracy for a fine goal,
    coarse accuracy for a coarse goal, their mean for a hybrid goal with coarse accuracy over the
    images whose coarse label is forgotten).
    """
    feats = embed_source(backbone, forget.source, batch_size=batch_size, workers=workers)
    fine = (feats @ class_text_features(backbone, world.fine_names, eval_templates(world)).float().cpu().T).argmax(1) == forget.fine
    coarse = (feats @ class_text_features(backbone, world.coarse_names, eval_templates(world)).float().cpu().T).argmax(1) == forget.coarse
    out = {"forget_fine": _percent(fine), "forget_coarse": _percent(coarse)}
    hits = {"fine": fine, "coarse": coarse}
    strata = {D_F_FORGOTTEN_COARSE: forget.forget_coarse, D_F_KEPT_COARSE: ~forget.forget_coarse}
    spec = goal_spec(forget.goal)
    forgotten = [spec.accuracy(key) for key in spec.forgotten]
    accs = [_percent(hits[acc.level][select(strata, acc.images)]) for acc in forgotten]
    out["score"] = sum(accs) / len(accs)
    return out


class Candidate:
    """One epoch's trained weights as a selection rule sees them: as trained, or finalized on request.

    A method that rewrites weights (a task vector's negation) is scored and kept in its final form;
    :meth:`finalize` applies it in place, :meth:`restore` puts the trained weights back so that
    training goes on from them.
    """

    def __init__(self, backbone: Backbone, method: UnlearningMethod, params: Mapping[str, torch.nn.Parameter],
                 original: Mapping[str, torch.Tensor]) -> None:
        self.backbone, self.method, self.params, self.original = backbone, method, params, original
        self._trained: dict[str, torch.Tensor] | None = None

    def finalize(self) -> None:
        """Turn the weights into the method's final form (nothing for most methods)."""
        if self.method.rewrites_weights and self._trained is None:
            self._trained = self.backbone.copy_trainable()
            self.method.finalize_(self.params, self.original)

    def restore(self) -> None:
        """Back to the weights as trained, if :meth:`finalize` changed them."""
        if self._trained is not None:
            self.backbone.load_trainable(self._trained)
            self._trained = None


@dataclass
class Verdict:
    """A selection rule's judgement of one epoch: its score, whether it is kept, and what it adds to the epoch's log."""

    score: float
    keep: bool
    record: dict[str, float] = field(default_factory=dict)


class Selection(ABC):
    """A checkpoint-selection rule: after each epoch, score the candidate weights and say whether they are the best so far."""

    rule: str  # the rule in words (results.json's selection_rule)
    best: float  # the best score so far

    @abstractmethod
    def judge(self, candidate: Candidate, step_accuracy: float) -> Verdict:
        """Score the epoch; ``step_accuracy`` is its forget-train fine accuracy under the training steps' logits."""

    def consider(self, candidate: Candidate, step_accuracy: float) -> Verdict:
        """:meth:`judge` the epoch and remember its score when it is kept."""
        verdict = self.judge(candidate, step_accuracy)
        if verdict.keep:
            self.best = verdict.score
        return verdict


class OursSelection(Selection):
    """ktmu's rule: lowest :func:`forget_scores` score of the (finalized) weights, earliest on ties."""

    def __init__(self, backbone: Backbone, forget: ForgetSet, world: Hierarchy, workers: int = 0) -> None:
        self.backbone, self.forget, self.world, self.workers = backbone, forget, world, workers
        self.rule = ours_rule(forget.goal)
        self.best = math.inf

    def judge(self, candidate: Candidate, step_accuracy: float) -> Verdict:
        candidate.finalize()
        scores = forget_scores(self.backbone, self.forget, self.world, workers=self.workers)
        return Verdict(scores["score"], scores["score"] < self.best,
                       {"forget_train_fine_acc": scores["forget_fine"], "forget_train_coarse_acc": scores["forget_coarse"]})


class StudySelection(Selection):
    """The study's rule: the epoch's step-time forget fine accuracy, lowest (strictly) or, for some methods, highest (>=)."""

    def __init__(self, method: str) -> None:
        self.highest = method in STUDY_KEEPS_HIGHEST
        self.rule = study_rule(method)
        self.best = -math.inf if self.highest else math.inf

    def judge(self, candidate: Candidate, step_accuracy: float) -> Verdict:
        keep = step_accuracy >= self.best if self.highest else step_accuracy < self.best
        if keep:  # no extra pass: only a kept epoch is finalized (task vectors)
            candidate.finalize()
        return Verdict(step_accuracy, keep)


class LastSelection(Selection):
    """Keep the last epoch; the forget-train scores are still measured, for the log.

    The rule of methods whose objective reaches past the names (moving a concept's image features
    where the oracle's would be): the forget accuracy is at its floor within an epoch or two, while
    the representation objective keeps improving until the schedule ends.
    """

    rule = "the last epoch (the method's representation objective goes on after the forget accuracy is at its floor)"

    def __init__(self, backbone: Backbone, forget: ForgetSet, world: Hierarchy, workers: int = 0) -> None:
        self.backbone, self.forget, self.world, self.workers = backbone, forget, world, workers
        self.best = math.inf

    def judge(self, candidate: Candidate, step_accuracy: float) -> Verdict:
        candidate.finalize()
        scores = forget_scores(self.backbone, self.forget, self.world, workers=self.workers)
        return Verdict(scores["score"], True, {"forget_train_fine_acc": scores["forget_fine"], "forget_train_coarse_acc": scores["forget_coarse"]})


def resolve_selection(selection: str, method: UnlearningMethod) -> str:
    """The rule a run uses: ``selection``, except that a method's own rule replaces ktmu's default one ("ours")."""
    return method.selection if selection == "ours" and method.selection else selection


def ours_rule(goal: str) -> str:
    """:class:`OursSelection`'s rule in words for a goal."""
    return f"lowest forget-train {goal_spec(goal).selection_words} ({goal} goal), earliest on ties"


def study_rule(method: str) -> str:
    """:class:`StudySelection`'s rule in words for a method."""
    keep = "highest (>= best so far)" if method in STUDY_KEEPS_HIGHEST else "lowest (strictly lower than before)"
    return f"the study's: {keep} epoch-average forget-train fine accuracy, from the training steps' logits"


def selection_rule(selection: str, method: str, goal: str) -> str:
    """The checkpoint-selection rule of a run, in words (for results.json)."""
    if selection == "last":
        return LastSelection.rule
    return study_rule(method) if selection == "study" else ours_rule(goal)


def make_selection(selection: str, method: UnlearningMethod, backbone: Backbone, forget: ForgetSet, world: Hierarchy,
                   workers: int = 0) -> Selection:
    """The :class:`Selection` named by ``TrainConfig.selection`` ("ours", "study" or "last")."""
    if selection == "study":
        return StudySelection(method.name)
    if selection == "last":
        return LastSelection(backbone, forget, world, workers)
    return OursSelection(backbone, forget, world, workers)


class BestWeights:
    """The kept epoch's trainable weights: one buffer on the device, allocated at the first keep and overwritten in place."""

    def __init__(self, backbone: Backbone, params: Mapping[str, torch.nn.Parameter]) -> None:
        self.backbone, self.params = backbone, params
        self.weights: dict[str, torch.Tensor] | None = None

    @torch.no_grad()
    def store(self) -> None:
        """Copy the backbone's current trainable weights into the buffer."""
        if self.weights is None:
            self.weights = self.backbone.copy_trainable()
            return
        for k, p in self.params.items():
            self.weights[k].copy_(p)

    def load(self, fallback: Mapping[str, torch.Tensor]) -> None:
        """Put the kept weights into the backbone, or ``fallback`` (the original) when no epoch was kept."""
        self.backbone.load_trainable(self.weights if self.weights is not None else fallback)
