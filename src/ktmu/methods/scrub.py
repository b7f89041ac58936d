"""SCRUB: the student moves away from the original (its teacher) on the forget images and stays with it on retained ones (Kurmanji et al., NeurIPS 2023).

SCRUB alternates max-steps, which raise KL(teacher || student) on the forget set, with min-steps,
which lower it on the retain set together with the retain cross-entropy. Here one step takes the
weighted sum of both (a common simplification; the weights play the role of SCRUB's step counts):
the retain set is the neighbour exemplars (``--neighbours K``), and since a forgotten fine
concept's images keep their coarse concept, the forget images' coarse predictions stay with the
teacher too. Logits of CLIP-like models are bounded (cosine times the temperature), so the
forget-side KL is bounded as well and the ascent cannot run away.

Hand-worked (tests/test_knowledge_methods.py): forget fine logits (0, 0) vs teacher (ln 3, 0):
KL 0.130812, so the forget term is -0.130812; forget coarse logits equal to the teacher's: 0;
neighbour fine logits (0, 0) vs teacher (ln 3, 0): KL 0.130812, coarse equal: 0; neighbour CE:
fine (0, 0) target 0 -> ln 2, coarse (0, ln 3) target 1 -> -ln(3/4): 0.980829. Loss -0.130812 +
0 + 0.130812 + 0.980829 = 0.980829.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ktmu.methods.base import Batch, UnlearningMethod
from ktmu.methods.terms import kl_non_target, neighbour_cross_entropy, neighbour_kl, require_neighbours
from ktmu.settings import in_range


@dataclass
class SCRUB(UnlearningMethod):
    name = "scrub"
    needs_reference = True
    needs_neighbours = True
    forget_weight: float = field(default=1.0, metadata=in_range(ge=0))  # one max-step per min-step
    kl_weight: float = field(default=1.0, metadata=in_range(ge=0))  # SCRUB's alpha on the retain KL
    ce_weight: float = field(default=1.0, metadata=in_range(ge=0))  # SCRUB's gamma on the retain cross-entropy
    lr: float = 1e-4  # the rate of the study's KL-held methods on the mini-CLIP
    epochs: int = 10  # as the study's KL-held methods

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        b = batch
        nb = require_neighbours(b, "ref_fine_logits", "ref_coarse_logits")
        nothing = torch.zeros_like(b.fine_logits, dtype=torch.bool)
        away = kl_non_target(b.fine_logits, b.ref_fine_logits, nothing).mean()
        keep_coarse = kl_non_target(b.coarse_logits, b.ref_coarse_logits, torch.zeros_like(b.coarse_logits, dtype=torch.bool))
        keep_coarse = (keep_coarse * (~b.forget_coarse).float()).sum() / (~b.forget_coarse).float().sum().clamp_min(1)
        near_kl = neighbour_kl(nb)
        near_ce = neighbour_cross_entropy(nb)
        total = -self.forget_weight * away + keep_coarse + self.kl_weight * near_kl + self.ce_weight * near_ce
        return {"loss": total, "forget_kl": away, "keep_coarse_kl": keep_coarse, "kl_neighbours": near_kl, "ce_neighbours": near_ce}
