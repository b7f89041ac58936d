"""SalUn: relabeling restricted to the weights most salient for the forget set (Fan et al., ICLR 2024)."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ktmu.settings import in_range
from ktmu.methods.base import Batch, UnlearningMethod
from ktmu.methods.relabel import relabel_loss
from ktmu.methods.masks import kth_largest_abs, saliency_mask  # noqa: F401 (re-exported: the mask belongs to SalUn's story)
from ktmu.methods.terms import forgotten_cross_entropy


@dataclass
class SalUn(UnlearningMethod):
    name = "salun"
    saliency_fraction: float = field(default=0.1, metadata=in_range(gt=0, le=1))  # the study's mask fraction (top 10 % of weights)
    lr: float = 1e-4  # `ktmu tune` on the difficult request: smallest rate reaching <= 5 % forget-train fine acc
    epochs: int = 5  # fixed before tuning: 5 for ascent/relabel-style methods, which forget within a few epochs

    def update_mask_fraction(self) -> float | None:
        return self.saliency_fraction

    def saliency_loss(self, batch: Batch) -> torch.Tensor:
        """The forgetting loss whose gradient defines saliency: CE of the forgotten labels."""
        return forgotten_cross_entropy(batch)

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        loss = relabel_loss(batch)
        return {"loss": loss, "relabel": loss}
