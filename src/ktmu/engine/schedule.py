"""The learning-rate schedules: linear warm-up then cosine decay to 0 (per step; pretraining and unlearning), and the study's cosine stepped once per epoch."""
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


def cosine_per_epoch(epoch: int, epochs: int) -> float:
    """Multiplier of the peak rate during ``epoch`` (0-based) for the study's schedule: cosine stepped once per epoch.

    As torch's ``CosineAnnealingLR(T_max=epochs)`` stepped after each epoch: 1 in the first epoch,
    0.5 (1 + cos(pi epoch / epochs)) later. Example: epochs 8 -> 1.0, 0.962, 0.854, ..., 0.038 in the last.
    """
    return 0.5 * (1 + math.cos(math.pi * epoch / max(1, epochs)))


class LrSchedule:
    """An unlearning run's learning-rate schedule (:data:`ktmu.engine.config.SCHEDULES`), stepped where its kind says.

    ``warmup-cosine``: :func:`warmup_cosine` over every step of the run, warm-up over ``warmup_frac``
    of them, advanced after each step. ``cosine-epoch``: :func:`cosine_per_epoch`, advanced after
    each epoch. The loop calls both :meth:`after_step` and :meth:`after_epoch`; each does nothing
    for the other kind.
    """

    def __init__(self, opt: torch.optim.Optimizer, kind: str, epochs: int, steps_per_epoch: int, warmup_frac: float) -> None:
        self.per_epoch = kind == "cosine-epoch"
        if self.per_epoch:
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: cosine_per_epoch(e, epochs))
        else:
            total = max(1, steps_per_epoch * epochs)
            self.scheduler = warmup_cosine_scheduler(opt, max(1, int(warmup_frac * total)), total)

    def after_step(self) -> None:
        if not self.per_epoch:
            self.scheduler.step()

    def after_epoch(self) -> None:
        if self.per_epoch:
            self.scheduler.step()
