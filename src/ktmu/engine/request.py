"""An unlearning request: which concepts of a world to forget, at which level, and its proxy forget set."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np

from ktmu.concepts import Concept, Hierarchy, HierarchyError
from ktmu.data import ConceptDataset
from ktmu.engine.goals import GOALS, goal_spec
from ktmu.errors import KtmuError

Goal = Literal["fine", "coarse", "hybrid"]  # the names of ktmu.engine.goals.GOAL_TABLE
LEVELS = ("fine", "coarse")  # the hierarchy's levels, in the order messages name them
MAX_PER_CONCEPT = 150  # the study's proxy forget set: at most 150 train images per forgotten fine concept


class RequestError(KtmuError, ValueError):
    """A request that cannot be carried out; the message says why and what to ask instead."""


@dataclass(frozen=True)
class UnlearningRequest:
    """Forget ``concepts`` (canonical names) of ``world`` with the given goal.

    * ``fine``: name fine concepts; their images must lose the fine name and keep the coarse one.
    * ``coarse``: name coarse concepts; images of all their fine children lose both names.
    * ``hybrid``: name both kinds; each is forgotten at its own level as above.
    """

    world: Hierarchy
    concepts: tuple[str, ...]
    goal: Goal = "fine"

    @classmethod
    def parse(cls, world: Hierarchy, names: Sequence[str], goal: str = "fine") -> "UnlearningRequest":
        """Resolve names and aliases, then check the request makes sense for the goal."""
        if goal not in GOALS:
            raise RequestError(f"unknown goal {goal!r}; use one of {', '.join(GOALS)}.")
        if not names:
            raise RequestError("name at least one concept to forget (--forget CONCEPT).")
        try:
            concepts = [world.find(n) for n in names]
        except HierarchyError as e:
            raise RequestError(str(e)) from e
        _check_levels(goal, concepts)
        unique = tuple(dict.fromkeys(c.name for c in concepts))
        req = cls(world, unique, goal)  # type: ignore[arg-type]
        if len(req.forget_fine) == len(world.fine):
            raise RequestError(
                f"this request would forget every fine concept of world {world.name!r}; nothing would be left to keep or measure."
            )
        return req

    def _concepts(self) -> list[Concept]:
        return [self.world.find(n) for n in self.concepts]

    @property
    def forget_coarse(self) -> list[int]:
        """Indices of the coarse concepts forgotten."""
        return [self.world.index(c) for c in self._concepts() if c.level == "coarse"]

    @property
    def forget_fine(self) -> list[int]:
        """Indices of every fine concept whose images are forgotten (named, or under a named coarse concept)."""
        out: set[int] = set()
        for c in self._concepts():
            if c.level == "fine":
                out.add(self.world.index(c))
            else:
                out.update(self.world.index(k) for k in self.world.children(c.name))
        return sorted(out)

    def describe(self) -> dict:
        return {
            "world": self.world.name,
            "goal": self.goal,
            "concepts": list(self.concepts),
            "forget_fine": [self.world.fine_names[i] for i in self.forget_fine],
            "forget_coarse": [self.world.coarse_names[i] for i in self.forget_coarse],
        }


def _check_levels(goal: str, concepts: Sequence[Concept]) -> None:
    """Refuse concepts of a level the goal does not name (the goal table's ``names``), saying what to ask instead."""
    names = goal_spec(goal).names
    if {c.level for c in concepts} == names:
        return
    if len(names) > 1:
        raise RequestError(f"a {goal} request names at least one {' and one '.join(lv for lv in LEVELS if lv in names)} concept.")
    (level,) = names
    wrong = [c for c in concepts if c.level != level]
    other = wrong[0].level
    instead = " or ".join(g for g in GOALS if g != goal)
    raise RequestError(f"{', '.join(repr(c.name) for c in wrong)} is a {other} concept; use --goal {instead}, or name {level} concepts.")


def forget_set_indices(request: UnlearningRequest, train: ConceptDataset, max_per_concept: int = MAX_PER_CONCEPT, seed: int = 0) -> np.ndarray:
    """The proxy forget set: up to ``max_per_concept`` seeded-random train images of each forgotten fine concept only."""
    if max_per_concept < 1:
        raise RequestError("the forget set needs at least one image per concept (max_per_concept >= 1).")
    rng = np.random.default_rng(seed)
    chosen = []
    for f in request.forget_fine:
        idx = np.flatnonzero(train.fine_labels == f)
        chosen.append(np.sort(rng.permutation(idx)[:max_per_concept]))
    out = np.concatenate(chosen) if chosen else np.empty(0, dtype=np.int64)
    if out.size == 0:
        raise RequestError(f"the forget set is empty: the train split has no images of {', '.join(request.concepts)}.")
    return out
