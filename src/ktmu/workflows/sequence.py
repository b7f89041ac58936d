"""``ktmu sequence``: requests that arrive over time, each forgotten from the checkpoint the previous one wrote, and all at once beside them.

Step 1 starts from ``--model``; step k from step k-1's checkpoint of the same seed, so each step is
``ktmu unlearn --model CKPT`` on that checkpoint and its ledger (:mod:`ktmu.engine.ledger`): the
concepts forgotten before stay forgotten, and every step is scored against the previous model
(the step's cost) and against the base model (cumulative, :mod:`ktmu.evaluation.cumulative`). The
same concepts forgotten in one request from ``--model`` (``at once``) are run beside the chain.

Layout of ``--out`` (a killed sequence resumes where it stopped, like ``ktmu bench``):
``sequence.json`` (the settings, written before the first checkpoint), ``steps/<k>-<concepts>/seed-<s>/``
and ``at-once/seed-<s>/`` (``model.safetensors``, ``model.ledger.json`` and, written last, ``results.json``),
then ``table.md`` and ``results.json`` once every run is done. Seed ``s`` is ``--seed`` + i, as elsewhere;
over several seeds each row is the mean ± 95 % interval (the bootstrap of each seed's run against its
own previous model and against the base, pooled; :mod:`ktmu.evaluation.seeds`). Example::

    plan = plan_sequence([["shirt"], ["coat"], ["sandal"]])
    store = SequenceStore.open("runs/seq", sequence_key(plan, "nhl-kl", {}, TrainConfig(), 1, RuntimeOptions()))
    result = run_sequence(plan, store, "nhl-kl", TrainConfig(), {}, seeds=1)
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ktmu.backbones import Backbone, load_backbone
from ktmu.engine.config import TrainConfig
from ktmu.engine.ledger import LedgerError, read_ledger, with_checkpoint
from ktmu.engine.request import MAX_PER_CONCEPT, RequestError, UnlearningRequest, goal_naming
from ktmu.errors import UsageError
from ktmu.evaluation.protocol import UnlearningEvaluator, check_test_covers_request
from ktmu.evaluation.zero_shot import WorldEval
from ktmu.outputs import json_ready, write_json_atomic
from ktmu.workflows.bench_store import open_manifest
from ktmu.workflows.lineage import BasePredictions, History, HistoryOptions, ledger_request, open_history
from ktmu.workflows.options import plan_run
from ktmu.workflows.seeded import aggregate_runs, seed_replicates
from ktmu.workflows.session import Plan, RuntimeOptions, open_session, plan_evaluator, run_method, save_unlearned

MANIFEST = "sequence.json"
RESULTS = "results.json"
WEIGHTS = "model.safetensors"


@dataclass(frozen=True)
class Unit:
    """One request of the sequence: a step (from the previous step's checkpoint) or the all-at-once run (from ``--model``)."""

    folder: str  # under --out: steps/1-shirt, at-once
    label: str  # its row in the table: "1 shirt", "2 +coat", "at once"
    request: UnlearningRequest  # checked before any training, with the concepts forgotten before it (also_forgotten)
    after: int | None  # the unit whose checkpoint it starts from (None: --model)


@dataclass
class SequencePlan:
    """Everything a sequence needs that can be checked before a model loads: the first step's plan and every unit."""

    first: Plan  # step 1's plan: the splits, zero-shot domains and --model's ledger
    model: str
    steps: list[list[str]]  # the concepts each step names, as given
    units: list[Unit]
    max_per_concept: int

    @property
    def chain(self) -> str:
        """The steps in words: ``shirt -> coat -> sandal``."""
        return " -> ".join(", ".join(u.request.concepts) for u in self.units if u.folder.startswith("steps/"))


def _slug(names: Sequence[str]) -> str:
    """A folder-name form of concept names: ``("ankle boot", "bag")`` -> ``ankle-boot+bag``."""
    return "+".join(re.sub(r"[^A-Za-z0-9._-]+", "-", n).strip("-") or "concept" for n in names)


def _step_request(first: Plan, steps: Sequence[UnlearningRequest], names: Sequence[str], goal: str, number: int,
                  force: bool) -> UnlearningRequest:
    """Step ``number``'s request: the concepts of ``--model``'s ledger and of the earlier ``steps`` stay forgotten; naming one again needs ``force``."""
    world = first.request.world
    earlier = tuple(c for r in steps for c in r.concepts)
    request = ledger_request(first.ledger, world, names, goal, force)
    request = UnlearningRequest.parse(world, names, goal, also_forgotten=request.also_forgotten + earlier)
    for name in () if force else request.concepts:
        c = world.find(name)
        for k, r in enumerate(steps, 1):
            if c.name in r.concepts or (c.level == "fine" and world.index(c) in r.forget_fine):
                raise RequestError(f"step {number} names {c.name!r}, which step {k} already forgets; drop it from step {number}, "
                                   "or add --force to forget it again.")
    check_test_covers_request(request, first.test)
    return request


def plan_sequence(steps: Sequence[Sequence[str] | None], goal: str = "fine", at_once: bool = True, force: bool = False,
                  **run: Any) -> SequencePlan:
    """Resolve every step's concepts (did-you-mean) and check the whole sequence before any model loads; ``run``: :func:`plan_run`'s options.

    ``steps[0]`` None takes the first step's concepts from the ``level`` request, as ``ktmu unlearn`` does without ``--forget``.
    A step naming a concept an earlier step (or ``--model``'s ledger) forgets is refused unless
    ``force``. ``at_once`` adds the request of all steps' concepts together, from ``--model``.
    """
    if not steps or any(not s for s in steps[1:]):
        raise UsageError("a sequence needs at least one step, each naming a concept: --forget C1 --then C2 [--then C3 ...].")
    first = plan_run(forget=list(steps[0]) if steps[0] else None, goal=goal, force=force, **run)  # no names: the --level request
    first = replace(first, cumulative=True)  # every step, the first too, is scored against the base model
    requests = [first.request]
    for number, names in enumerate(steps[1:], 2):
        requests.append(_step_request(first, requests, names, goal, number, force))
    units = [Unit(f"steps/{k}-{_slug(r.concepts)}", f"{k} {'+' if k > 1 else ''}{', '.join(r.concepts)}", r, k - 2 if k > 1 else None)
             for k, r in enumerate(requests, 1)]
    if at_once and len(requests) > 1:
        names = tuple(dict.fromkeys(c for r in requests for c in r.concepts))
        together = ledger_request(first.ledger, first.request.world, names, goal_naming(first.request.world, names), force=True)
        units.append(Unit("at-once", "at once", together, None))
    return SequencePlan(first, run.get("model", "mini-clip"), [list(r.concepts) for r in requests], units,
                        run.get("max_per_concept", MAX_PER_CONCEPT))


def sequence_key(plan: SequencePlan, method: str, hyper: Mapping[str, Any], cfg: TrainConfig, seeds: int, rt: RuntimeOptions,
                 **settings: Any) -> dict[str, Any]:
    """The settings that make a sequence in ``--out`` the same sequence: equal keys resume, others are refused (``settings``: data, zero-shot, ...)."""
    train = {k: v for k, v in asdict(cfg).items() if k != "workers"}  # the worker count does not change results
    return {"steps": plan.steps, "units": [u.folder for u in plan.units], "goal": plan.first.request.goal, "model": plan.model,
            "world": plan.first.request.world.name, "method": method, "hyperparameters": dict(hyper), "train": train, "seeds": seeds,
            "precision": rt.precision, "trainable": rt.train, "max_per_concept": settings.pop("max_per_concept", None), **settings}


@dataclass
class SequenceStore:
    """The ``--out`` folder of one sequence: each (unit, seed) run's checkpoint and record, kept as it finishes."""

    root: Path
    key: dict[str, Any]
    write: bool = True
    resumed: bool = False

    @classmethod
    def open(cls, out: str | Path, key: dict[str, Any], overwrite: bool = False, resume: bool = False, write: bool = True) -> "SequenceStore":
        """Check ``out`` before any compute: resume a sequence with the same settings, or start a new one where allowed."""
        root = Path(out)
        key = json.loads(json.dumps(json_ready(key)))  # as it reads back from the strict JSON written
        return cls(root, key, write, open_manifest(root, MANIFEST, key, "sequence", overwrite=overwrite, resume=resume, write=write))

    def folder(self, unit: Unit, seed: int) -> Path:
        return self.root / unit.folder / f"seed-{seed}"

    def load(self, unit: Unit, seed: int) -> dict | None:
        """The finished run's record (its checkpoint beside it), or None when it has to run."""
        folder = self.folder(unit, seed)
        if not (folder / RESULTS).is_file() or not (folder / WEIGHTS).is_file():
            return None
        try:
            return json.loads((folder / RESULTS).read_text())
        except (OSError, json.JSONDecodeError):
            return None  # written atomically, so only a hand-edited file: run it again

    def begin(self) -> None:
        """Write the manifest before the first checkpoint, so that a killed sequence's folder resumes."""
        if self.write and not (self.root / MANIFEST).is_file():
            write_json_atomic(self.root / MANIFEST, {"run_key": self.key})

    def done(self, plan: SequencePlan, seeds: int, seed: int) -> list[str]:
        """The runs already finished, as ``folder/seed-s``."""
        return [f"{u.folder}/seed-{seed + i}" for u in plan.units for i in range(seeds) if self.load(u, seed + i) is not None]


@dataclass
class _Chain:
    """A running sequence's loaded pieces: one backbone and evaluator for every run, and the predictions seen so far."""

    plan: SequencePlan
    store: SequenceStore
    backbone: Backbone
    start: dict  # --model's weights (a snapshot), where step 1 and the all-at-once run start
    evaluator: UnlearningEvaluator
    rt: RuntimeOptions
    progress: bool
    original: str | None
    bases: dict[str, BasePredictions] = field(default_factory=dict)
    history_options: HistoryOptions = field(default_factory=HistoryOptions)  # each step's replay and anchor
    predictions: dict[Any, tuple[WorldEval, dict[str, WorldEval]]] = field(default_factory=dict)  # (unit, seed) or "start" -> predictions

    def spec(self, unit: Unit, seed: int) -> str:
        """The model spec a unit's run starts from: ``--model``, or the previous step's checkpoint on its architecture."""
        if unit.after is None:
            return self.plan.model
        return with_checkpoint(self.plan.model, self.store.folder(self.plan.units[unit.after], seed) / WEIGHTS)

    def load(self, unit: Unit | None, seed: int) -> None:
        """Put into the backbone the weights of ``unit``'s run of ``seed`` (None: ``--model``'s)."""
        if unit is None:
            self.backbone.restore(self.start)
        else:
            self.backbone.load_weights(self.store.folder(unit, seed) / WEIGHTS)

    def predict(self, index: int | None, seed: int) -> tuple[WorldEval, dict[str, WorldEval]]:
        """The predictions of unit ``index``'s checkpoint of ``seed`` (None: ``--model``), made once."""
        key = "start" if index is None else (index, seed)
        if key not in self.predictions:
            self.load(None if index is None else self.plan.units[index], seed)
            self.predictions[key] = self.evaluator.predict(self.backbone)
        return self.predictions[key]


def _unit_plan(chain: _Chain, unit: Unit, seed: int) -> Plan:
    """The plan of ``unit``'s run of ``seed``: its request as the ledger of the checkpoint it starts from gives it (the planned one)."""
    first = chain.plan.first
    if unit.after is None:
        return replace(first, request=unit.request) if unit.request is not first.request else first
    ckpt = chain.store.folder(chain.plan.units[unit.after], seed) / WEIGHTS
    ledger = read_ledger(ckpt)
    request = ledger_request(ledger, first.request.world, unit.request.concepts, unit.request.goal, force=True)
    if set(request.also_forgotten) != set(unit.request.also_forgotten):
        raise LedgerError(f"{ckpt} carries a ledger that forgot {', '.join(request.also_forgotten) or 'nothing'}, but this sequence's "
                          f"earlier steps forgot {', '.join(unit.request.also_forgotten)}: the folder was changed by hand. "
                          "Use --overwrite to run the sequence again.")
    return replace(first, request=unit.request, ledger=ledger, notes=[])


def _run_unit(chain: _Chain, unit: Unit, seed: int, method: str, cfg: TrainConfig, hyper: Mapping[str, Any],
              finish: Callable[[dict], None] | None) -> dict:
    """Run ``unit`` for ``seed`` from the checkpoint it starts from; write its checkpoint (with the ledger) and then its record."""
    chain.load(None if unit.after is None else chain.plan.units[unit.after], seed)
    session = open_session(model=chain.spec(unit, seed), max_per_concept=chain.plan.max_per_concept, seed=seed, progress=chain.progress,
                           runtime=chain.rt, plan=_unit_plan(chain, unit, seed), backbone=chain.backbone, original=chain.original,
                           bases=chain.bases, evaluator=chain.evaluator, history_options=chain.history_options)
    record = run_method(session, method, replace(cfg, seed=seed), progress=chain.progress, **hyper)
    chain.predictions[(chain.plan.units.index(unit), seed)] = (session.evaluator.last, dict(session.evaluator.last_others))
    if finish is not None:
        finish(record)
    folder = chain.store.folder(unit, seed)
    if chain.store.write:
        chain.store.begin()
        record["weights"] = str(save_unlearned(session, folder, record))
        write_json_atomic(folder / RESULTS, json_ready(record))
    return json.loads(json.dumps(json_ready(record)))  # as resumed records read back: NaN as null


def _base(chain: _Chain, seed: int) -> BasePredictions:
    """The base model's predictions (``--model``'s own when its ledger is empty), made once and shared with every run's session."""
    first = chain.plan.first
    predictions = chain.predict(None, seed)  # leaves --model's weights in the backbone, which the base's sha256 is taken of
    history = open_history(first.ledger, chain.plan.model, chain.backbone, first.request, chain.evaluator, chain.rt, cumulative=True,
                           original=chain.original, bases=chain.bases, predictions=predictions)
    return history.base


def _aggregate(chain: _Chain, index: int, records: Sequence[dict], seeds: Sequence[int]) -> dict:
    """One unit's record over its seeds: each seed's run against its own previous model and against the base, pooled."""
    if len(records) == 1:
        return records[0]
    unit = chain.plan.units[index]
    step = chain.evaluator.with_request(unit.request)
    history = History(cumulative=chain.evaluator.with_request(unit.request.together()), base=_base(chain, seeds[0]))
    replicates, cumulative = [], []
    for seed, record in zip(seeds, records):
        previous, _ = chain.predict(unit.after, seed)
        ev, others = chain.predict(index, seed)
        mine, total = seed_replicates(record, previous, ev, others, step, history)
        replicates.append(mine)
        cumulative.append(total)
    return json.loads(json.dumps(json_ready(aggregate_runs(records, replicates, cumulative))))


def run_sequence(plan: SequencePlan, store: SequenceStore, method: str, cfg: TrainConfig, hyper: Mapping[str, Any], seeds: int = 1,
                 rt: RuntimeOptions | None = None, progress: bool = True, original: str | None = None,
                 finish: Callable[[dict], None] | None = None, log: Callable[[str], None] | None = None,
                 history_options: HistoryOptions | None = None) -> list[dict]:
    """Every unit of ``plan`` for each seed (``cfg.seed`` + i), the finished ones read back from ``store``; one record per unit.

    ``history_options``: how each step replays and anchors to the earlier ones (default: both;
    :class:`ktmu.workflows.lineage.HistoryOptions`).

    ``finish(record)`` completes a run's record before it is written (provenance); ``log`` hears
    which run starts. Each record is as results.json holds it, whether run now or resumed.
    """
    rt = rt or RuntimeOptions()
    say = log or (lambda _: None)
    backbone = load_backbone(plan.model, device=rt.device, precision=rt.precision)
    chain = _Chain(plan, store, backbone, backbone.snapshot(), plan_evaluator(plan.first, backbone, rt, progress), rt, progress, original,
                   history_options=history_options or HistoryOptions())
    _base(chain, cfg.seed)
    seed_list = [cfg.seed + i for i in range(seeds)]
    out = []
    for index, unit in enumerate(plan.units):
        records = []
        for seed in seed_list:
            record = store.load(unit, seed)
            if record is None:
                say(f"{unit.folder} ({unit.label}), seed {seed} ...")
                record = _run_unit(chain, unit, seed, method, cfg, hyper, finish)
            records.append(record)
        out.append(_aggregate(chain, index, records, seed_list))
    return out


def sequence_results(plan: SequencePlan, records: Sequence[dict], method: str, seeds: int, seconds: float, provenance: dict,
                     table: tuple[list[str], list[list[str]]]) -> dict[str, Any]:
    """A sequence's results.json: the steps, the base model, one row per unit (its record, over seeds the aggregate) and ``table`` (head, rows)."""
    head, rows = table
    return {"steps": plan.steps, "goal": plan.first.request.goal, "method": method, "model": plan.model, "seeds": seeds,
            "base_model": records[0]["cumulative"]["base_model"],
            "rows": [{"label": u.label, "folder": u.folder, "request": u.request.describe(), "record": r} for u, r in zip(plan.units, records)],
            "table": {"head": head, "rows": rows}, "seconds": round(seconds, 1), "provenance": provenance}
