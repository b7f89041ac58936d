"""The proxy forget set of a request: train images of its forgotten fine concepts only, streamed."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from ktmu.data import ConceptDataset
from ktmu.data.stream import ImageSource, image_source
from ktmu.methods import Batch
from ktmu.engine.request import MAX_PER_CONCEPT, UnlearningRequest, forget_set_indices


def class_mask(indices: Sequence[int], n: int) -> torch.Tensor:
    """A (n,) boolean mask with ``indices`` set."""
    mask = torch.zeros(n, dtype=torch.bool)
    mask[list(indices)] = True
    return mask


@dataclass
class ForgetSet:
    """The forget images (a streamed source), their labels, and what the request forgets at each level."""

    source: ImageSource
    forget_coarse: torch.Tensor  # (N,) whether each image's coarse label is forgotten
    fine_classes: torch.Tensor  # (F,) bool: every fine class the request forgets, and those earlier requests forgot
    coarse_classes: torch.Tensor  # (C,) bool: every coarse class the request forgets, and those earlier requests forgot
    goal: str  # the request's goal (ktmu.engine.goals.GOAL_TABLE): what the checkpoint-selection score reads
    names: tuple[str, ...] = ()  # every method-visible name (canonical + aliases) of the forgotten fine concepts
    replayed: int = 0  # how many of the images (the last ones) are earlier requests' forget images, replayed (see from_request)
    # The labels and class masks, per device they were asked on: copied once, so that no step waits for a host copy.
    _on_device: dict[torch.device, tuple[torch.Tensor, ...]] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_request(cls, request: UnlearningRequest, train: ConceptDataset, preprocess, max_per_concept: int = MAX_PER_CONCEPT,
                     seed: int = 0, progress: bool = False, replay: np.ndarray | None = None) -> "ForgetSet":
        """The proxy forget set of a request: at most ``max_per_concept`` seeded-random train images per forgotten fine concept.

        ``replay``: train indices of the forget images of earlier requests on the same model (a
        checkpoint's ledger, :func:`ktmu.workflows.lineage.replay_indices`), appended after the
        request's own. Their concepts are among the forgotten classes (``request.also_forgotten``),
        so every method treats them as forget images: they stay below the best kept class, and a KL
        holds what the model says of them on the classes kept. An image's coarse label is forgotten
        when this request forgets it (its own images) or any request did (replayed images).
        """
        own = forget_set_indices(request, train, max_per_concept, seed)
        extra = np.setdiff1d(np.asarray([] if replay is None else replay, dtype=np.int64), own)
        source = image_source(train, preprocess, np.concatenate([own, extra]), progress=progress)
        world = train.hierarchy
        coarse_now = torch.as_tensor(request.forget_coarse, dtype=torch.long)
        coarse_ever = torch.as_tensor(request.forgotten_coarse_classes, dtype=torch.long)
        replayed = torch.arange(len(source)) >= len(own)
        return cls(
            source=source,
            forget_coarse=torch.where(replayed, torch.isin(source.coarse, coarse_ever), torch.isin(source.coarse, coarse_now)),
            # the earlier requests' concepts (request.also_forgotten) count among the forgotten classes too
            fine_classes=class_mask(request.forgotten_fine_classes, len(world.fine)),
            coarse_classes=class_mask(request.forgotten_coarse_classes, len(world.coarse)),
            goal=request.goal,
            names=tuple(n for i in request.forget_fine for n in world.fine[i].names),
            replayed=len(extra),
        )

    def describe(self) -> str:
        """The forget set in words, for a command's first line: ``150 images`` or ``150 images (+ 300 of earlier requests, replayed)``."""
        return f"{self.own} images" + (f" (+ {self.replayed} of earlier requests, replayed)" if self.replayed else "")

    @property
    def own(self) -> int:
        """How many images are the request's own proxy forget set (the rest are replayed)."""
        return len(self) - self.replayed

    @property
    def fine(self) -> torch.Tensor:
        return self.source.fine

    @property
    def coarse(self) -> torch.Tensor:
        return self.source.coarse

    def batch(self, positions: torch.Tensor, fine_logits: torch.Tensor, coarse_logits: torch.Tensor, **kw) -> Batch:
        """The method's view of the images at ``positions`` given their logits."""
        dev = fine_logits.device
        if dev not in self._on_device:
            self._on_device[dev] = tuple(t.to(dev) for t in (self.fine, self.coarse, self.forget_coarse, self.fine_classes, self.coarse_classes))
        fine, coarse, forget_coarse, fine_classes, coarse_classes = self._on_device[dev]
        at = positions.to(dev, non_blocking=True)
        return Batch(fine_logits, coarse_logits, fine[at], coarse[at], forget_coarse[at], fine_forgotten=fine_classes,
                     coarse_forgotten=coarse_classes, **kw)

    def __len__(self) -> int:
        return len(self.source)
