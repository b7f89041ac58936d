"""GDiff with a retain set: ascent on the forgotten labels, descent on the neighbour images' labels (Liu et al., 2022).

The retain-aware form of the study's gradient difference, as its paper defines it: the retain
descent is cross-entropy on retained images — here the neighbour exemplars (``--neighbours K``),
at both levels — instead of the retain-free form's descent on the forget images' own coarse
labels, which this method keeps as well (a forgotten shirt stays a top).

Hand-worked (tests/test_knowledge_methods.py): forget fine logits (ln 3, 0, 0) with target 0 and
coarse logits (0, 0) with kept target 0; neighbour fine logits (0, ln 3, 0) with target 1 and coarse
(ln 3, 0) with target 0. ascent: -(-ln(3/5)) = -0.510826; keep_coarse: ln 2 = 0.693147; neighbours:
-ln(3/5) - ln(3/4) = 0.798508. Loss -0.510826 + 0.693147 + 0.798508 = 0.980829.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ktmu.methods.base import Batch, UnlearningMethod
from ktmu.methods.terms import forgotten_cross_entropy, keep_coarse_ce, neighbour_cross_entropy, require_neighbours
from ktmu.settings import in_range


@dataclass
class GradientDifferenceRetain(UnlearningMethod):
    name = "gdiff-retain"
    needs_neighbours = True
    retain_weight: float = field(default=1.0, metadata=in_range(ge=0))  # equal forget and retain weights, as the paper and the study's gdiff
    lr: float = 3e-5  # gdiff's tuned rate: the ascent is the same
    epochs: int = 5  # as gdiff: ascent-style methods forget within a few epochs

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        nb = require_neighbours(batch)
        ascent = -forgotten_cross_entropy(batch)
        keep = keep_coarse_ce(batch)
        near = neighbour_cross_entropy(nb)
        return {"loss": ascent + self.retain_weight * (keep + near), "ascent": ascent, "keep_coarse": keep, "neighbours": near}
