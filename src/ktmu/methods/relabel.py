"""Relabeling: descend towards a random other label of the same level (Golatkar et al., 2020; Tan & Gong, 2025)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ktmu.methods.base import Batch, UnlearningMethod
from ktmu.methods.terms import cross_entropy, over_forget_levels, random_other_labels


def relabel_loss(batch: Batch) -> torch.Tensor:
    """Cross-entropy to labels redrawn each step, uniformly among the classes the request keeps."""
    return over_forget_levels(
        batch, lambda lv: cross_entropy(lv.logits, random_other_labels(lv.target, lv.logits.shape[1], batch.generator, lv.forgotten))
    )


@dataclass
class Relabeling(UnlearningMethod):
    name = "relabel"
    lr: float = 1e-4  # `ktmu tune` on the difficult request: smallest rate reaching <= 5 % forget-train fine acc
    epochs: int = 5  # fixed before tuning: 5 for ascent/relabel-style methods, which forget within a few epochs

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        loss = relabel_loss(batch)
        return {"loss": loss, "relabel": loss}
