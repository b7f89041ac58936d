"""FeatOrth: forget a concept in the image representation, keeping each image's feature outside the span of the concept's names (ktmu's own method).

Retain-free and trained on the forget set only, like the study's methods. The subspace spanned by
the forgotten names' text features is the one Mishra et al. (2025, "Erasing CLIP memories",
arXiv 2512.14137) project out of CLIP in closed form; here it is where a forgotten image's
feature may move freely, while a hinge decides how far it moves.

Logit methods can forget "shirt" by moving the text feature of the word, or only the few logits
they are shown, and leave the image features that carry the concept — and its other names — in
place. FeatOrth edits only the image representation: every text feature and the temperature are
held fixed (detached), so only the image tower moves. With s the temperature, f a forgotten
image's unit feature, f0 the original model's, U the span of the text features of every
method-visible name (canonical + aliases) of the forgotten concepts under this step's template,
and cos() against fixed text features:

* ``names`` (forget): max(0, s max_a cos(f, name_a) - s max_k cos(f, kept fine class k) + margin),
  the study's negative hinge over *every* known name of the forgotten concepts, not only the
  canonical one. Samples whose coarse label is forgotten too get the same hinge on coarse classes.
* ``keep_coarse``: cross-entropy of the coarse label (fixed coarse text) where it is kept: a
  forgotten shirt stays a top.
* ``anchor``: (s^2 / 2) ||u(P f) - u(P f0)||^2 with P the projection off U (and off the forgotten
  coarse classes' text for coarse goals) and u(x) = x / |x|: the direction of the feature's part
  outside U must stay the original's, while its part inside U (how much it says "shirt", "dress
  shirt", ...) is free, as is the rescaling of the rest that a unit feature needs when that part
  shrinks. s^2 / 2 puts it in the KL's units: a turn of size d moves any unit text's logit by at
  most s d, and the second-order KL is at most (s d)^2 / 2.

Measured on the difficult request (shirt, mini-CLIP): without the anchor the hinge forgets at
once but turns the out-of-U direction by ~0.8 (squared distance) and costs 3.5 points of D_r fine
accuracy; the default weight keeps D_r and digits zero-shot (see ``anchor_weight``).

Hand-worked (tests/test_new_methods.py): s = 2; fine text e1 (forgotten), e2, e3; names e1 and
the alias (0.6, 0.8, 0); coarse text (0, 0.8, 0.6), (0.6, 0, 0.8); f = (0.48, 0.6, 0.64), target 0,
coarse 0 kept. names: fine logits (0.96, 1.2, 1.28), name logits (0.96, 1.536): the alias is the
best forgotten -> 1.536 - 1.28 + 2 = 2.256 (the canonical name alone would give 1.68). keep_coarse:
coarse logits (1.728, 1.6) -> log(1 + e^-0.128) = 0.631194. anchor: with f0 = (0.6, 0.48, 0.64)
the part outside U = span(e1, e2) is (0, 0, 0.64) for both -> 0. Loss 2.887194.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ktmu.settings import in_range
from ktmu.methods.base import Batch, UnlearningMethod, forgotten_mask
from ktmu.methods.terms import cross_entropy, direction_drift_outside, hinge_below_best_other, masked_mean, orthonormal_basis, require_features

FEATURES = ("image_features", "ref_image_features", "fine_text", "coarse_text", "forgotten_name_text", "logit_scale")


@dataclass
class FeatureOrthogonal(UnlearningMethod):
    name = "feat-orth"
    needs_features = True
    margin: float = field(default=2.0, metadata=in_range(ge=0))  # the study's hinge margin (logit units), as nhl-kl
    coarse_weight: float = field(default=1.0, metadata=in_range(ge=0))  # equal forget and keep weights, as gdiff and me-gd in the study
    # Forget-set data only, like the learning rate: the largest of the half-decade grid 0.1, 0.3, 1, 3
    # at which some rate of `ktmu tune`'s grid still forgets the difficult request (<= 5 % forget-train
    # fine accuracy): the most anchoring that forgets. 0.1: 0.0 % at 1e-4; 0.3: 2.7 % at 3e-4;
    # 1: 10.7 % at best; 3: 61.3 % at best.
    anchor_weight: float = field(default=0.3, metadata=in_range(ge=0))
    lr: float = 3e-4  # `ktmu tune` on the difficult request at anchor_weight 0.3: smallest rate reaching <= 5 % forget-train fine acc
    epochs: int = 10  # fixed before tuning: 10 for methods held back by a stay-close term

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        b = batch
        require_features(b, *FEATURES)
        f = b.image_features.float()
        s = b.logit_scale.detach().float()
        fine_text, coarse_text = b.fine_text.detach().float(), b.coarse_text.detach().float()
        names = b.forgotten_name_text.detach().float()
        fine = s * f @ fine_text.T
        coarse = s * f @ coarse_text.T

        # forget: every known name of the forgotten concepts must trail the best kept fine class
        logits = torch.cat([fine, s * f @ names.T], 1)
        every_name = torch.ones(len(f), len(names), dtype=torch.bool, device=f.device)
        forgotten = torch.cat([forgotten_mask(fine, b.fine_target, b.fine_forgotten), every_name], 1)
        hinge = hinge_below_best_other(logits, b.fine_target, self.margin, forgotten).mean()
        free = [names]
        if bool(b.forget_coarse.any()):
            coarse_forgotten = forgotten_mask(coarse, b.coarse_target, b.coarse_forgotten)
            hinge = hinge + masked_mean(hinge_below_best_other(coarse, b.coarse_target, self.margin, coarse_forgotten), b.forget_coarse)
            free.append(coarse_text[coarse_forgotten[b.forget_coarse].any(0)])

        keep = masked_mean(cross_entropy(coarse, b.coarse_target), ~b.forget_coarse)
        basis = orthonormal_basis(torch.cat(free))
        anchor = 0.5 * s**2 * direction_drift_outside(f, b.ref_image_features.float(), basis).mean()
        total = hinge + self.coarse_weight * keep + self.anchor_weight * anchor
        return {"loss": total, "names": hinge, "keep_coarse": keep, "anchor": anchor}
