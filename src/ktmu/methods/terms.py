"""Loss terms shared by the methods: pure functions of logits, each checked by hand in the tests."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .base import Batch, forget_levels

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


def hinge_below_best_other(logits: torch.Tensor, target: torch.Tensor, margin: float) -> torch.Tensor:
    """max(0, z_target - max_{j != target} z_j + margin): zero once the target trails the best other class by ``margin``.

    Example: logits (3, 1, 0), target 0, margin 2 -> max(0, 3 - 1 + 2) = 4.
    """
    z_t = logits.gather(1, target[:, None]).squeeze(1)
    best_other = logits.masked_fill(target_mask(logits, target), MASKED).amax(1)
    return F.relu(z_t - best_other + margin)


def npo(logits: torch.Tensor, ref_logits: torch.Tensor, target: torch.Tensor, beta: float) -> torch.Tensor:
    """Negative preference optimisation (Zhang et al., 2024): (2/beta) * log(1 + (p/p_ref)^beta) per sample.

    Equal logits give (2/beta) * log 2; the loss falls towards 0 as p drops below p_ref.
    """
    if ref_logits is None:
        raise ValueError(NEEDS_REFERENCE)
    logp = F.log_softmax(logits, 1).gather(1, target[:, None]).squeeze(1)
    ref_logp = F.log_softmax(ref_logits, 1).gather(1, target[:, None]).squeeze(1)
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


def random_other_labels(target: torch.Tensor, num_classes: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A label drawn uniformly from the classes other than ``target``, per sample."""
    r = torch.randint(0, num_classes - 1, target.shape, generator=generator, device="cpu").to(target.device)
    return r + (r >= target).long()


def kl_on_retained(b: Batch) -> torch.Tensor:
    """Mean KL to the original on everything a sample does not forget.

    Fine: all fine logits but the target's. Coarse: all coarse logits when the coarse label is
    kept, all but the target's when it is forgotten.
    """
    if b.ref_fine_logits is None or b.ref_coarse_logits is None:
        raise ValueError(NEEDS_REFERENCE)
    fine = kl_non_target(b.fine_logits, b.ref_fine_logits, target_mask(b.fine_logits, b.fine_target))
    coarse_exclude = target_mask(b.coarse_logits, b.coarse_target) & b.forget_coarse[:, None]
    coarse = kl_non_target(b.coarse_logits, b.ref_coarse_logits, coarse_exclude)
    return (fine + coarse).mean()


def keep_coarse_ce(b: Batch) -> torch.Tensor:
    """Cross-entropy on the coarse labels that are kept (descent keeps the parent concept)."""
    return masked_mean(cross_entropy(b.coarse_logits, b.coarse_target), ~b.forget_coarse)


def over_forget_levels(b: Batch, term) -> torch.Tensor:
    """Sum over forgotten levels of the masked mean of ``term(logits, target, ref_logits)``."""
    total = b.fine_logits.new_zeros(())
    for logits, target, mask, ref in forget_levels(b):
        total = total + masked_mean(term(logits, target, ref), mask)
    return total
