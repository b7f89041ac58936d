"""What every model audited in one run is measured with (:class:`AuditConfig`), the audit's error, and the architecture check."""
from __future__ import annotations

from dataclasses import dataclass, field

from ktmu.audit.feature_probes import KNN_K
from ktmu.audit.relearn import RelearnConfig
from ktmu.audit.soft_prompt import SoftPromptConfig
from ktmu.audit.weights import BARRIER_POINTS
from ktmu.backbones import Backbone
from ktmu.engine.neighbours import SCOPES
from ktmu.engine.request import MAX_PER_CONCEPT
from ktmu.errors import KtmuError

ROLES = ("original", "unlearned", "oracle")  # record order: the reference first


class AuditError(KtmuError, ValueError):
    """An audit that cannot be run as asked; the message says what to change."""


@dataclass(frozen=True)
class AuditConfig:
    """What every model audited in one run is measured with (fixed, so models compare)."""

    probe_per_class: int = 100  # linear/MLP/kNN probe train images per fine class; why 100: ktmu.audit.linear_probe
    relearn: RelearnConfig = field(default_factory=RelearnConfig)
    max_per_concept: int = MAX_PER_CONCEPT  # the proxy forget set the unlearning used: excluded from the probes and the attacks
    seed: int = 0  # the unlearning run's seed (which forget set and neighbours), and the audit's own draws unless draw_seed is given
    draw_seed: int | None = None  # the audit's own draws (probe images, relearning images); None: seed
    neighbours: int = 0  # the run's --neighbours K: its neighbour images are excluded too; 0 = the retain-free protocol
    neighbours_scope: str = "siblings"  # the run's --neighbours-scope (siblings or all)
    knn_k: int = KNN_K  # neighbours per kNN vote; why 10: ktmu.audit.feature_probes
    soft_prompt: SoftPromptConfig = field(default_factory=SoftPromptConfig)  # the soft-prompt attack's budget; why: ktmu.audit.soft_prompt
    barrier_points: int = BARRIER_POINTS  # points on the line from the original's weights; why 11: ktmu.audit.weights

    def __post_init__(self) -> None:
        if self.probe_per_class < 1:
            raise AuditError(f"the linear probe needs at least 1 train image per class, got {self.probe_per_class}.")
        if self.max_per_concept < 1:
            raise AuditError("--max-per-concept must be at least 1.")
        if self.neighbours < 0:
            raise AuditError(f"--neighbours must be 0 or more images per concept (the unlearning run's), got {self.neighbours}.")
        if self.neighbours_scope not in SCOPES:
            raise AuditError(f"unknown --neighbours-scope {self.neighbours_scope!r}; use one of {', '.join(SCOPES)} (the unlearning run's).")
        if self.knn_k < 1 or self.barrier_points < 2:
            raise AuditError(f"the kNN probe needs k >= 1 and the loss line 2 points or more; got {self.knn_k} and {self.barrier_points}.")

    @property
    def draws(self) -> int:
        """The seed of the audit's own draws."""
        return self.seed if self.draw_seed is None else self.draw_seed


def check_same_architecture(reference: Backbone, other: Backbone, flag: str, reference_flag: str = "--model") -> None:
    """Refuse two backbones whose state dicts differ in keys or shapes: their probes would not compare."""
    a = {k: tuple(v.shape) for k, v in reference.model.state_dict().items()}
    b = {k: tuple(v.shape) for k, v in other.model.state_dict().items()}
    if a == b:
        return
    only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    shapes = [f"{k} {a[k]} vs {b[k]}" for k in sorted(set(a) & set(b)) if a[k] != b[k]]
    parts = []
    if only_a or only_b:
        parts.append(f"{len(only_a)} weight(s) only in {reference_flag} (e.g. {only_a[:3]}), {len(only_b)} only in {flag} (e.g. {only_b[:3]})")
    if shapes:
        parts.append(f"{len(shapes)} of different shape (e.g. {'; '.join(shapes[:3])})")
    raise AuditError(f"{flag} {other.name} is not the architecture of {reference_flag} {reference.name}: {', '.join(parts)}. "
                     "The audit compares checkpoints of one architecture; pass the original (and oracle) of the audited model.")
