"""SalUn with its retain term: relabeling of the forget images plus cross-entropy on retained images, on the salient weights (Fan et al., ICLR 2024).

SalUn's objective (its eq. 7) is random-label cross-entropy on the forget set plus alpha times the
cross-entropy on the retain set, with updates restricted to the weights most salient for the
forgetting loss. The study ran it without a retain set; here the retain set is the neighbour
exemplars (``--neighbours K``), at both levels.

Hand-worked (tests/test_knowledge_methods.py): the relabel term is :func:`.relabel.relabel_loss`
(random labels: tested there); with forget fine logits (0, 0, 0) every redrawn label gives ln 3 =
1.098612; neighbour fine logits (0, ln 3, 0) with target 1 and coarse (ln 3, 0) with target 0 give
0.510826 + 0.287682 = 0.798508. Loss 1.098612 + 0.798508 = 1.897120.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ktmu.methods.base import Batch
from ktmu.methods.relabel import relabel_loss
from ktmu.methods.salun import SalUn
from ktmu.methods.terms import neighbour_cross_entropy, require_neighbours
from ktmu.settings import in_range


@dataclass
class SalUnRetain(SalUn):
    """SalUn's mask and saliency loss (the top 10 % of weights by the forgotten labels' gradient), with the retain term added."""

    name = "salun-retain"
    needs_neighbours = True
    retain_weight: float = field(default=1.0, metadata=in_range(ge=0))  # the paper's alpha; 1 weighs forget and retain alike

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        nb = require_neighbours(batch)
        relabel = relabel_loss(batch)
        near = neighbour_cross_entropy(nb)
        return {"loss": relabel + self.retain_weight * near, "relabel": relabel, "neighbours": near}
