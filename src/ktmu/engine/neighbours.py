"""Neighbour exemplars: a few train images of the kept concepts nearest to the forgotten ones, drawn as a named setting.

The study's protocol is retain-free: methods see the proxy forget set and nothing else. What a
linear probe and a relearning attack still read from the features after such unlearning says that
removing a concept, rather than hiding its name, needs to know where the images of its neighbours
lie. ``--neighbours K`` gives methods exactly that and no more: ``K`` seeded-random train images of
every kept fine concept that shares a coarse parent with a forgotten one (``scope="siblings"``, the
default) or of every kept fine concept (``scope="all"``), disjoint from the proxy forget set.
``K = 0`` is the retain-free protocol.

The draw is a pure function of the request, the train split's labels, ``K``, the scope and the
seed, so the audit can redraw it from a run's record and keep its own images (probe training,
relearning attacks) disjoint from every image the method saw. :func:`neighbour_record` is what
results.json records: ``K``, the scope, the seed, the number of images and the sha256 of the drawn
train indices.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from ktmu.data import ConceptDataset
from ktmu.data.stream import ImageSource, image_source
from ktmu.engine.request import MAX_PER_CONCEPT, RequestError, UnlearningRequest, forget_set_indices

Scope = Literal["siblings", "all"]
SCOPES: tuple[str, ...] = ("siblings", "all")
DRAW_STREAM = 3  # the rng stream of the neighbour draw ([seed, 3]); the audit's draws use streams 1 and 2, the probe its own seed


def neighbour_classes(request: UnlearningRequest, scope: str = "siblings") -> list[int]:
    """The kept fine concepts neighbours are drawn from: the forgotten concepts' siblings, or every kept fine concept.

    A forgotten concept without a kept sibling (trouser is the only bottom) cannot have sibling
    neighbours: the error names it and suggests ``--neighbours-scope all``.
    """
    if scope not in SCOPES:
        raise RequestError(f"unknown neighbour scope {scope!r}; use one of {', '.join(SCOPES)}.")
    world = request.world
    forgotten = set(request.forget_fine)
    kept = [i for i in range(len(world.fine)) if i not in forgotten]
    if scope == "all":
        return kept
    f2c = world.fine_to_coarse()
    lonely = [world.fine[i].name for i in sorted(forgotten) if not any(f2c[k] == f2c[i] for k in kept)]
    if lonely:
        raise RequestError(f"{', '.join(map(repr, lonely))} has no kept sibling concept (no other fine concept under its coarse one), "
                           "so there are no sibling neighbours to draw; use --neighbours-scope all for images of every kept concept.")
    parents = {f2c[i] for i in forgotten}
    return [k for k in kept if f2c[k] in parents]


def neighbour_indices(request: UnlearningRequest, train: ConceptDataset, k: int, scope: str = "siblings", seed: int = 0,
                      max_per_concept: int = MAX_PER_CONCEPT) -> np.ndarray:
    """Sorted train indices of ``k`` seeded-random images of each neighbour concept, none of them in the proxy forget set.

    ``max_per_concept`` and ``seed`` are the unlearning run's (they fix its forget set). ``k = 0``
    draws nothing. ``k`` larger than a concept's train images is an error naming how many there are.
    """
    if k < 0:
        raise RequestError(f"--neighbours must be 0 or more images per concept, got {k}.")
    if k == 0:
        return np.empty(0, dtype=np.int64)
    labels = np.asarray(train.fine_labels)
    excluded = forget_set_indices(request, train, max_per_concept, seed)
    rng = np.random.default_rng([seed, DRAW_STREAM])
    chosen = []
    for c in neighbour_classes(request, scope):
        pool = np.setdiff1d(np.flatnonzero(labels == c), excluded)
        if len(pool) < k:
            raise RequestError(f"--neighbours {k} asks for {k} train images of {request.world.fine[c].name!r}, which has only {len(pool)}; "
                               f"use --neighbours {len(pool)} or fewer.")
        chosen.append(rng.permutation(pool)[:k])
    return np.sort(np.concatenate(chosen))


def indices_sha256(indices: np.ndarray) -> str:
    """The sha256 of a sorted index list written as comma-separated decimal numbers (what results.json records)."""
    return hashlib.sha256(",".join(str(int(i)) for i in np.sort(indices)).encode()).hexdigest()


def neighbour_record(k: int, scope: str, seed: int, indices: np.ndarray) -> dict:
    """What results.json records of a run's neighbours: ``{"k", "scope", "seed", "images", "sha256"}``."""
    return {"k": int(k), "scope": scope, "seed": int(seed), "images": int(len(indices)), "sha256": indices_sha256(indices)}


@dataclass
class NeighbourSet:
    """The neighbour images of a run (a streamed source with their labels) and how they were drawn."""

    source: ImageSource
    k: int
    scope: str
    seed: int

    @classmethod
    def from_request(cls, request: UnlearningRequest, train: ConceptDataset, preprocess, k: int, scope: str = "siblings", seed: int = 0,
                     max_per_concept: int = MAX_PER_CONCEPT, progress: bool = False) -> "NeighbourSet":
        """Draw the neighbours of ``request`` (see :func:`neighbour_indices`)."""
        idx = neighbour_indices(request, train, k, scope, seed, max_per_concept)
        return cls(image_source(train, preprocess, idx, progress=progress), k, scope, seed)

    def __len__(self) -> int:
        return len(self.source)

    @property
    def fine(self) -> torch.Tensor:
        return self.source.fine

    @property
    def coarse(self) -> torch.Tensor:
        return self.source.coarse

    def record(self) -> dict:
        """What results.json records of these neighbours (:func:`neighbour_record`)."""
        return neighbour_record(self.k, self.scope, self.seed, self.source.indices)
