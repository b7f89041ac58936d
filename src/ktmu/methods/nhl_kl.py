"""NHL+KL, the study's method: a negative hinge loss pushing the target logit below the best other by a margin, plus KL to the original on non-target logits (Tan & Gong, 2025)."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..settings import in_range
from .base import Batch, UnlearningMethod
from .terms import hinge_below_best_other, kl_on_retained, over_forget_levels


@dataclass
class NHLKL(UnlearningMethod):
    name = "nhl-kl"
    needs_reference = True
    margin: float = field(default=2.0, metadata=in_range(ge=0))  # the study's hinge margin (in logit units)
    kl_weight: float = field(default=20.0, metadata=in_range(ge=0))  # the study's KL weight
    lr: float = 1e-4  # `ktmu tune` on the difficult request: smallest rate reaching <= 5 % forget-train fine acc
    epochs: int = 10  # fixed before tuning: 10 for methods held back by a KL or entropy term

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        hinge = over_forget_levels(batch, lambda lv: hinge_below_best_other(lv.logits, lv.target, self.margin, lv.forgotten))
        kl = kl_on_retained(batch)
        return {"loss": hinge + self.kl_weight * kl, "hinge": hinge, "kl": kl}
