"""The audit's budgets from ``ktmu audit``'s flags (their defaults for ``ktmu unlearn/bench --audit``), checked."""
from __future__ import annotations

import math

from ktmu.audit.relearn import RelearnConfig, curve_points
from ktmu.audit.config import AuditConfig
from ktmu.engine.request import MAX_PER_CONCEPT
from ktmu.errors import UsageError

RELEARN_STEPS = RelearnConfig.steps[-1]  # --relearn-steps default: the relearning budget, the curve's last point


def audit_config(max_per_concept: int = MAX_PER_CONCEPT, seed: int = 0, probe_per_class: int = AuditConfig.probe_per_class,
                 relearn_steps: int = RELEARN_STEPS, relearn_images: int = RelearnConfig.images_per_concept, neighbours: int = 0,
                 neighbours_scope: str = "siblings", relearn_lr: float = RelearnConfig.lr) -> AuditConfig:
    """The fixed budgets every audited model is measured with; ``seed`` is the unlearning run's (which forget set) and the draws'.

    ``relearn_steps`` is the relearning budget (the curve's points: :func:`~ktmu.audit.relearn.curve_points`,
    0, 10, 25, 50, 100 and 200 for the default 200); ``relearn_images`` the relearning images per
    concept; ``relearn_lr`` the attack's learning rate; ``neighbours`` and ``neighbours_scope`` the run's neighbour setting (those images are
    left out of the audit's draws). Example: ``audit_config(150, 0, relearn_steps=50)`` measures the
    curve at steps 0, 10, 25 and 50.
    """
    for flag, value in (("--relearn-steps", relearn_steps), ("--relearn-images", relearn_images)):
        if value < 1:
            raise UsageError(f"{flag} must be at least 1, got {value}.")
    if not (relearn_lr > 0 and math.isfinite(relearn_lr)):
        raise UsageError(f"--relearn-lr must be a positive finite learning rate such as 1e-4, got {relearn_lr}.")
    relearn = RelearnConfig(steps=curve_points(relearn_steps), images_per_concept=relearn_images, lr=relearn_lr, seed=seed)
    return AuditConfig(probe_per_class=probe_per_class, relearn=relearn, max_per_concept=max_per_concept, seed=seed, neighbours=neighbours,
                       neighbours_scope=neighbours_scope)
