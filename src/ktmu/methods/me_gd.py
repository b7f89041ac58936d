"""ME+GD: maximum entropy on the forgotten labels plus descent on kept coarse labels (Yuan et al., 2024; Tan & Gong, 2025)."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ktmu.settings import in_range
from ktmu.methods.base import Batch, UnlearningMethod
from ktmu.methods.terms import keep_coarse_ce, kl_from_uniform, over_forget_levels


@dataclass
class MaxEntropyGD(UnlearningMethod):
    name = "me-gd"
    retain_weight: float = field(default=1.0, metadata=in_range(ge=0))  # equal weights, as in the study
    lr: float = 1e-4  # `ktmu tune` on the difficult request: smallest rate reaching <= 5 % forget-train fine acc
    epochs: int = 10  # fixed before tuning: 10 for methods held back by a KL or entropy term

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        entropy = over_forget_levels(batch, lambda lv: kl_from_uniform(lv.logits))
        keep = keep_coarse_ce(batch)
        return {"loss": entropy + self.retain_weight * keep, "max_entropy": entropy, "keep_coarse": keep}
