"""Loss terms shared by the methods: pure functions of logits, each checked by hand in the tests."""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from ktmu.methods.base import Batch, Level, NeighbourBatch, forget_levels, forgotten_mask

# Masked logits are set to this instead of -inf: softmax gives exactly 0 there in float32 and
# float16, while 0 * log(0) never turns into nan.
MASKED = -1e4
NEEDS_REFERENCE = "this loss needs the original model's logits (set needs_reference = True on the method)."


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` where ``mask`` is set (0 when nothing is set)."""
    m = mask.to(values.dtype)
    return (values * m).sum() / m.sum().clamp_min(1.0)


def target_mask(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.one_hot(target, logits.shape[-1]).bool()


def cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy."""
    return F.cross_entropy(logits, target, reduction="none")


def hinge_below_best_other(logits: torch.Tensor, target: torch.Tensor, margin: float, forgotten: torch.Tensor | None = None) -> torch.Tensor:
    """max(0, z_target - max_{j != target} z_j + margin): zero once the target trails the best other class by ``margin``.

    Example: logits (3, 1, 0), target 0, margin 2 -> max(0, 3 - 1 + 2) = 4. With a ``forgotten``
    mask (B, K) the best forgotten logit must trail the best kept one.
    """
    forgotten = target_mask(logits, target) if forgotten is None else forgotten
    z_forgotten = logits.masked_fill(~forgotten, MASKED).amax(1)
    best_kept = logits.masked_fill(forgotten, MASKED).amax(1)
    return F.relu(z_forgotten - best_kept + margin)


def npo(logits: torch.Tensor, ref_logits: torch.Tensor, target: torch.Tensor, beta: float, forgotten: torch.Tensor | None = None) -> torch.Tensor:
    """Negative preference optimisation (Zhang et al., 2024): (2/beta) * log(1 + (p/p_ref)^beta) per sample.

    p is the probability of the target (or, with a ``forgotten`` mask, of all forgotten classes
    together). Equal logits give (2/beta) * log 2; the loss falls towards 0 as p drops below p_ref.
    """
    if ref_logits is None:
        raise ValueError(NEEDS_REFERENCE)
    forgotten = target_mask(logits, target) if forgotten is None else forgotten
    logp = F.log_softmax(logits, 1).masked_fill(~forgotten, MASKED).logsumexp(1)
    ref_logp = F.log_softmax(ref_logits, 1).masked_fill(~forgotten, MASKED).logsumexp(1)
    return (2.0 / beta) * F.softplus(beta * (logp - ref_logp))


def kl_non_target(logits: torch.Tensor, ref_logits: torch.Tensor, exclude: torch.Tensor) -> torch.Tensor:
    """KL(p_ref || p) over the classes not in ``exclude``, both renormalised over those classes."""
    log_p = F.log_softmax(logits.masked_fill(exclude, MASKED), 1)
    log_q = F.log_softmax(ref_logits.masked_fill(exclude, MASKED), 1)
    return (log_q.exp() * (log_q - log_p)).sum(1)


def kl_from_uniform(logits: torch.Tensor) -> torch.Tensor:
    """KL(p || uniform) = log K - H(p): zero exactly when the prediction is uniform (maximum entropy)."""
    log_p = F.log_softmax(logits, 1)
    return (log_p.exp() * log_p).sum(1) + math.log(logits.shape[1])


def random_other_labels(target: torch.Tensor, num_classes: int, generator: torch.Generator | None = None, forgotten: torch.Tensor | None = None) -> torch.Tensor:
    """A label drawn uniformly from the classes other than ``target`` (and other than any ``forgotten`` class), per sample.

    A row with no class left keeps its own label. Requests that forget every class of a level are
    refused, so such rows only occur for samples that do not forget that level (and are masked out).
    """
    if forgotten is None:
        forgotten = F.one_hot(target, num_classes).bool()
    weights = (~forgotten).float().cpu()
    stuck = weights.sum(1) == 0
    weights[stuck] = F.one_hot(target[stuck].cpu(), num_classes).float()
    return torch.multinomial(weights, 1, generator=generator).squeeze(1).to(target.device)


def kl_retained_parts(b: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample KL to the original on what a sample keeps, (fine, coarse), each (B,).

    Fine: all fine logits but the forgotten ones (the target's and the request's). Coarse: all
    coarse logits when the coarse label is kept, all but the forgotten ones when it is not.
    Example (tests/test_terms.py): fine logits (10, 0, 0) vs reference (0, ln 3, 0), target 0 ->
    fine 3/4 ln(3/2) + 1/4 ln(1/2) = 0.130812; coarse logits (0, 0) vs reference (ln 3, 0), kept ->
    coarse 3/4 ln(3/2) + 1/4 ln(1/2) = 0.130812 as well.
    """
    if b.ref_fine_logits is None or b.ref_coarse_logits is None:
        raise ValueError(NEEDS_REFERENCE)
    fine = kl_non_target(b.fine_logits, b.ref_fine_logits, forgotten_mask(b.fine_logits, b.fine_target, b.fine_forgotten))
    coarse_exclude = forgotten_mask(b.coarse_logits, b.coarse_target, b.coarse_forgotten) & b.forget_coarse[:, None]
    coarse = kl_non_target(b.coarse_logits, b.ref_coarse_logits, coarse_exclude)
    return fine, coarse


def kl_on_retained(b: Batch) -> torch.Tensor:
    """Mean KL to the original on everything a sample does not forget: mean of fine + coarse (:func:`kl_retained_parts`)."""
    fine, coarse = kl_retained_parts(b)
    return (fine + coarse).mean()


def weighted_kl_on_retained(b: Batch, fine_weight: float, coarse_weight: float | None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The weighted KL term of the KL methods and its parts for logging: (term, {"kl", "kl_fine", "kl_coarse"}).

    ``coarse_weight`` None: ``fine_weight * kl_on_retained(b)``, one weight for both levels (ktmu's
    default, computed exactly as before the split). Otherwise ``fine_weight * mean fine KL +
    coarse_weight * mean coarse KL`` (the study's KL_f / KL_c pairs). Equal weights give the same
    value either way, up to float rounding.
    """
    fine, coarse = kl_retained_parts(b)
    kl = (fine + coarse).mean()
    parts = {"kl": kl, "kl_fine": fine.mean(), "kl_coarse": coarse.mean()}
    if coarse_weight is None:
        return fine_weight * kl, parts
    return fine_weight * parts["kl_fine"] + coarse_weight * parts["kl_coarse"], parts


def keep_coarse_ce(b: Batch) -> torch.Tensor:
    """Cross-entropy on the coarse labels that are kept (descent keeps the parent concept)."""
    return masked_mean(cross_entropy(b.coarse_logits, b.coarse_target), ~b.forget_coarse)


def over_forget_levels(b: Batch, term: Callable[[Level], torch.Tensor]) -> torch.Tensor:
    """Sum over forgotten levels of the mean, over the samples forgetting that level, of ``term(level)``."""
    total = b.fine_logits.new_zeros(())
    for level in forget_levels(b):
        total = total + masked_mean(term(level), level.samples)
    return total


def forget_hinge(b: Batch, margin: float) -> torch.Tensor:
    """The study's negative hinge on every forgotten level: each forgotten logit trails the best kept one by ``margin`` (NHL+KL's forget term).

    Example (fine goal): logits (3, 1, 0) and (0, 1, 3), target 0 (forgotten), margin 2 -> mean(4, 0) = 2.
    """
    return over_forget_levels(b, lambda lv: hinge_below_best_other(lv.logits, lv.target, margin, lv.forgotten))


def forgotten_cross_entropy(b: Batch) -> torch.Tensor:
    """Cross-entropy of each forgotten label, summed over levels (ascended by GA-style methods, descended by task vectors)."""
    return over_forget_levels(b, lambda lv: cross_entropy(lv.logits, lv.target))


# ---- SimNPO and feature-space terms ---------------------------------------------------------------

NEEDS_FEATURES = (
    "this loss needs image and text features (set needs_features = True on the method; the trainer then fills "
    "Batch.image_features, ref_image_features, fine_text, coarse_text, forgotten_name_text and logit_scale)."
)


def simnpo(logits: torch.Tensor, target: torch.Tensor, beta: float, gamma: float, forgotten: torch.Tensor | None = None) -> torch.Tensor:
    """SimNPO (Fan et al., 2024) on a class label: (2/beta) * log(1 + e^gamma * p^beta) per sample.

    The paper's -(2/beta) log sigmoid(-(beta/|y|) log p(y|x) - gamma) with |y| = 1 (a class label is
    one unit), since -log sigmoid(-x) = softplus(x) = log(1 + e^x). p is the probability of the
    target or, with a ``forgotten`` mask, of all forgotten classes together (as in :func:`npo`).
    It is NPO with the reference probability fixed at e^(-gamma/beta) instead of the original
    model's. Example: logits (ln 2, 0, 0), target 0, beta 2, gamma 0: p = 1/2 -> log(1 + 1/4) = 0.22314.
    """
    forgotten = target_mask(logits, target) if forgotten is None else forgotten
    logp = F.log_softmax(logits, 1).masked_fill(~forgotten, MASKED).logsumexp(1)
    return (2.0 / beta) * F.softplus(beta * logp + gamma)


def require_features(b: Batch, *names: str) -> None:
    """Raise a ValueError naming the Batch feature fields in ``names`` that the trainer did not fill."""
    missing = [n for n in names if getattr(b, n) is None]
    if missing:
        raise ValueError(f"{NEEDS_FEATURES} Missing: {', '.join(missing)}.")


def orthonormal_basis(vectors: torch.Tensor, rtol: float = 1e-6) -> torch.Tensor:
    """(D, r) orthonormal basis of the span of the rows of ``vectors`` (A, D); directions below ``rtol`` of the largest singular value are dropped.

    Dropping them keeps near-duplicate names (an alias whose feature equals its name's) from adding
    an arbitrary direction to the span. Not differentiated: the span is a constant of the loss.
    """
    u, s, _ = torch.linalg.svd(vectors.detach().T.float(), full_matrices=False)
    return u[:, s > rtol * s.max()].to(vectors.dtype)


def direction_drift_outside(features: torch.Tensor, ref_features: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """||u(P f) - u(P f_ref)||^2 per sample, P = I - Q Q^T, u(x) = x / |x|: how far the direction of each feature's part outside span(Q) turned.

    Only the direction counts: a unit feature that gives up some of its component inside span(Q)
    must grow outside it, and that rescaling is free. Example: Q = e1, f = (0.6, 0, 0.8),
    f_ref = (0, 0.6, 0.8): u(P f) = (0, 0, 1), u(P f_ref) = (0, 0.6, 0.8) -> 0.6^2 + 0.2^2 = 0.4.
    """

    def outside(x: torch.Tensor) -> torch.Tensor:
        part = x - (x @ basis) @ basis.T
        norm = part.norm(dim=1, keepdim=True)
        # a part that is only rounding error (span(Q) is all of it) has no direction: count it as 0
        return torch.where(norm > 1e-6, part / norm.clamp_min(1e-6), torch.zeros_like(part))

    return ((outside(features) - outside(ref_features)) ** 2).sum(1)


# ---- neighbour-side terms (methods with needs_neighbours) -------------------------------------------

NEEDS_NEIGHBOURS = "this loss reads the neighbour images (set needs_neighbours = True on the method and run with --neighbours K > 0)."


def require_neighbours(b: Batch, *names: str) -> NeighbourBatch:
    """The batch's neighbour side, checked to hold the fields in ``names``; a ValueError (an internal bug) when it does not."""
    nb = b.neighbours
    if nb is None:
        raise ValueError(NEEDS_NEIGHBOURS)
    missing = [n for n in names if getattr(nb, n) is None]
    if missing:
        raise ValueError(f"the neighbour batch lacks {', '.join(missing)}: {NEEDS_REFERENCE if 'ref' in missing[0] else NEEDS_FEATURES}")
    return nb


def neighbour_kl(nb: NeighbourBatch) -> torch.Tensor:
    """Mean over the neighbour images of KL(p_ref || p) at the fine plus the coarse level (every class kept).

    Example: fine logits (0, 0) vs reference (ln 3, 0) -> 3/4 ln(3/2) + 1/4 ln(1/2) = 0.130812;
    coarse logits equal to the reference -> 0; total 0.130812.
    """
    if nb.ref_fine_logits is None or nb.ref_coarse_logits is None:
        raise ValueError(NEEDS_REFERENCE)
    none_f = torch.zeros_like(nb.fine_logits, dtype=torch.bool)
    none_c = torch.zeros_like(nb.coarse_logits, dtype=torch.bool)
    return (kl_non_target(nb.fine_logits, nb.ref_fine_logits, none_f) + kl_non_target(nb.coarse_logits, nb.ref_coarse_logits, none_c)).mean()


def neighbour_cross_entropy(nb: NeighbourBatch) -> torch.Tensor:
    """Mean cross-entropy of the neighbour images' fine labels plus that of their coarse labels (descent keeps both).

    Example: fine logits (ln 3, 0, 0), target 0 -> -ln(3/5) = 0.510826; coarse logits (0, 0),
    target 1 -> ln 2 = 0.693147; total 1.203973.
    """
    return cross_entropy(nb.fine_logits, nb.fine_target).mean() + cross_entropy(nb.coarse_logits, nb.coarse_target).mean()


MMD_BANDWIDTHS = (0.25, 0.5, 1.0)  # RBF widths for unit features: squared distances run 0..4, the widths span near to far pairs


def mmd_rbf(x: torch.Tensor, y: torch.Tensor, bandwidths: tuple[float, ...] = MMD_BANDWIDTHS) -> torch.Tensor:
    """Squared maximum mean discrepancy between the rows of ``x`` and of ``y`` (biased estimate), summed over Gaussian kernels.

    k(a, b) = sum over sigma of exp(-|a - b|^2 / (2 sigma^2)); MMD^2 = mean k(x, x') + mean k(y, y')
    - 2 mean k(x, y) (Gretton et al., 2012). Zero when the two samples are the same. Example with one
    kernel of sigma 1: x = {(1, 0)}, y = {(0, 1)}: |x - y|^2 = 2 -> 1 + 1 - 2 e^-1 = 1.264241.
    """
    def sq(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return ((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T).clamp_min(0)

    def k(d: torch.Tensor) -> torch.Tensor:
        return sum(torch.exp(-d / (2 * s * s)) for s in bandwidths)

    return k(sq(x, x)).mean() + k(sq(y, y)).mean() - 2 * k(sq(x, y)).mean()


def feature_drift(features: torch.Tensor, ref_features: torch.Tensor) -> torch.Tensor:
    """Mean squared distance between each feature and the original model's: how far the images moved.

    Example: (0.6, 0.8) against (1, 0) -> 0.4^2 + 0.8^2 = 0.8.
    """
    return ((features - ref_features) ** 2).sum(1).mean()
