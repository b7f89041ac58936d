"""Learning-rate selection on forget-set data only (test data is never loaded).

Rule: among the candidate learning rates, keep the smallest whose selected epoch brings the
forget-train accuracy at the forgotten level (the selection score; fine accuracy for a fine goal)
to at most ``threshold`` percent: the least change that forgets. If
none reaches it, keep the one with the lowest forget-train fine accuracy (then the smallest).
The forget-train coarse accuracy is reported alongside as a forget-data-only view of what is kept.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ktmu.methods import build_method
from ktmu.workflows.session import Session
from ktmu.engine.trainer import TrainConfig, unlearn

DEFAULT_LRS = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3)  # half-decade grid around the study's 1e-5..1e-4
THRESHOLD = 5.0  # percent forget-train fine accuracy that counts as forgotten (half of 10-way chance)


@dataclass
class TuneRow:
    lr: float
    epoch: int
    score: float  # the selection score: forget-train fine accuracy for a fine goal
    forget_coarse: float


def tune_lr(session: Session, method: str, lrs: Sequence[float] = DEFAULT_LRS, epochs: int | None = None,
            threshold: float = THRESHOLD, progress: bool = False) -> tuple[list[TuneRow], float]:
    """Run ``method`` at each learning rate from the original weights; return the rows and the chosen rate."""
    rows = []
    for lr in sorted(lrs):
        m = build_method(method)
        reference = session.reference_for(m)
        session.backbone.load_trainable(session.original_state)
        log = unlearn(session.backbone, m, session.forget, session.world, TrainConfig(lr=lr, epochs=epochs, seed=session.seed, workers=session.runtime.workers),
                      progress=progress, original=session.original_state, reference=reference, neighbours=session.neighbours)
        best = log.epochs[log.selected_epoch - 1]
        rows.append(TuneRow(lr, log.selected_epoch, best["selection_score"], best["forget_train_coarse_acc"]))
    session.backbone.load_trainable(session.original_state)
    reached = [r for r in rows if r.score <= threshold]
    chosen = reached[0] if reached else min(rows, key=lambda r: (r.score, r.lr))
    return rows, chosen.lr
