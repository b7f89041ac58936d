"""Typed trainer settings shared by ``ktmu unlearn``/``bench``/``tune`` and the recipes in ``configs/``."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from .settings import in_range, validate


@dataclass
class TrainConfig:
    """Trainer settings; ``lr``/``epochs`` of None mean the method's own tuned defaults.

    Every value is checked on construction (:class:`ktmu.settings.SettingsError` says what to
    write instead). There is deliberately no upper bound on ``lr``: any cut-off would be arbitrary,
    and a rate that wrecks the model is caught by the collapse flag on its results instead.
    """

    settings_label: ClassVar[str] = "the trainer"  # how settings errors name this owner

    lr: float | None = field(default=None, metadata=in_range(
        gt=0, hint="Use a positive learning rate such as 1e-4, or leave --lr out for the method's tuned default."))
    epochs: int | None = field(default=None, metadata=in_range(
        ge=1, hint="Train for at least one epoch, or leave --epochs out for the method's default."))
    batch_size: int = field(default=32, metadata=in_range(ge=1))  # the study's batch size; 150 forget images give 5 steps per epoch
    weight_decay: float = field(default=0.0, metadata=in_range(ge=0))  # a few dozen steps: decay would only move weights no loss asks to move
    warmup_frac: float = field(default=0.1, metadata=in_range(
        ge=0, lt=1, hint="It is the fraction of steps spent warming up; 0 disables warm-up."))  # linear warmup over the first 10 % of steps, then cosine (study: cosine)
    seed: int = field(default=0, metadata=in_range(ge=0))
    workers: int = field(default=0, metadata=in_range(ge=0))  # DataLoader worker processes for streamed images; results do not depend on it
    workers: int = field(default=0, metadata=in_range(ge=0))  # DataLoader worker processes for streamed images (0 = read in the main process)

    def __post_init__(self) -> None:
        validate(self)
