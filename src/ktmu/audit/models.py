"""Audit fixed models (``ktmu audit``): measure each with one :class:`~ktmu.audit.run.Auditor`, build the record, over several draw seeds."""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Mapping

from ktmu.audit.config import ROLES, AuditError
from ktmu.audit.seeds import aggregate_audits
from ktmu.backbones import Backbone

if TYPE_CHECKING:
    from ktmu.audit.measurement import Measurement
    from ktmu.audit.run import Auditor


def measure_models(auditor: Auditor, models: Mapping[str, tuple[str, Backbone]], log: Callable[[str], None] | None = None,
                   reuse: Mapping[str, Measurement] | None = None) -> dict[str, Measurement]:
    """Measure ``models`` (role -> (spec, backbone); ``original`` required, measured first); ``reuse``: role -> an earlier measurement of the same weights.

    The original's trainable weights are every other model's reference for the weight diagnostics.
    """
    if "original" not in models:
        raise AuditError("the audit needs the original model (--original SPEC).")
    measured: dict[str, Measurement] = {}
    reference = models["original"][1].copy_trainable()  # a copy: the same backbone object may also be audited (and interpolated)
    for role in [r for r in ROLES if r in models] + [r for r in models if r not in ROLES]:
        spec, backbone = models[role]
        if log:
            log(f"auditing the {role} model ({spec}) ...")
        loss = measured["original"].d_f_loss if "original" in measured else None
        measured[role] = auditor.measure(backbone, role, spec, reuse=(reuse or {}).get(role), reference=reference, reference_loss=loss)
    return measured


def audit_models(auditor: Auditor, models: Mapping[str, tuple[str, Backbone]], log: Callable[[str], None] | None = None) -> dict:
    """Measure ``models`` (role -> (spec, backbone); ``original`` required, measured first) and return the audit record."""
    return auditor.result(measure_models(auditor, models, log))


def audit_over_seeds(auditor: Auditor, models: Mapping[str, tuple[str, Backbone]], seeds: int,
                     log: Callable[[str], None] | None = None) -> dict:
    """Audit fixed ``models`` under ``seeds`` draw seeds (the auditor's, +1, ...): one record, or the mean ± interval of several.

    The unlearning run's seed (the forget set and neighbours the draws avoid) stays the auditor's;
    each seed redraws the probes' train images and the relearning images and order. Over several
    seeds the record is :func:`.seeds.aggregate_audits` of the per-seed records (kept under ``seeds``).
    """
    if seeds < 1:
        raise AuditError(f"--seeds must be at least 1, got {seeds}.")
    records, replicates, first = [], [], None
    for i in range(seeds):
        seeded = auditor if i == 0 else auditor.reseeded(draw_seed=auditor.cfg.draws + i)
        if log and seeds > 1:
            log(f"audit draws with seed {seeded.cfg.draws} ({i + 1} of {seeds}) ...")
        measured = measure_models(seeded, models, log, reuse=first)
        first = first or measured
        records.append(seeded.result(measured))
        if seeds > 1:
            replicates.append(seeded.replicates(measured))
    return records[0] if seeds == 1 else aggregate_audits(records, replicates, keep_seeds=True)
