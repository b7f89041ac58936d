"""The knowledge audit of unlearning runs (``unlearn/bench --audit``) and of saved checkpoints (``ktmu audit``).

Every seed of a run is audited with that seed's :class:`~ktmu.audit.run.Auditor` (its own probe
and relearning draws, avoiding that seed's forget set); all of them share the original's seed-free
probes, so the original is measured once per seed and its names, aliases and templates once per
session. Over several seeds the record's ``audit`` gains the mean ± interval of its headline
numbers (:func:`with_audit_interval`).
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np

from ktmu.audit.run import AuditConfig, Auditor, audit_over_seeds, check_same_architecture
from ktmu.audit.seeds import aggregate_audits
from ktmu.backbones import load_backbone
from ktmu.evaluation.protocol import UnlearningEvaluator
from ktmu.workflows.lineage import check_original, read_model_ledger
from ktmu.workflows.session import Plan, RuntimeOptions, Session

ROLE_ORDER = ("original", "unlearned", "oracle")  # loaded and measured in this order: the reference first


class SeedAuditors:
    """One :class:`Auditor` per training seed for the runs of one session, made on first use from the first seed's."""

    def __init__(self, cfg: AuditConfig) -> None:
        self.cfg = cfg
        self.by_seed: dict[int, Auditor] = {}

    def for_run(self, run: Session) -> Auditor:
        """The auditor of ``run``'s seed (the first is made for the session, the others reseeded from it)."""
        if run.seed not in self.by_seed:
            first = next(iter(self.by_seed.values()), None)
            self.by_seed[run.seed] = first.reseeded(run.seed) if first is not None else Auditor.for_session(run, self.cfg)
        return self.by_seed[run.seed]

    def audit(self, run: Session, label: str, replicates: bool = False) -> tuple[dict, dict[str, dict[str, np.ndarray]] | None]:
        """Audit the weights ``run``'s backbone holds now (left as found): the audit record, and its bootstrap replicates when asked."""
        auditor = self.for_run(run)
        measured = auditor.measure_session_run(run, label)
        return auditor.result(measured), auditor.replicates(measured) if replicates else None


def with_audit_interval(record: dict, replicates: Sequence[dict]) -> dict:
    """A several-seed record whose ``audit`` gains the mean ± interval of its headline numbers; each seed's audit stays under ``seeds``."""
    if not replicates:
        return record
    return {**record, "audit": aggregate_audits([r["audit"] for r in record["seeds"]], list(replicates), keep_seeds=False)}


def audit_checkpoints(plan: Plan, specs: Mapping[str, str], cfg: AuditConfig, runtime: RuntimeOptions, seeds: int = 1,
                      progress: bool = True, log: Callable[[str], None] | None = None) -> dict:
    """``ktmu audit``: load the ``original``, the audited (``unlearned``) and optionally an ``oracle`` model, audit them over ``seeds`` draws.

    The models must share one architecture (:func:`~ktmu.audit.run.check_same_architecture`); the
    plan's request, splits and zero-shot domains are the unlearning run's.
    """
    say = log or (lambda _: None)
    roles = [r for r in ROLE_ORDER if r in specs]
    ledger = read_model_ledger(specs["unlearned"])  # a corrupt ledger or another architecture: refused before any model loads
    backbones = {role: load_backbone(specs[role], device=runtime.device, precision=runtime.precision) for role in roles}
    for role in ("original", "oracle"):
        if role in backbones:
            check_same_architecture(backbones["unlearned"], backbones[role], f"--{role}")
    check_original(ledger, backbones["original"], specs["original"])
    for note in plan.notes:
        say(note)
    preprocess = backbones["unlearned"].preprocess
    others = [(c.domain.open(c.root), c.domain.templates) for c in plan.domains]
    evaluator = UnlearningEvaluator(plan.request, plan.test, others, preprocess, progress=progress,
                                    batch_size=runtime.eval_batch_size, workers=runtime.workers)
    auditor = Auditor(plan.request, plan.train, evaluator, preprocess, cfg, workers=runtime.workers, batch_size=runtime.eval_batch_size,
                      progress=progress, force=runtime.force)
    req = plan.request
    say(f"auditing: forget {', '.join(req.concepts)} ({req.goal}) in world {req.world.name}; proxy forget set {auditor.forget_set_size} "
        f"images (max {cfg.max_per_concept} per concept, seed {cfg.seed})")
    return audit_over_seeds(auditor, {role: (specs[role], b) for role, b in backbones.items()}, seeds, log=log)
