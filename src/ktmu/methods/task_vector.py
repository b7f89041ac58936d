"""Task vector negation: learn the concept harder, then subtract the scaled difference (Ilharco et al., ICLR 2023)."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..settings import in_range
from .base import Batch, UnlearningMethod
from .terms import forgotten_cross_entropy


@dataclass
class TaskVector(UnlearningMethod):
    name = "task-vector"
    scale: float = field(default=1.5, metadata=in_range(gt=0))  # the study's negation scale
    lr: float = 3e-5  # `ktmu tune` on the difficult request: smallest rate reaching <= 5 % forget-train fine acc
    epochs: int = 5  # fixed before tuning: 5 for ascent/relabel-style methods, which forget within a few epochs

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        learn = forgotten_cross_entropy(batch)
        return {"loss": learn, "learn": learn}

    rewrites_weights = True

    @torch.no_grad()
    def finalize_(self, params: dict[str, torch.Tensor], original: dict[str, torch.Tensor]) -> None:
        """theta = theta_0 - scale * (theta_ft - theta_0), in place where the weights live (floating-point tensors only).

        Example: theta_0 = 1, theta_ft = 2, scale 1.5 -> 1 - 1.5 * (2 - 1) = -0.5.
        """
        for k, p in params.items():
            if p.is_floating_point():
                p.mul_(-self.scale).add_(original[k], alpha=1 + self.scale)
