"""SAM-NHL+KL: the study's NHL+KL, minimised sharpness-aware (Foret et al., 2021), against relearning (Fan et al., 2025).

Needs no neighbour exemplars. Fan et al. ("Towards LLM unlearning resilient to relearning
attacks: a sharpness-aware minimization perspective", ICML 2025) show that relearning undoes
unlearning quickly when the unlearned weights sit in a sharp minimum of the forget loss: a small
move restores the concept. Minimising the forget loss over a neighbourhood of the weights (the
trainer takes each step with the gradient at theta + rho * g / |g|, see
:meth:`~ktmu.methods.base.UnlearningMethod.sharpness_radius`) asks that nearby weights forget too.

The loss is NHL+KL's, unchanged (hand-worked numbers: :mod:`.nhl_kl` and tests/test_terms.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ktmu.methods.nhl_kl import NHLKL
from ktmu.settings import in_range


@dataclass
class SAMNHLKL(NHLKL):
    name = "sam-nhl-kl"
    # The radius in weight space (all trainable weights together). Measured on the embedded difficult request
    # (research loop, one seed, lr 1e-4, 10 epochs; D_f fine accuracy after): 0.005 -> 4.9 %, 0.01 -> 9.8 %,
    # 0.05 -> 41.7 %, 0.5 wrecked the model. 0.005 is the largest radius that still forgets (<= 5 %) at nhl-kl's rate.
    sam_rho: float = field(default=0.005, metadata=in_range(gt=0))

    def sharpness_radius(self) -> float | None:
        return self.sam_rho
