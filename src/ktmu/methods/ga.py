"""Gradient ascent (GA): raise the cross-entropy of the forgotten labels (Thudi et al., 2022; baseline in Tan & Gong, 2025)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import Batch, UnlearningMethod
from .terms import cross_entropy, over_forget_levels


@dataclass
class GradientAscent(UnlearningMethod):
    """Minimise -CE on every forgotten level; nothing holds the rest of the model in place."""

    name = "ga"
    lr: float = 1e-4  # tuned: smallest of {1e-5, 3e-5, 1e-4, 3e-4} that takes forget-train fine acc to ~0 (see README)
    epochs: int = 5  # tuned with lr; GA needs few steps before it collapses

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        ascent = -over_forget_levels(batch, lambda z, y, _: cross_entropy(z, y))
        return {"loss": ascent, "ascent": ascent}
