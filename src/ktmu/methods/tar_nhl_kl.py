"""TAR-NHL+KL: the study's NHL+KL trained against a simulated relearning attack, with no neighbour exemplars (ktmu's research method).

The retain-free counterpart of :mod:`.tar_merge_mmd`: the step's loss is NHL+KL's, unchanged
(:mod:`.nhl_kl`), and the trainer (:meth:`~ktmu.methods.base.UnlearningMethod.relearning_adversary`)
adds ``tamper_weight`` x the gradient of the hinge on half of the step's forget images at weights
that ``adversary_steps`` Adam steps at ``adversary_lr`` of cross-entropy on the other half's true
labels reached. Without neighbours the simulated attack sees forget images only.

Hand-worked tamper loss (tests/test_knowledge_methods.py): as tar-merge-mmd's, fine logits (3, 1, 0)
and (0, 1, 3), target 0 (forgotten), margin 2 -> mean(4, 0) = 2.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ktmu.methods.base import Adversary, Batch
from ktmu.methods.nhl_kl import NHLKL
from ktmu.methods.terms import forget_hinge
from ktmu.settings import in_range


@dataclass
class TARNHLKL(NHLKL):
    name = "tar-nhl-kl"
    adversary_steps: int = field(default=4, metadata=in_range(ge=1))  # tar-merge-mmd's attack
    adversary_lr: float = field(default=1e-3, metadata=in_range(gt=0))  # tar-merge-mmd's attack
    tamper_weight: float = field(default=30.0, metadata=in_range(ge=0))  # tar-merge-mmd's weight; see docs/audit.md

    def relearning_adversary(self) -> Adversary | None:
        return Adversary(self.adversary_steps, self.adversary_lr, self.tamper_weight)

    def tamper_loss(self, batch: Batch) -> torch.Tensor:
        return forget_hinge(batch, self.margin)
