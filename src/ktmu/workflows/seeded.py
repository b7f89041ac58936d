"""One method over several seeds, each run optionally audited: the record ``ktmu unlearn`` writes and each row of ``ktmu bench``.

Seed ``i`` is ``session.seed + i``: it draws the forget set and orders the training. With one seed
the record is that run's (:func:`ktmu.workflows.session.run_method`); with several it is the mean over
seeds with 95 % intervals (:func:`ktmu.evaluation.seeds.aggregate`), each seed's record under
``seeds``. Example::

    plan = plan_run(forget=["shirt"])
    session = open_session(plan=plan)
    record = run_seeds(session, plan.train, "nhl-kl", TrainConfig(), seeds=3, auditors=SeedAuditors(audit_config()))
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ktmu.data import ConceptDataset
from ktmu.engine.config import TrainConfig
from ktmu.evaluation.cumulative import aggregate_cumulative
from ktmu.evaluation.protocol import UnlearningEvaluator
from ktmu.evaluation.seeds import aggregate, run_replicates
from ktmu.evaluation.zero_shot import WorldEval
from ktmu.workflows.ledger_audits import LedgerAuditors, aggregate_ledger_audits
from ktmu.workflows.lineage import History
from ktmu.workflows.audits import SeedAuditors, with_audit_interval
from ktmu.workflows.options import check_seeds
from ktmu.workflows.session import Session, reseed, run_method

# finish(run, record, first): completes a seed's record right after its run, while the backbone holds
# that run's weights (provenance, saving the first seed's weights); ``first`` is True for the first seed.
Finish = Callable[[Session, dict, bool], None]


def run_seeds(session: Session, train: ConceptDataset, method: str, cfg: TrainConfig, hyper: Mapping[str, Any] | None = None,
              seeds: int = 1, auditors: SeedAuditors | None = None, finish: Finish | None = None, progress: bool = True) -> dict:
    """``method`` once per seed from the session's original; one seed's record, or the aggregate of several.

    ``train``: the split the forget sets are drawn from (the plan's). ``auditors``: audit each
    seed's unlearned weights into its record's ``audit`` (over several seeds the aggregate's
    ``audit`` holds mean ± interval). ``finish`` runs last for each seed.
    """
    check_seeds(seeds)
    records, replicates, cumulative, audit_replicates, ledger_replicates = [], [], [], [], []
    ledger = LedgerAuditors(session, auditors.cfg) if auditors is not None and LedgerAuditors.applies(session) else None
    for i in range(seeds):
        seed = session.seed + i
        run = reseed(session, train, seed)
        record = run_method(run, method, replace(cfg, seed=seed), progress=progress, **(hyper or {}))
        if seeds > 1:  # before the audit: it evaluates again
            ev = session.evaluator
            step, total = seed_replicates(record, session.original_eval, ev.last, ev.last_others, ev, session.history)
            replicates.append(step)
            cumulative += [total] if total is not None else []
        if auditors is not None:
            record["audit"], reps = auditors.audit(run, method, replicates=seeds > 1)
            if reps is not None:
                audit_replicates.append(reps)
            if ledger is not None:  # the ledger's requests too, each against the base model
                record["ledger_audit"], reps = ledger.audit(run, method, replicates=seeds > 1)
                ledger_replicates += [reps] if reps is not None else []
        if finish is not None:
            finish(run, record, i == 0)
        records.append(record)
    out = with_audit_interval(records[0] if seeds == 1 else aggregate_runs(records, replicates, cumulative), audit_replicates)
    if ledger_replicates:
        out["ledger_audit"] = aggregate_ledger_audits([r["ledger_audit"] for r in records], ledger_replicates)
    return out


def seed_replicates(record: dict, original: WorldEval, unlearned: WorldEval, others: Mapping[str, WorldEval], evaluator: UnlearningEvaluator,
                    history: History) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray] | None]:
    """One seed's bootstrap replicates (:func:`ktmu.evaluation.seeds.run_replicates`): against the run's original (``original``'s
    predictions, scored by ``evaluator``) and, for a record with a ``cumulative`` part, against the base model of ``history``."""
    step = run_replicates(record, original, unlearned, evaluator, others=others)
    if "cumulative" not in record:
        return step, None
    return step, run_replicates(record["cumulative"], history.base.world, unlearned, history.cumulative, others=others)


def aggregate_runs(records: Sequence[dict], replicates: Sequence[dict[str, np.ndarray]],
                   cumulative: Sequence[dict[str, np.ndarray]] = ()) -> dict:
    """Several seeds' records as one (:func:`ktmu.evaluation.seeds.aggregate`); with each seed's cumulative replicates, its
    ``cumulative`` part too (:func:`ktmu.evaluation.cumulative.aggregate_cumulative`)."""
    out = aggregate(records, replicates)
    if cumulative:
        out["cumulative"] = aggregate_cumulative([r["cumulative"] for r in records], cumulative)
    return out
