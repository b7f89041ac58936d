"""Typed trainer settings shared by ``ktmu unlearn``/``bench``/``tune`` and the recipes in ``configs/``."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ktmu.settings import in_range, one_of, validate

# How the learning rate moves. "warmup-cosine": linear warm-up over ``warmup_frac`` of the steps, then
# cosine to 0, updated every step (ktmu's default, tuned on fashion). "cosine-epoch": cosine from the
# peak rate at epoch 1 towards 0 at epoch ``epochs + 1``, updated once per epoch, no warm-up (the study's).
SCHEDULES: tuple[str, ...] = ("warmup-cosine", "cosine-epoch")
# How the kept epoch is chosen (see :mod:`ktmu.engine.selection`). "ours": an extra zero-shot pass over the forget
# train images after each epoch, lowest score kept. "study": the study's rule, from the training logits. "last":
# the last epoch (the rule of the methods whose representation objective the forget accuracy cannot see).
SELECTIONS: tuple[str, ...] = ("ours", "study", "last")


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
    weight_decay: float = field(default=0.0, metadata=in_range(ge=0))  # a few dozen steps: decay would only move weights no loss asks to move (study: 1e-5)
    warmup_frac: float = field(default=0.1, metadata=in_range(
        ge=0, lt=1, hint="It is the fraction of steps spent warming up; 0 disables warm-up."))  # linear warmup over the first 10 % of steps, then cosine; unused by schedule cosine-epoch
    seed: int = field(default=0, metadata=in_range(ge=0))  # orders batches, picks templates and random labels; 0: the seed the README's numbers were measured with
    workers: int = field(default=0, metadata=in_range(ge=0))  # DataLoader worker processes for streamed images; results do not depend on it
    adam_eps: float = field(default=1e-8, metadata=in_range(gt=0))  # torch's AdamW default, which the embedded default was tuned with (study: 1e-6)
    schedule: str = field(default="warmup-cosine", metadata=one_of(*SCHEDULES))  # per-step warm-up + cosine, tuned on fashion; "cosine-epoch" is the study's
    selection: str = field(default="ours", metadata=one_of(*SELECTIONS))  # ktmu's rule (extra forget-train pass after each epoch); "study" is the study's
    # Neighbour images per step (--neighbours K, methods that read them); a smaller neighbour set is taken whole
    # every step. 64: twice the forget batch, so that with --neighbours-scope all (9 kept concepts on fashion)
    # a step still holds about 20 images of the forgotten concept's siblings (tuned with merge-mmd, K = 16).
    neighbour_batch_size: int = field(default=64, metadata=in_range(ge=1))

    def __post_init__(self) -> None:
        validate(self)  # types, ranges and choices: the same rule as --set and recipe values
