"""The knowledge audit of unlearning runs (``unlearn/bench --audit``) and of saved checkpoints (``ktmu audit``).

Every seed of a run is audited with that seed's :class:`~ktmu.audit.run.Auditor` (its own probe
and relearning draws, avoiding that seed's forget set and neighbours); all of them share the
original's and the oracle's seed-free probes, so each is measured once per seed and its names,
aliases and templates once per session. With an oracle (``--oracle SPEC``, or the shipped one of
the embedded difficult request, :func:`ktmu.audit.oracle.resolve_oracle`) every row's audit holds
the oracle and its gaps to it. Over several seeds the record's ``audit`` gains the mean ± interval
of its headline numbers (:func:`with_audit_interval`).

``ktmu audit --model KIND:DIR/model.safetensors`` reads the run's neighbour setting from the
``results.json`` beside the checkpoint when it records one (:func:`recorded_neighbours`), so the
audit's images stay disjoint from every image the method saw without retyping the run's flags.
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from ktmu.audit.draws import check_recorded_neighbours
from ktmu.audit.run import AuditConfig, AuditError, Auditor, Measurement, audit_over_seeds, check_same_architecture
from ktmu.audit.seeds import aggregate_audits
from ktmu.backbones import Backbone, load_backbone
from ktmu.evaluation.protocol import UnlearningEvaluator
from ktmu.workflows.lineage import check_original, read_model_ledger
from ktmu.workflows.session import Plan, RuntimeOptions, Session

ROLE_ORDER = ("original", "unlearned", "oracle")  # loaded and measured in this order: the reference first


def auditor_for_session(session: Session, cfg: AuditConfig | None = None) -> Auditor:
    """An auditor for the unlearning runs of a session: its request, forget set, test split and runtime."""
    if session.evaluator is None:
        raise AuditError("this session was opened without test data (evaluate=False); the audit measures on the test split.")
    cfg = replace(cfg or AuditConfig(), max_per_concept=session.max_per_concept, seed=session.seed)
    rt = session.runtime
    return Auditor(session.request, session.forget.source.dataset, session.evaluator, session.backbone.preprocess, cfg,
                   workers=rt.workers, batch_size=rt.eval_batch_size, force=True)  # the session already checked the concept is known


def measure_session_run(auditor: Auditor, session: Session, label: str | None = None,
                        oracle: tuple[str, Backbone] | None = None) -> dict[str, Measurement]:
    """The original's, the unlearned model's (the weights the session's backbone holds now) and the ``oracle``'s measurements."""
    original = auditor.original(session.backbone, session.original_state, session.backbone.name)
    out = {"original": original}
    if oracle is not None:
        out["oracle"] = auditor.oracle(oracle[1], session.original_state, oracle[0])
    out["unlearned"] = auditor.measure(session.backbone, "unlearned", label or session.backbone.name, study=False,
                                       reference=session.original_state, reference_loss=original.d_f_loss)
    return {r: out[r] for r in ROLE_ORDER if r in out}


def audit_session_run(auditor: Auditor, session: Session, label: str | None = None, oracle: tuple[str, Backbone] | None = None) -> dict:
    """Audit the weights the session's backbone holds now (an unlearning run's) against the session's original (and ``oracle``)."""
    return auditor.result(measure_session_run(auditor, session, label, oracle))


class SeedAuditors:
    """One :class:`Auditor` per training seed for the runs of one session, made on first use from the first seed's.

    ``oracle``: the spec of a model that never learned the concept (loaded on :meth:`prepare`), or None.
    """

    def __init__(self, cfg: AuditConfig, oracle: str | None = None) -> None:
        self.cfg = cfg
        self.oracle_spec = oracle
        self.oracle: tuple[str, Backbone] | None = None
        self.by_seed: dict[int, Auditor] = {}

    def prepare(self, session: Session) -> None:
        """Check before any training what can be checked: the first seed's draws (budgets, neighbours) and the oracle's architecture."""
        self.for_run(session)
        if self.oracle_spec is not None and self.oracle is None:
            rt = session.runtime
            backbone = load_backbone(self.oracle_spec, device=rt.device, precision=rt.precision)
            check_same_architecture(session.backbone, backbone, "--oracle")
            self.oracle = (self.oracle_spec, backbone)

    def notes(self) -> list[str]:
        """What the first seed's auditor has to say once (budgets that shrank, attacks that are skipped), as ``note: ...`` lines."""
        first = next(iter(self.by_seed.values()), None)
        return [f"note: {n}" for n in first.notes] if first is not None else []

    def for_run(self, run: Session) -> Auditor:
        """The auditor of ``run``'s seed (the first is made for the session, the others reseeded from it)."""
        if run.seed not in self.by_seed:
            first = next(iter(self.by_seed.values()), None)
            self.by_seed[run.seed] = first.reseeded(run.seed) if first is not None else auditor_for_session(run, self.cfg)
        return self.by_seed[run.seed]

    def audit(self, run: Session, label: str, replicates: bool = False) -> tuple[dict, dict[str, dict[str, np.ndarray]] | None]:
        """Audit the weights ``run``'s backbone holds now (left as found): the audit record, and its bootstrap replicates when asked."""
        self.prepare(run)
        auditor = self.for_run(run)
        measured = measure_session_run(auditor, run, label, self.oracle)
        return auditor.result(measured), auditor.replicates(measured) if replicates else None


def with_audit_interval(record: dict, replicates: Sequence[dict]) -> dict:
    """A several-seed record whose ``audit`` gains the mean ± interval of its headline numbers; each seed's audit stays under ``seeds``."""
    if not replicates:
        return record
    return {**record, "audit": aggregate_audits([r["audit"] for r in record["seeds"]], list(replicates), keep_seeds=False)}


def results_beside(spec: str) -> Path | None:
    """The ``results.json`` next to a checkpoint named in a backbone spec (``KIND:DIR/model.safetensors``), or None."""
    path = Path(spec.rsplit(":", 1)[-1]) if ":" in spec else None
    if path is None or path.suffix != ".safetensors":
        return None
    beside = path.parent / "results.json"
    return beside if beside.is_file() else None


def recorded_neighbours(record: Mapping) -> dict | None:
    """The ``neighbours`` entry of a results.json record (its first seed's for a several-seed record), or None."""
    for rec in (record, *(record.get("seeds") or [])[:1]):
        entry = rec.get("neighbours") if isinstance(rec, Mapping) else None
        if isinstance(entry, Mapping):
            return dict(entry)
    return None


def neighbour_setting(spec: str, neighbours: int | None, scope: str | None) -> tuple[int, str, dict | None, str]:
    """``ktmu audit``'s neighbour setting: K and scope as given, else as the results.json beside ``spec`` records them, else 0.

    Returns K, the scope, the record's entry (to check the redrawn images against) and a note to say.
    """
    path = results_beside(spec)
    entry = None
    if path is not None:
        try:
            entry = recorded_neighbours(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as e:
            raise AuditError(f"{path} (beside --model) is not a readable results.json: {e}; move it away or pass --neighbours.") from e
    recorded = (int(entry.get("k", 0) or 0), str(entry.get("scope", "siblings"))) if entry is not None else (0, "siblings")
    k, scope = (recorded[0] if neighbours is None else neighbours), (scope or recorded[1])
    if entry is None or not recorded[0]:
        return k, scope, None, ""
    if (k, scope) != recorded:
        return k, scope, None, (f"neighbours: {path} records --neighbours {recorded[0]} --neighbours-scope {recorded[1]}; "
                                f"auditing with --neighbours {k} --neighbours-scope {scope} as given")
    return k, scope, entry, f"neighbours: {path} records --neighbours {k} --neighbours-scope {scope}; the audit draws outside them"


def audit_checkpoints(plan: Plan, specs: Mapping[str, str], cfg: AuditConfig, runtime: RuntimeOptions, seeds: int = 1,
                      progress: bool = True, log: Callable[[str], None] | None = None, neighbours: dict | None = None) -> dict:
    """``ktmu audit``: load the ``original``, the audited (``unlearned``) and optionally an ``oracle`` model, audit them over ``seeds`` draws.

    The models must share one architecture (:func:`~ktmu.audit.run.check_same_architecture`); the
    plan's request, splits and zero-shot domains are the unlearning run's. ``neighbours``: the
    run's recorded neighbour entry, checked against the images the audit redraws.
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
    backbones["unlearned"].set_image_pipeline(runtime.image_pipeline)
    preprocess = backbones["unlearned"].preprocess
    others = [(c.domain.open(c.root), c.domain.templates) for c in plan.domains]
    evaluator = UnlearningEvaluator(plan.request, plan.test, others, preprocess, progress=progress,
                                    batch_size=runtime.eval_batch_size, workers=runtime.workers)
    auditor = Auditor(plan.request, plan.train, evaluator, preprocess, cfg, workers=runtime.workers, batch_size=runtime.eval_batch_size,
                      progress=progress, force=runtime.force)
    check_recorded_neighbours(auditor.seen, neighbours, "the results.json beside --model")
    req = plan.request
    seen = (f" and {len(auditor.seen.neighbours)} neighbour images (--neighbours {cfg.neighbours}, {cfg.neighbours_scope})"
            if cfg.neighbours else "")
    say(f"auditing: forget {', '.join(req.concepts)} ({req.goal}) in world {req.world.name}; proxy forget set {auditor.forget_set_size} "
        f"images (max {cfg.max_per_concept} per concept, seed {cfg.seed}){seen}")
    for note in auditor.notes:
        say(f"note: {note}")
    return audit_over_seeds(auditor, {role: (specs[role], b) for role, b in backbones.items()}, seeds, log=log)
