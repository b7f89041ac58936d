"""One method over several seeds, each run optionally audited: the record ``ktmu unlearn`` writes and each row of ``ktmu bench``.

Seed ``i`` is ``session.seed + i``: it draws the forget set and orders the training. With one seed
the record is that run's (:func:`ktmu.runs.session.run_method`); with several it is the mean over
seeds with 95 % intervals (:func:`ktmu.evaluation.seeds.aggregate`), each seed's record under
``seeds``. Example::

    plan = plan_run(forget=["shirt"])
    session = open_session(plan=plan)
    record = run_seeds(session, plan.train, "nhl-kl", TrainConfig(), seeds=3, auditors=SeedAuditors(audit_config()))
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Mapping

from ktmu.data import ConceptDataset
from ktmu.engine.config import TrainConfig
from ktmu.evaluation.seeds import aggregate, run_replicates
from ktmu.runs.audits import SeedAuditors, with_audit_interval
from ktmu.runs.options import check_seeds
from ktmu.runs.session import Session, reseed, run_method

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
    records, replicates, audit_replicates = [], [], []
    for i in range(seeds):
        seed = session.seed + i
        run = reseed(session, train, seed)
        record = run_method(run, method, replace(cfg, seed=seed), progress=progress, **(hyper or {}))
        if seeds > 1:  # before the audit: it evaluates again
            replicates.append(run_replicates(record, session.original_eval, session.evaluator.last, session.evaluator,
                                             others=session.evaluator.last_others))
        if auditors is not None:
            record["audit"], reps = auditors.audit(run, method, replicates=seeds > 1)
            if reps is not None:
                audit_replicates.append(reps)
        if finish is not None:
            finish(run, record, i == 0)
        records.append(record)
    return with_audit_interval(records[0] if seeds == 1 else aggregate(records, replicates), audit_replicates)
