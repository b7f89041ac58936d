"""Task vector negation: learn the concept harder, then subtract the scaled difference (Ilharco et al., ICLR 2023)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import Batch, UnlearningMethod
from .terms import forgotten_cross_entropy


@dataclass
class TaskVector(UnlearningMethod):
    name = "task-vector"
    scale: float = 1.5  # the study's negation scale
    lr: float = 3e-5  # `ktmu tune` on the difficult request: smallest rate reaching <= 5 % forget-train fine acc
    epochs: int = 5  # fixed before tuning: 5 for ascent/relabel-style methods, which forget within a few epochs

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        learn = forgotten_cross_entropy(batch)
        return {"loss": learn, "learn": learn}

    def finalize(self, original: dict[str, torch.Tensor], trained: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """theta = theta_0 - scale * (theta_ft - theta_0) for floating-point tensors."""
        return {
            k: (v - self.scale * (trained[k] - v)) if v.is_floating_point() else trained[k]
            for k, v in original.items()
        }
