"""MergeMMD: remove a concept from the image features by merging its images, in distribution, into its neighbours' (ktmu's own method).

Needs neighbour exemplars (``--neighbours K``): the audit shows that a retain-free method can move a
forgotten concept's images off its *name* but not out of the *features* — a linear probe still
reads it and a few steps of fine-tuning bring it back — and that the only edit of the features
that reaches the oracle's probe recall moves them towards where the siblings' images lie. MergeMMD
does that in distribution rather than towards one centroid, in the spirit of class-mean alignment
(e.g. DAMP) and of distribution matching for domain adaptation: the maximum mean discrepancy
(Gretton et al., 2012) between the forget images' features and the neighbour images' (held fixed
in that term) is minimised, while the neighbours are kept where the original model had them.

With f the forget images' unit features, g the neighbours', g0 the original's, s the temperature:

* ``names``: the study's negative hinge (margin 2) over every method-visible name of the forgotten
  concepts (as :mod:`.feat_orth`), so that no known name is left near the images;
* ``kl``: the study's KL to the original on what a forget image keeps (non-target fine logits and
  the coarse ones), times ``kl_weight`` (nhl-kl's 20);
* ``kl_neighbours``: KL to the original on the neighbours' fine and coarse logits, times ``kl_weight``;
* ``mmd``: MMD^2(f, stop-gradient(g)) with Gaussian kernels of widths 0.25, 0.5, 1, between the forget
  images and the neighbours of their own coarse concept (:func:`merge_discrepancy`), times ``mmd_weight``;
* ``anchor``: mean |g - g0|^2, times ``anchor_weight``: the neighbours do not move to meet the concept.

It keeps the last epoch (``selection = "last"``): the names are gone within an epoch or two, while
the merge goes on until the schedule ends.

Measured on the embedded difficult request (forget shirt, 16 neighbours of each sibling, one seed;
a research loop, see docs/audit.md for the audited numbers): linear-probe recall 67.0 against the
original's 75.7 and the oracle's 57.8, retain-only relearning 1.5 % (nhl-kl: 24 %), relearning
after 50 steps 62.4 (nhl-kl 67.2, oracle 27.3).

Hand-worked (tests/test_knowledge_methods.py): s = 1; fine text e1 (class 0, forgotten), e2 (class 1);
names e1; one forget image f = f0 = e1 (fine class 0), one neighbour g = g0 = e2 (fine class 1); the
original's logits equal the current ones. names: fine logits (1, 0) and name logit 1 -> 1 - 0 + 2 = 3.
kl and kl_neighbours: 0 (nothing moved). mmd with the three widths: 3 + 3 - 2 (e^-16 + e^-4 + e^-1)
= 5.227610. anchor: 0. Loss 3 + 100 * 5.227610 = 525.760961.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from ktmu.methods.base import Batch, NeighbourBatch, UnlearningMethod, forgotten_mask
from ktmu.methods.terms import (MMD_BANDWIDTHS, feature_drift, hinge_below_best_other, kl_on_retained, mmd_rbf, neighbour_kl,
                                require_features, require_neighbours)
from ktmu.settings import in_range

FEATURES = ("image_features", "fine_text", "forgotten_name_text", "logit_scale")


def every_name_hinge(b: Batch, margin: float) -> torch.Tensor:
    """The negative hinge of the forget images over the fine classes *and* every method-visible name of the forgotten concepts.

    The best forgotten logit (canonical name, alias, or a forgotten class) must trail the best kept
    fine class by ``margin``. Example: s = 1, f = e1, fine text (e1, e2), names (e1): logits (1, 0, 1),
    target 0 -> max(0, 1 - 0 + 2) = 3.
    """
    s = b.logit_scale
    f = b.image_features
    names = s * f @ b.forgotten_name_text.T
    logits = torch.cat([b.fine_logits, names], 1)
    every_name = torch.ones(len(f), names.shape[1], dtype=torch.bool, device=f.device)
    forgotten = torch.cat([forgotten_mask(b.fine_logits, b.fine_target, b.fine_forgotten), every_name], 1)
    return hinge_below_best_other(logits, b.fine_target, margin, forgotten).mean()


def merge_discrepancy(b: Batch, nb: NeighbourBatch, width_scale: float = 1.0) -> torch.Tensor:
    """MMD^2 between the forget images' features and the neighbours' of the same coarse concept (held fixed), averaged over parents.

    A forgotten shirt merges into the tops it neighbours (t-shirts, pullovers, coats), not into
    trousers or bags, also when ``--neighbours-scope all`` gives neighbours of every kept concept
    (those still anchor the feature space). ``width_scale`` multiplies the kernel widths
    (:data:`~ktmu.methods.terms.MMD_BANDWIDTHS`): above 1 the match weighs the far pairs (means and spread)
    over the near ones (who lies next to whom). Each coarse parent of the batch's forget images counts
    by its share of them; a forget image whose parent has no neighbour in the batch (a coarse goal:
    the parent itself is forgotten) merges into all of them.
    """
    f, g = b.image_features.float(), nb.image_features.detach().float()
    total = f.new_zeros(())
    widths = tuple(width_scale * w for w in MMD_BANDWIDTHS)
    for share, mine, near in parent_groups(b, nb):
        total = total + share * mmd_rbf(f[mine], g[near], widths)
    return total


def parent_groups(b: Batch, nb: NeighbourBatch) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Per coarse parent of the forget images: its share of them, their mask, and the mask of the neighbours they merge into.

    The neighbours of the same parent; all of them where the batch has none (a coarse goal: the parent itself is forgotten).
    """
    for parent in b.coarse_target.unique():
        mine = b.coarse_target == parent
        near = nb.coarse_target == parent
        yield mine.float().mean(), mine, near if bool(near.any()) else torch.ones_like(near)


def whitened_mean_gap(b: Batch, nb: NeighbourBatch, shrinkage: float) -> torch.Tensor:
    """Squared Mahalanobis distance between the forget images' mean feature and their neighbours' (same coarse concept, held fixed).

    The metric is the neighbours' pooled within-class covariance S (each kept fine class centred on its
    own mean), shrunk towards the isotropic: C = (1 - a) S + a (tr S / D) I. A linear probe reads a
    concept along directions where its mean differs from its neighbours' *relative to their spread*;
    the Gaussian MMD, on unit features, barely sees a small mean gap along a direction of low spread.

    The distance is estimated without its sampling noise: with a_i = f_i - mean(g) over the n forget
    images of a parent, |mean(a)|^2_C = |gap|^2_C + tr(C^-1 Cov f) / n on average, and the second
    term, minimised, collapses the forget images onto one another along the directions the neighbours do
    not span. The estimate used is the mean of a_i' C^-1 a_j over pairs i != j, unbiased for |gap|^2_C,
    floored at 0 (a gap smaller than the noise pushes nothing); a parent with fewer than two forget images adds nothing.

    Example (a = 1, so C = (tr S / D) I): f = {(1, 0), (1, 0)}, g = {(0, 1), (0, -1)} of one class: S = diag(0, 2),
    tr S / D = 1; a_1 = a_2 = (1, 0) -> pair mean 1. f = {(1, 0), (-1, 0)}: pair mean -1 -> 0. Parents count by
    their share of the forget images, as :func:`merge_discrepancy`; a parent whose neighbours hold one image per
    kept class (no spread to measure) adds nothing.
    """
    f, g = b.image_features.float(), nb.image_features.detach().float()
    total = f.new_zeros(())
    dim = f.shape[1]
    eye = torch.eye(dim, device=f.device)
    for share, mine, near in parent_groups(b, nb):
        gp, labels = g[near], nb.fine_target[near]
        dof = len(gp) - len(labels.unique())
        n = int(mine.sum())
        if dof < 1 or n < 2:  # no spread to measure the gap against, or no pair of forget images to estimate it from
            continue
        centred = gp.clone()
        for c in labels.unique():
            centred[labels == c] -= gp[labels == c].mean(0)
        scatter = centred.T @ centred / dof
        cov = (1 - shrinkage) * scatter + shrinkage * (scatter.trace() / dim).clamp_min(1e-8) * eye
        a = f[mine] - gp.mean(0)
        whitened = torch.linalg.solve(cov, a.T).T  # C^-1 a_i, one row per forget image
        total_sum = a.sum(0) @ whitened.sum(0)  # sum over all pairs (i, j), the diagonal included
        diagonal = (a * whitened).sum()
        total = total + share * ((total_sum - diagonal) / (n * (n - 1))).clamp_min(0)
    return total


@dataclass
class MergeMMD(UnlearningMethod):
    name = "merge-mmd"
    needs_reference = True
    needs_features = True
    needs_neighbours = True
    selection = "last"
    margin: float = field(default=2.0, metadata=in_range(ge=0))  # the study's hinge margin (logit units), as nhl-kl
    kl_weight: float = field(default=20.0, metadata=in_range(ge=0))  # nhl-kl's weight, on the forget and the neighbour KL alike
    # Tuned by hand on the embedded difficult request with K = 16 (research loop, one seed): 10 left the
    # probe at 75 %, 100 reached 67 % with Q-U 99.9; 300 collapsed D_r coarse to 77 %.
    mmd_weight: float = field(default=100.0, metadata=in_range(ge=0))
    # Same search: without the anchor the neighbours moved (drift 1.0) and D_r coarse fell to 66 %; 100 held it at 98 %;
    # with lr 3e-4, 300 held Q-U at 99.6 (K = 16, --neighbours-scope all, one seed).
    anchor_weight: float = field(default=300.0, metadata=in_range(ge=0))
    # Same request, K = 16, scope all, one seed: 1e-4 left the probe at 66.7 % and relearn@50 at 62.0 %; 3e-4 (anchor 300)
    # 61.9 % and 43.9 % (Q-U 99.6, zero-shot 98.7); 5e-4 gave 59.8 % and 43.7 %, no better against relearning.
    lr: float = 3e-4
    # The MMD kernels' widths times this (1: 0.25, 0.5, 1). Embedded difficult request, tar-merge-mmd, K = 16, 3 seeds: 2 and 2.5
    # lifted kNN recall by 5-8 points (still 12-15 under the oracle's) but dropped the probe erasure to 0.71 / 0.66 (docs/audit.md)
    mmd_width_scale: float = field(default=1.0, metadata=in_range(gt=0))
    # Research option (0: off): the weight of whitened_mean_gap, against the linear reading of the concept; see docs/audit.md
    guard_weight: float = field(default=0.0, metadata=in_range(ge=0))
    guard_shrinkage: float = field(default=0.5, metadata=in_range(ge=0, le=1))  # ~21 same-parent neighbours per step against 256 dimensions
    epochs: int = 20  # the merge kept improving from 10 to 20 epochs (probe 66.8 -> 66.9, relearning 63.6 -> 61.8, retain-only 4.1 -> 1.5)

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        b = batch
        require_features(b, *FEATURES)
        nb = require_neighbours(b, "image_features", "ref_image_features", "ref_fine_logits", "ref_coarse_logits")
        names = every_name_hinge(b, self.margin)
        kl = kl_on_retained(b)
        kl_near = neighbour_kl(nb)
        mmd = merge_discrepancy(b, nb, self.mmd_width_scale)
        anchor = feature_drift(nb.image_features.float(), nb.ref_image_features.float())
        total = names + self.kl_weight * (kl + kl_near) + self.mmd_weight * mmd + self.anchor_weight * anchor
        out = {"loss": total, "names": names, "kl": kl, "kl_neighbours": kl_near, "mmd": mmd, "anchor": anchor}
        if self.guard_weight:
            out["guard"] = whitened_mean_gap(b, nb, self.guard_shrinkage)
            out["loss"] = total + self.guard_weight * out["guard"]
        return out
