"""The audit's budgets from ``ktmu audit``'s flags (their defaults for ``ktmu unlearn/bench --audit``), checked."""
from __future__ import annotations

from ktmu.audit.relearn import RelearnConfig, curve_points
from ktmu.audit.run import AuditConfig
from ktmu.engine.request import MAX_PER_CONCEPT
from ktmu.errors import UsageError

RELEARN_STEPS = RelearnConfig.steps[-1]  # --relearn-steps default: the relearning budget, the curve's last point


def audit_config(max_per_concept: int = MAX_PER_CONCEPT, seed: int = 0, probe_per_class: int = AuditConfig.probe_per_class,
                 relearn_steps: int = RELEARN_STEPS, relearn_images: int = RelearnConfig.images_per_concept) -> AuditConfig:
    """The fixed budgets every audited model is measured with; ``seed`` is the unlearning run's (which forget set) and the draws'.

    ``relearn_steps`` is the relearning budget (the curve is measured at 0, a fifth, half and all
    of it); ``relearn_images`` the relearning images per concept. Example: ``audit_config(150, 0,
    relearn_steps=50)`` measures the curve at steps 0, 10, 25 and 50.
    """
    for flag, value in (("--relearn-steps", relearn_steps), ("--relearn-images", relearn_images)):
        if value < 1:
            raise UsageError(f"{flag} must be at least 1, got {value}.")
    relearn = RelearnConfig(steps=curve_points(relearn_steps), images_per_concept=relearn_images, seed=seed)
    return AuditConfig(probe_per_class=probe_per_class, relearn=relearn, max_per_concept=max_per_concept, seed=seed)
