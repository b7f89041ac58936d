"""Gradient ascent (GA): raise the cross-entropy of the forgotten labels (Thudi et al., 2022; baseline in Tan & Gong, 2025)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ktmu.methods.base import Batch, UnlearningMethod
from ktmu.methods.terms import forgotten_cross_entropy


@dataclass
class GradientAscent(UnlearningMethod):
    """Minimise -CE on every forgotten level; nothing holds the rest of the model in place."""

    name = "ga"
    lr: float = 3e-5  # `ktmu tune` on the difficult request: smallest rate reaching <= 5 % forget-train fine acc
    epochs: int = 5  # fixed before tuning: 5 for ascent/relabel-style methods, which forget within a few epochs

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        ascent = -forgotten_cross_entropy(batch)
        return {"loss": ascent, "ascent": ascent}
