"""The three unlearning goals as one table: what each names, forgets and keeps, and where each accuracy is measured.

Every rule that depends on the goal reads :data:`GOAL_TABLE` and nothing else:

* which concepts a request names (:class:`ktmu.engine.request.UnlearningRequest`);
* which accuracies the evaluation measures, on which test images (:class:`ktmu.evaluation.protocol.UnlearningEvaluator`,
  and its bootstrap replicates in :mod:`ktmu.evaluation.seeds`);
* which accuracies Quality reads and Utility keeps (:mod:`ktmu.evaluation.metrics`, the study's and the chance-aware);
* which accuracies must show that the original knows the concept (:mod:`ktmu.evaluation.flags`);
* the checkpoint-selection score, which mirrors Quality on the forget train images (:mod:`ktmu.engine.selection`).

The goals (Tan & Gong, 2025, and ktmu's hybrid):

======  ============  =======================================  ==================================================
goal    names         Quality: mean drop of                    Utility: mean retention of
======  ============  =======================================  ==================================================
fine    fine          forget_fine                              forget_coarse, retain_coarse, retain_fine
coarse  coarse        forget_coarse                            retain_coarse, retain_fine
hybrid  fine, coarse  forget_fine, forget_coarse (forgotten    forget_kept_coarse (when D_f has such images),
                      coarse concepts' images only)            retain_coarse, retain_fine
======  ============  =======================================  ==================================================

Test images fall into strata by what the request forgets of them: D_r (kept fine concepts), D_f under a forgotten coarse
concept, D_f under a kept one. The forget set (train images of the forgotten fine concepts) splits the same way.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, TypeVar

# Strata: the test images (or forget-set images) by what the request forgets of each.
D_R = "d_r"  # images of kept fine concepts
D_F_FORGOTTEN_COARSE = "d_f_forgotten_coarse"  # images of forgotten fine concepts whose coarse concept is forgotten too
D_F_KEPT_COARSE = "d_f_kept_coarse"  # images of forgotten fine concepts whose coarse concept stays
D_F = (D_F_FORGOTTEN_COARSE, D_F_KEPT_COARSE)  # every image of a forgotten fine concept

M = TypeVar("M")


@dataclass(frozen=True)
class Accuracy:
    """One accuracy the evaluation reports: its key, the labels it reads, and the strata it is measured on."""

    key: str
    level: str  # "fine" or "coarse": which labels it reads, and so the number of classes chance is measured against
    images: tuple[str, ...]  # the strata whose images it counts, in the order they are summed
    optional: bool = False  # measured only when its images exist (else the key is absent)


@dataclass(frozen=True)
class GoalSpec:
    """What one goal names, measures, forgets and keeps (a row of :data:`GOAL_TABLE`)."""

    name: str
    names: frozenset[str]  # the levels of the concepts a request with this goal names
    accuracies: tuple[Accuracy, ...]  # what the evaluation measures, in the order of its record
    forgotten: tuple[str, ...]  # Quality is the mean drop of these; the selection score their mean on the forget set
    kept: tuple[str, ...]  # Utility is the mean retention of these, in this order
    selection_words: str  # the selection score in words (for results.json's selection_rule)

    def accuracy(self, key: str) -> Accuracy:
        """The :class:`Accuracy` measured under ``key``."""
        for acc in self.accuracies:
            if acc.key == key:
                return acc
        raise KeyError(f"goal {self.name!r} measures no accuracy {key!r}")

    def kept_in(self, *scores: Mapping[str, float]) -> list[str]:
        """The kept keys Utility averages for these accuracy dicts: an optional one only where every dict has it."""
        return [k for k in self.kept if not self.accuracy(k).optional or all(k in s for s in scores)]

    def levels(self) -> dict[str, str]:
        """Accuracy key -> the level it reads ("fine" or "coarse")."""
        return {acc.key: acc.level for acc in self.accuracies}


def _d_f_and_d_r(coarse_images: tuple[str, ...]) -> tuple[Accuracy, ...]:
    """The four accuracies every goal measures, in the evaluator's order; D_f coarse accuracy on ``coarse_images``."""
    return (Accuracy("forget_coarse", "coarse", coarse_images), Accuracy("forget_fine", "fine", D_F),
            Accuracy("retain_coarse", "coarse", (D_R,)), Accuracy("retain_fine", "fine", (D_R,)))


GOAL_TABLE: dict[str, GoalSpec] = {
    "fine": GoalSpec(
        "fine", frozenset({"fine"}), _d_f_and_d_r(D_F),
        forgotten=("forget_fine",), kept=("forget_coarse", "retain_coarse", "retain_fine"),
        selection_words="fine accuracy"),
    "coarse": GoalSpec(
        "coarse", frozenset({"coarse"}), _d_f_and_d_r(D_F),  # every D_f image lies under a forgotten coarse concept
        forgotten=("forget_coarse",), kept=("retain_coarse", "retain_fine"),
        selection_words="coarse accuracy"),
    "hybrid": GoalSpec(
        "hybrid", frozenset({"fine", "coarse"}),
        _d_f_and_d_r((D_F_FORGOTTEN_COARSE,)) + (Accuracy("forget_kept_coarse", "coarse", (D_F_KEPT_COARSE,), optional=True),),
        forgotten=("forget_fine", "forget_coarse"), kept=("forget_kept_coarse", "retain_coarse", "retain_fine"),
        selection_words="mean of fine accuracy and coarse accuracy of forgotten coarse concepts"),
}
GOALS: tuple[str, ...] = tuple(GOAL_TABLE)


def goal_spec(goal: str) -> GoalSpec:
    """The row of :data:`GOAL_TABLE` for ``goal``; a ValueError naming the goals for any other name."""
    try:
        return GOAL_TABLE[goal]
    except (KeyError, TypeError):
        raise ValueError(f"unknown goal {goal!r}; use {', '.join(GOALS[:-1])} or {GOALS[-1]}.") from None


def select(strata: Mapping[str, M], images: tuple[str, ...]) -> M:
    """The union of the strata masks named by ``images`` (boolean numpy arrays or torch tensors of one shape)."""
    first, *rest = (strata[s] for s in images)
    for mask in rest:
        first = first | mask
    return first
