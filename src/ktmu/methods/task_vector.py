"""Task vector negation: learn the concept harder, then subtract the scaled difference (Ilharco et al., ICLR 2023)."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ktmu.settings import in_range
from ktmu.methods.base import Batch, UnlearningMethod
from ktmu.methods.terms import forgotten_cross_entropy, keep_coarse_ce


@dataclass
class TaskVector(UnlearningMethod):
    name = "task-vector"
    scale: float = field(default=1.5, metadata=in_range(gt=0))  # the study's negation scale
    # Weight of the kept coarse labels' cross-entropy while learning: 0 = learn the forgotten labels only
    # (ktmu's default, tuned on fashion). The study learns on CE_f - 0.05 CE_c (coarse_weight -0.05):
    # the coarse label is ascended while learning, so the negation then strengthens it.
    coarse_weight: float = 0.0
    lr: float = 3e-5  # `ktmu tune` on the difficult request: smallest rate reaching <= 5 % forget-train fine acc
    epochs: int = 5  # fixed before tuning: 5 for ascent/relabel-style methods, which forget within a few epochs

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        learn = forgotten_cross_entropy(batch)
        if self.coarse_weight == 0:  # the default: no coarse term at all, not a term times zero
            return {"loss": learn, "learn": learn}
        coarse = keep_coarse_ce(batch)
        return {"loss": learn + self.coarse_weight * coarse, "learn": learn, "keep_coarse": coarse}

    rewrites_weights = True

    @torch.no_grad()
    def finalize_(self, params: dict[str, torch.Tensor], original: dict[str, torch.Tensor]) -> None:
        """theta = theta_0 - scale * (theta_ft - theta_0), in place where the weights live (floating-point tensors only).

        Example: theta_0 = 1, theta_ft = 2, scale 1.5 -> 1 - 1.5 * (2 - 1) = -0.5.
        """
        for k, p in params.items():
            if p.is_floating_point():
                p.mul_(-self.scale).add_(original[k], alpha=1 + self.scale)
