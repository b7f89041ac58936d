"""The learning-rate schedule shared by pretraining and unlearning: linear warm-up, then cosine decay to 0."""
from __future__ import annotations

import math

import torch


def warmup_cosine(step: int, warmup: int, total: int) -> float:
    """Multiplier of the peak rate at ``step`` (0-based): ramps to 1 over ``warmup`` steps, cosine to 0 at ``total``.

    Example: warmup 2, total 10 -> 0.5 at step 0, 1.0 at step 1 (times the cosine of 1/10).
    """
    return min(1.0, (step + 1) / max(1, warmup)) * 0.5 * (1 + math.cos(math.pi * min(1.0, step / max(1, total))))


def warmup_cosine_scheduler(opt: torch.optim.Optimizer, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, warmup, total))
