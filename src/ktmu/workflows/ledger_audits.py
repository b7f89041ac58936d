"""``unlearn --audit`` on a checkpoint with a ledger: every request in it, and the run's own, audited against the base model.

A step's own audit (``record["audit"]``, :mod:`ktmu.workflows.audits`) compares the step's result
with the model it started from, which had already forgotten the ledger's concepts: that audit can
only see the step's concept. Here each request of the ledger on the run's world, and the run's own
request, gets an :class:`~ktmu.audit.run.Auditor` of its own, with the base model (which knew every
concept) as the original and the run's weights as the audited model. Each auditor avoids the
proxy forget set that request drew (its ``seed`` and ``max_per_concept`` from the ledger) and draws
its own probe and relearning images with the run's seed. Over several seeds each request's audit
gains the mean ± interval of its headline numbers, as ``record["audit"]`` does.

The records go under ``record["ledger_audit"]``: one entry per request (``request`` number, 1 = the
oldest, ``concepts`` and ``audit``).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import numpy as np

from ktmu.audit.run import AuditConfig, Auditor
from ktmu.audit.seeds import aggregate_audits
from ktmu.backbones import Backbone
from ktmu.engine.request import UnlearningRequest
from ktmu.workflows.lineage import load_base_backbone
from ktmu.workflows.session import Session


class LedgerAuditors:
    """Audits of every request in a session's ledger (on its world) and of the session's own, against the base model."""

    def __init__(self, session: Session, cfg: AuditConfig) -> None:
        self.session, self.cfg = session, cfg
        self._base: Backbone | None = None

    @staticmethod
    def applies(session: Session) -> bool:
        """Whether the session's model carries earlier requests on its world (else ``record["audit"]`` already says it all)."""
        return bool(session.history.ledger.concepts_in(session.world.name)) and session.history.base is not None

    def base(self) -> Backbone:
        """The base model, loaded (and its sha256 checked) on first use."""
        if self._base is None:
            self._base = load_base_backbone(self.session.history.base, self.session.runtime)
        return self._base

    def requests(self, run: Session) -> list[tuple[int, UnlearningRequest, AuditConfig]]:
        """Each request to audit, numbered as in the ledger (the run's own last), with the audit settings that avoid its forget set."""
        world, ledger = run.world, run.history.ledger
        out = []
        for number, entry in enumerate(ledger.requests, 1):
            if entry.world == world.name:
                request = UnlearningRequest.parse(world, entry.concepts, entry.goal)
                out.append((number, request, replace(self.cfg, seed=entry.seed, max_per_concept=entry.max_per_concept, draw_seed=run.seed)))
        own = UnlearningRequest.parse(world, run.request.concepts, run.request.goal)
        out.append((len(ledger.requests) + 1, own, replace(self.cfg, seed=run.seed, max_per_concept=run.max_per_concept, draw_seed=None)))
        return out

    def audit(self, run: Session, label: str, replicates: bool = False) -> tuple[list[dict], list[dict] | None]:
        """Audit the weights ``run``'s backbone holds now against the base, once per request: the records and, when asked, the replicates."""
        records, reps = [], []
        rt = run.runtime
        for number, request, cfg in self.requests(run):
            auditor = Auditor(request, run.forget.source.dataset, run.evaluator.with_request(request), run.backbone.preprocess, cfg,
                              workers=rt.workers, batch_size=rt.eval_batch_size, force=True)  # the base knew it: the session checked
            measured = {"original": auditor.measure(self.base(), "original", run.history.base.spec, study=False),
                        "unlearned": auditor.measure(run.backbone, "unlearned", label, study=False)}
            records.append({"request": number, "concepts": list(request.concepts), "audit": auditor.result(measured)})
            if replicates:
                reps.append(auditor.replicates(measured))
        return records, reps if replicates else None


def aggregate_ledger_audits(per_seed: Sequence[list[dict]], replicates: Sequence[list[dict[str, dict[str, np.ndarray]]]]) -> list[dict]:
    """Each request's audit over the seeds (``per_seed[s]``: seed s's :meth:`LedgerAuditors.audit` records, ``replicates[s]`` its replicates)."""
    out = []
    for i, first in enumerate(per_seed[0]):
        audit = aggregate_audits([records[i]["audit"] for records in per_seed], [reps[i] for reps in replicates], keep_seeds=False)
        out.append({**first, "audit": audit})
    return out
