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

    ``also_forgotten``: concepts (canonical names, either level) that earlier requests on the same
    model forgot (a checkpoint's ledger, :mod:`ktmu.engine.ledger`). They are not this request's
    forget set nor its D_f, but they count among the forgotten classes (:attr:`forgotten_fine_classes`,
    :attr:`forgotten_coarse_classes`): no image may be pushed onto them, no KL holds them, and
    their images are not D_r. Empty (the default) is a request on a model that forgot nothing.
    """

    world: Hierarchy
    concepts: tuple[str, ...]
    goal: Goal = "fine"
    also_forgotten: tuple[str, ...] = ()

    @classmethod
    def parse(cls, world: Hierarchy, names: Sequence[str], goal: str = "fine", also_forgotten: Sequence[str] = ()) -> "UnlearningRequest":
        """Resolve names and aliases, then check the request makes sense for the goal (``also_forgotten``: see the class)."""
        if goal not in GOALS:
            raise RequestError(f"unknown goal {goal!r}; use one of {', '.join(GOALS)}.")
        if not names:
            raise RequestError("name at least one concept to forget (--forget CONCEPT).")
        concepts = _find(world, names)
        _check_levels(goal, concepts)
        unique = tuple(dict.fromkeys(c.name for c in concepts))
        earlier = tuple(dict.fromkeys(c.name for c in _find(world, also_forgotten)))
        req = cls(world, unique, goal, earlier)  # type: ignore[arg-type]
        if len(req.forgotten_fine_classes) == len(world.fine):
            earlier_note = " together with the concepts forgotten before" if earlier else ""
            raise RequestError(
                f"this request would forget every fine concept of world {world.name!r}{earlier_note}; nothing would be left to keep or measure."
            )
        return req

    def _concepts(self) -> list[Concept]:
        return [self.world.find(n) for n in self.concepts]

    def _fine_under(self, names: Sequence[str]) -> set[int]:
        """Indices of the fine concepts named, or under a coarse concept named, in ``names``."""
        out: set[int] = set()
        for c in (self.world.find(n) for n in names):
            if c.level == "fine":
                out.add(self.world.index(c))
            else:
                out.update(self.world.index(k) for k in self.world.children(c.name))
        return out

    @property
    def forget_coarse(self) -> list[int]:
        """Indices of the coarse concepts forgotten."""
        return [self.world.index(c) for c in self._concepts() if c.level == "coarse"]

    @property
    def forget_fine(self) -> list[int]:
        """Indices of every fine concept whose images are forgotten (named, or under a named coarse concept)."""
        return sorted(self._fine_under(self.concepts))

    @property
    def forgotten_fine_classes(self) -> list[int]:
        """Every fine class no image may land on: this request's :attr:`forget_fine` and the earlier requests' (``also_forgotten``)."""
        return sorted(self._fine_under(self.concepts + self.also_forgotten))

    @property
    def forgotten_coarse_classes(self) -> list[int]:
        """Every coarse class forgotten: this request's :attr:`forget_coarse` and the coarse concepts of ``also_forgotten``."""
        earlier = [self.world.index(c) for c in _find(self.world, self.also_forgotten) if c.level == "coarse"]
        return sorted(set(self.forget_coarse) | set(earlier))

    def together(self) -> "UnlearningRequest":
        """This request and the earlier ones (``also_forgotten``) as one request on the model that forgot nothing.

        Its goal follows the levels named: fine concepts only -> ``fine``, coarse only -> ``coarse``,
        both -> ``hybrid`` (each concept at its own level). It is what cumulative scores against the
        base model measure (:mod:`ktmu.evaluation.cumulative`), and what forgetting every concept at once asks.
        """
        names = tuple(dict.fromkeys(self.also_forgotten + self.concepts))
        return UnlearningRequest.parse(self.world, names, goal_naming(self.world, names))

    def describe(self) -> dict:
        out = {
            "world": self.world.name,
            "goal": self.goal,
            "concepts": list(self.concepts),
            "forget_fine": [self.world.fine_names[i] for i in self.forget_fine],
            "forget_coarse": [self.world.coarse_names[i] for i in self.forget_coarse],
        }
        if self.also_forgotten:  # only for a request on a model that forgot something before: earlier records keep their keys
            out["also_forgotten"] = list(self.also_forgotten)
        return out


def goal_naming(world: Hierarchy, names: Sequence[str]) -> str:
    """The goal that forgets each of ``names`` at its own level: ``fine`` (fine concepts only), ``coarse`` (coarse only) or ``hybrid``."""
    levels = {c.level for c in _find(world, names)}
    return "hybrid" if len(levels) > 1 else ("fine" if levels == {"fine"} else "coarse")


def _find(world: Hierarchy, names: Sequence[str]) -> list[Concept]:
    """The concepts ``names`` name (names or aliases), or a :class:`RequestError` with did-you-mean."""
    try:
        return [world.find(n) for n in names]
    except HierarchyError as e:
        raise RequestError(str(e)) from e


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
