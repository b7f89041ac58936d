"""Gradient difference (GDiff): ascent on forgotten labels, descent on the kept coarse labels (Liu et al., 2022; Tan & Gong, 2025)."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ktmu.settings import in_range
from ktmu.methods.base import Batch, UnlearningMethod
from ktmu.methods.terms import forgotten_cross_entropy, keep_coarse_ce


@dataclass
class GradientDifference(UnlearningMethod):
    """With no retain set, the 'retain' descent is on the forget images' own coarse labels."""

    name = "gdiff"
    retain_weight: float = field(default=1.0, metadata=in_range(ge=0))  # equal weights, as in the study
    lr: float = 3e-5  # `ktmu tune` on the difficult request: smallest rate reaching <= 5 % forget-train fine acc
    epochs: int = 5  # fixed before tuning: 5 for ascent/relabel-style methods, which forget within a few epochs

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        ascent = -forgotten_cross_entropy(batch)
        keep = keep_coarse_ce(batch)
        return {"loss": ascent + self.retain_weight * keep, "ascent": ascent, "keep_coarse": keep}
