"""Gradient-saliency masks: the top fraction of weights by |gradient|, found without sorting the model."""
from __future__ import annotations

from typing import Sequence

import torch


def kth_largest_abs(tensors: Sequence[torch.Tensor], k: int) -> torch.Tensor:
    """The k-th largest |value| over several tensors, without concatenating or sorting them.

    Non-negative float32 values order like their bit patterns read as int32, so a bisection over
    the 2^31 patterns finds the exact value in 32 counting passes; each pass allocates only one
    boolean temporary per tensor (a sorted copy of ViT-L/14's 428 M weights would need 1.7 GB).
    """
    lo, hi = 0, 0x7F800000  # +0.0 .. +inf as int32 bit patterns
    dev = tensors[0].device
    while lo < hi:  # find the largest pattern t with count(|x| >= t) >= k
        mid = (lo + hi + 1) // 2
        t = torch.tensor(mid, dtype=torch.int32, device=dev).view(torch.float32)
        count = sum(int((x.detach().abs().float() >= t.to(x.device)).sum()) for x in tensors)
        if count >= k:
            lo = mid
        else:
            hi = mid - 1
    return torch.tensor(lo, dtype=torch.int32).view(torch.float32)


def saliency_mask(grads: dict[str, torch.Tensor], fraction: float) -> dict[str, torch.Tensor]:
    """Keep exactly the top ``fraction`` of all weights by |gradient| (one threshold over the whole model; ties broken by position)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"saliency fraction must be in (0, 1], got {fraction}.")
    total = sum(g.numel() for g in grads.values())
    k = max(1, int(round(fraction * total)))
    threshold = kth_largest_abs(list(grads.values()), k)
    masks = {n: g.abs().float() > threshold.to(g.device) for n, g in grads.items()}
    need = k - sum(int(m.sum()) for m in masks.values())
    for n, g in grads.items():  # weights tied at the threshold fill the rest, first come first served: exactly k kept
        if need <= 0:
            break
        tied = (g.abs().float() == threshold.to(g.device)).flatten().nonzero().flatten()[:need]
        masks[n].view(-1)[tied] = True
        need -= len(tied)
    return masks
