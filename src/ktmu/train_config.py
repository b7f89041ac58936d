"""Typed trainer settings shared by ``ktmu unlearn``/``bench``/``tune`` and the recipes in ``configs/``."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrainConfig:
    """Trainer settings; ``lr``/``epochs`` of None mean the method's own tuned defaults."""

    lr: float | None = None
    epochs: int | None = None
    batch_size: int = 32  # the study's batch size; 150 forget images give 5 steps per epoch
    weight_decay: float = 0.0  # a few dozen steps: decay would only move weights no loss asks to move
    warmup_frac: float = 0.1  # linear warmup over the first 10 % of steps, then cosine (study: cosine)
    seed: int = 0
