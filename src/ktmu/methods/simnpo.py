"""SimNPO: reference-free negative preference optimisation (Fan et al., 2024, "Simplicity prevails: rethinking negative preference optimization for LLM unlearning").

Per forgotten sample the paper minimises -(2/beta) log sigmoid(-(beta/|y|) log p(y|x) - gamma):
NPO with the reference model's log-probability replaced by a length-normalised reward and a
margin gamma. For a class label |y| = 1, so the loss is (2/beta) log(1 + e^gamma p^beta) with p
the total probability of the forgotten classes (like ``npo-kl``'s forget term), e.g. logits
(ln 2, 0, 0), target 0, beta 2, gamma 0: p = 1/2 -> log(1 + 1/4) = 0.2231; with gamma = ln 2:
log(1 + 2/4) = 0.4055. Its gradient weight 2 sigmoid(beta log p + gamma) fades as p falls, so it
stops pushing once a concept is forgotten, without needing the original model.

No KL variant is registered: with the study's KL weight 20 on top (as ``npo-kl``), SimNPO's
fading push lost to the KL at every rate of the tuning grid (forget-train fine accuracy 58 % at
best, at lr 1e-3, on the difficult request), so it would only be a weaker ``npo-kl``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ktmu.settings import in_range
from ktmu.methods.base import Batch, UnlearningMethod
from ktmu.methods.terms import over_forget_levels, simnpo


@dataclass
class SimNPO(UnlearningMethod):
    name = "simnpo"
    # The paper's released TOFU forget05 setting (beta 2.5, gamma 0). Its reward is the per-token
    # (length-normalised) log-probability, on the same per-unit scale as one class label's
    # log-probability, so beta carries over without rescaling; gamma 0 as in its TOFU and MUSE-Books runs.
    beta: float = field(default=2.5, metadata=in_range(gt=0))
    gamma: float = field(default=0.0, metadata=in_range(ge=0))
    lr: float = 3e-5  # `ktmu tune` on the difficult request: smallest rate reaching <= 5 % forget-train fine acc
    epochs: int = 10  # fixed before tuning: 10, like npo-kl (its push fades as p falls, as NPO's does)

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        pref = over_forget_levels(batch, lambda lv: simnpo(lv.logits, lv.target, self.beta, self.gamma, lv.forgotten))
        return {"loss": pref, "simnpo": pref}
