"""SalUn: relabeling restricted to the weights most salient for the forget set (Fan et al., ICLR 2024)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import Batch, UnlearningMethod
from .relabel import relabel_loss
from .terms import forgotten_cross_entropy


def saliency_mask(grads: dict[str, torch.Tensor], fraction: float) -> dict[str, torch.Tensor]:
    """Keep the top ``fraction`` of all weights by |gradient| (one threshold over the whole model)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"saliency fraction must be in (0, 1], got {fraction}.")
    flat = torch.cat([g.abs().flatten() for g in grads.values()])
    k = max(1, int(round(fraction * flat.numel())))
    threshold = flat.topk(k).values.min()
    return {n: g.abs() >= threshold for n, g in grads.items()}


@dataclass
class SalUn(UnlearningMethod):
    name = "salun"
    saliency_fraction: float = 0.1  # the study's mask fraction (top 10 % of weights)
    lr: float = 1e-4  # `ktmu tune` on the difficult request: smallest rate reaching <= 5 % forget-train fine acc
    epochs: int = 5  # fixed before tuning: 5 for ascent/relabel-style methods, which forget within a few epochs

    def saliency_loss(self, batch: Batch) -> torch.Tensor:
        """The forgetting loss whose gradient defines saliency: CE of the forgotten labels."""
        return forgotten_cross_entropy(batch)

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        loss = relabel_loss(batch)
        return {"loss": loss, "relabel": loss}
