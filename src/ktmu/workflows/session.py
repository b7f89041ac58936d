"""Request -> forget set -> unlearning -> evaluation: the pieces ``ktmu unlearn``/``bench``/``demo`` share.

Everything that can be checked without the model is checked first (world, level, concepts, goal,
that the test split covers the request, the zero-shot domains, the ledger of a ``--model``
checkpoint); only then is the model loaded. A checkpoint whose ledger holds earlier requests
(:mod:`ktmu.engine.ledger`) keeps their concepts forgotten and is also scored against its base model
(:mod:`ktmu.workflows.lineage`).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Sequence

import torch

from ktmu.backbones import Backbone, load_backbone
from ktmu.concepts import Hierarchy
from ktmu.data import ConceptDataset, load_dataset
from ktmu.data.domains import DomainChoice, parse_zero_shot
from ktmu.evaluation.zero_shot import WorldEval
from ktmu.engine.forget_set import ForgetSet
from ktmu.engine.neighbours import NeighbourSet, neighbour_indices
from ktmu.methods import UnlearningMethod, build_method
from ktmu.evaluation.flags import flags_for, unknown_concept_reasons, weights_changed
from ktmu.evaluation.metrics import run_summary
from ktmu.evaluation.protocol import UnlearningEvaluator, check_test_covers_request
from ktmu.workflows.provenance import git_commit, versions
from ktmu.engine.request import MAX_PER_CONCEPT, RequestError, UnlearningRequest
from ktmu.errors import UsageError
from ktmu.evaluation.records import RunRecord
from ktmu.engine.config import TrainConfig
from ktmu.engine.reference import Reference, compute_reference, reads_reference
from ktmu.engine.trainer import unlearn
from ktmu.engine.ledger import Ledger
from ktmu.workflows.lineage import (BasePredictions, History, HistoryOptions, check_original_spec, check_weights, cumulative_record,
                                    ledger_request, load_base_backbone, open_history, read_model_ledger, replay_indices, save_checkpoint)

DEFAULT_LEVEL = "difficult"


@dataclass
class RuntimeOptions:
    """Where and how the model runs: device, precision, which weights train, memory savers, data workers."""

    device: str = "cpu"  # auto | cpu | cuda | cuda:N
    precision: str = "fp32"  # fp32 | bf16 | amp-fp16 (weights stay fp32; autocast for compute)
    train: str = "default"  # which weights train: default (the backbone's own choice), both, image, text, ... ('+'-joined)
    grad_checkpointing: bool = False  # recompute activations in backward: ViT-L/14 at batch 32 in 24 GB
    compile: str | None = None  # torch.compile mode of the encoders (ktmu.backbones.speed.COMPILE_MODES); None: eager, no compile wait
    force: bool = False  # run (and flag) a request whose original model does not know the concept
    workers: int = 0  # DataLoader worker processes for streamed images
    eval_batch_size: int = 256  # images per forward pass during evaluation
    image_pipeline: str = "host"  # host: preprocess wholly in the data workers, as ever; device: uint8 from them, normalised on the device


@dataclass
class Session:
    """A loaded model and world, ready to serve many unlearning runs from the same original."""

    backbone: Backbone
    world: Hierarchy
    request: UnlearningRequest
    forget: ForgetSet
    evaluator: UnlearningEvaluator | None  # None for sessions that must not see test data (tuning)
    original_state: dict[str, torch.Tensor]  # the trainable weights before unlearning: the one copy, on the device
    original_scores: dict | None
    max_per_concept: int
    seed: int
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)
    notes: list[str] = field(default_factory=list)  # said once to the user (e.g. the zero-shot default)
    _reference: Reference | None = None
    original_eval: WorldEval | None = None  # the original's per-image test predictions (for bootstrap intervals)
    history: History = field(default_factory=History)  # the model's ledger; with earlier requests, the base model and its scores
    history_options: HistoryOptions = field(default_factory=HistoryOptions)  # replay and anchor, for a model earlier requests changed
    level: str | None = None  # the world's named request the concepts came from, or None for --forget names
    neighbours: NeighbourSet | None = None  # the neighbour exemplars (--neighbours K > 0), drawn with the seed
    neighbour_k: int = 0  # K: neighbour images per neighbour concept (0: the study's retain-free protocol)
    neighbour_scope: str = "siblings"  # which kept concepts: the forgotten ones' siblings, or all

    def reference_for(self, method: UnlearningMethod) -> Reference | None:
        """The original's forget-set (and neighbour) outputs when ``method`` reads them (logits or features), else None."""
        return self.reference() if reads_reference(method) else None

    def reference(self) -> Reference:
        """The original model's forget-set and neighbour outputs, computed on first use and reused by every method."""
        if self._reference is None:
            self.backbone.load_trainable(self.original_state)
            source = self.backbone
            if self.anchored_to_base:  # --anchor base: the outputs the base model gave, before any request
                source = load_base_backbone(self.history.base, self.runtime)
            self._reference = compute_reference(source, self.forget, self.world, workers=self.runtime.workers, neighbours=self.neighbours)
        return self._reference

    @property
    def earlier_requests(self) -> bool:
        """True when the model's ledger holds requests on this world (the request has a history to replay and a base to anchor to)."""
        return bool(self.history.ledger.concepts_in(self.world.name))

    @property
    def anchored_to_base(self) -> bool:
        """True when the reference outputs come from the ledger's base model rather than the model the request starts from."""
        return self.history_options.anchor == "base" and self.earlier_requests and self.history.base is not None

    def history_record(self) -> dict | None:
        """``config.history`` of results.json for a request on a model earlier requests changed (None otherwise)."""
        return self.history_options.record(self.forget.replayed) if self.earlier_requests else None

    def neighbour_record(self) -> dict:
        """What results.json records of the neighbours: K, the scope and, when drawn, the seed, the count and the sha256 of the image list."""
        if self.neighbours is None:
            return {"k": 0, "scope": self.neighbour_scope}
        return self.neighbours.record()

    def draw_neighbours(self, train: ConceptDataset, seed: int) -> NeighbourSet | None:
        """This session's neighbour setting drawn with ``seed`` (None for K = 0)."""
        if self.neighbour_k == 0:
            return None
        return NeighbourSet.from_request(self.request, train, self.backbone.preprocess, self.neighbour_k, self.neighbour_scope, seed,
                                         self.max_per_concept)


def level_request(world: Hierarchy, level: str) -> list[str]:
    """The concepts of a named request (e.g. a difficulty level) defined in the world file."""
    if level not in world.levels:
        from ktmu.registry import suggest

        raise RequestError(f"world {world.name!r} has no level {level!r}.{suggest(level, list(world.levels))} Levels: {', '.join(world.levels) or 'none'}.")
    return list(world.levels[level])


@dataclass
class Plan:
    """Everything a session needs that can be checked before the model loads."""

    train: ConceptDataset
    test: ConceptDataset | None
    request: UnlearningRequest
    domains: list[DomainChoice]
    notes: list[str]
    ledger: Ledger = field(default_factory=Ledger)  # the --model checkpoint's ledger (empty for a model no request changed)
    level: str | None = None  # the world's named request the concepts came from, or None for --forget names
    cumulative: bool = False  # score against the base model even with an empty ledger (the first step of a sequence)


def plan_session(
    forget: Sequence[str] | None = None,
    goal: str = "fine",
    world: str = "fashion",
    model: str = "mini-clip",
    level: str = DEFAULT_LEVEL,
    evaluate: bool = True,
    data_options: dict | None = None,
    zero_shot: Sequence[str] | None = None,
    force: bool = False,
    ledger: Ledger | None = None,
    cumulative: bool = False,
) -> Plan:
    """Load the world's splits, resolve the request and the zero-shot domains; no model is touched.

    ``ledger``: the history of the model the request runs on (None: read from ``model``'s
    checkpoint); its concepts on this world stay forgotten, and naming one of them again needs
    ``force`` (:func:`ktmu.workflows.lineage.ledger_request`). ``cumulative``: see :class:`Plan`.
    """
    opts = data_options or {}
    train = load_dataset(world, "train", **opts)
    names = list(forget) if forget else level_request(train.hierarchy, level)
    ledger = read_model_ledger(model) if ledger is None else ledger
    request = ledger_request(ledger, train.hierarchy, names, goal, force)
    test, domains, notes = None, [], []
    others = ledger.other_worlds(train.hierarchy.name)
    if others:
        notes.append(f"note: the model's ledger also holds requests on world(s) {', '.join(others)}; this run on {train.hierarchy.name} "
                     "neither keeps their concepts among the forgotten classes nor scores them.")
    if evaluate:
        test = load_dataset(world, "test", **opts)
        check_test_covers_request(request, test)
        domains, note = parse_zero_shot(zero_shot, model, world)
        notes += [note] if note else []
    return Plan(train, test, request, domains, notes, ledger, None if forget else level, cumulative)


def open_session(
    forget: Sequence[str] | None = None,
    goal: str = "fine",
    world: str = "fashion",
    model: str = "mini-clip",
    level: str = DEFAULT_LEVEL,
    max_per_concept: int = MAX_PER_CONCEPT,
    seed: int = 0,
    progress: bool = True,
    evaluate: bool = True,
    data_options: dict | None = None,
    device: str = "cpu",
    zero_shot: Sequence[str] | None = None,
    runtime: RuntimeOptions | None = None,
    plan: Plan | None = None,
    backbone: Backbone | None = None,
    original: str | None = None,
    bases: dict[str, BasePredictions] | None = None,
    evaluator: UnlearningEvaluator | None = None,
    neighbours: int = 0,
    neighbours_scope: str = "siblings",
    history_options: HistoryOptions | None = None,
) -> Session:
    """Check the request, then load the model and score the original (``forget=None`` -> the level's request).

    ``evaluate=False`` loads no test data at all (for tuning on forget-set data only).
    ``data_options`` go to the world's dataset loader (e.g. ``{"root": DIR, "hierarchy": FILE}``
    for ``jsonl`` and ``imagefolder`` worlds). ``zero_shot``: ``--zero-shot`` entries (None = the
    default for the backbone, see :func:`ktmu.data.domains.parse_zero_shot`). ``neighbours``: K
    neighbour exemplars per neighbour concept (``neighbours_scope``; :mod:`ktmu.engine.neighbours`),
    checked before the model loads. ``history_options``: how the earlier requests of a checkpoint's
    ledger are replayed and anchored to (:class:`ktmu.workflows.lineage.HistoryOptions`; default: both).

    ``backbone``: the model ``model`` names, already loaded; ``evaluator``: one of an earlier session
    on the same plan's test split and domains (a sequence's next step reuses both). When the
    checkpoint's ledger holds earlier requests, the base model it names (or ``original``) is loaded
    once to score against; ``bases`` keeps base predictions for later sessions
    (:func:`ktmu.workflows.lineage.open_history`).
    """
    rt = runtime or RuntimeOptions(device=device)
    plan = plan or plan_session(forget, goal, world, model, level, evaluate, data_options, zero_shot, force=rt.force)
    check_original_spec(plan.ledger, original, model)
    neighbour_indices(plan.request, plan.train, neighbours, neighbours_scope, seed, max_per_concept)  # too many, or no siblings: say so now
    if backbone is None:
        backbone = load_backbone(model, device=rt.device, precision=rt.precision)
    backbone.set_trainable(rt.train)
    backbone.set_image_pipeline(rt.image_pipeline)
    if rt.grad_checkpointing:
        backbone.set_grad_checkpointing(True)
    check_weights(plan.ledger, backbone, model)
    if rt.compile:
        backbone.compile(rt.compile)
    hopts = history_options or HistoryOptions()
    replay = replay_indices(plan.ledger, plan.train) if hopts.replay else None
    forget_set = ForgetSet.from_request(plan.request, plan.train, backbone.preprocess, max_per_concept, seed, progress=progress, replay=replay)
    original_scores = None
    if not evaluate or plan.test is None:
        evaluator = None
    else:
        evaluator = evaluator.with_request(plan.request) if evaluator is not None else plan_evaluator(plan, backbone, rt, progress)
        original_scores = evaluator.evaluate(backbone)
        unknown = unknown_concept_reasons(original_scores, plan.request.goal)
        if unknown and not rt.force:
            raise RequestError("; ".join(unknown) + ". Unlearning a concept the model never knew measures nothing: "
                               "pick a concept it knows, or add --force to run anyway (the results are then flagged).")
    history = open_history(plan.ledger, model, backbone, plan.request, evaluator, rt, plan.cumulative, original, bases)
    session = Session(backbone, plan.train.hierarchy, plan.request, forget_set, evaluator, backbone.copy_trainable(), original_scores,
                      max_per_concept, seed, rt, list(plan.notes), original_eval=evaluator.last if evaluator is not None else None,
                      history=history, level=plan.level, neighbour_k=neighbours, neighbour_scope=neighbours_scope, history_options=hopts)
    session.neighbours = session.draw_neighbours(plan.train, seed)
    return session


def plan_evaluator(plan: Plan, backbone: Backbone, rt: RuntimeOptions, progress: bool = True) -> UnlearningEvaluator:
    """The evaluator of a plan's request: its test split and zero-shot domains, preprocessed for ``backbone``."""
    others = [(c.domain.open(c.root), c.domain.templates) for c in plan.domains]
    return UnlearningEvaluator(plan.request, plan.test, others, backbone.preprocess, progress=progress, batch_size=rt.eval_batch_size,
                               workers=rt.workers)


def reseed(session: Session, train: ConceptDataset, seed: int) -> Session:
    """The same session (model, original, evaluator) with the forget set drawn with another seed.

    Shares every loaded piece with ``session``; only the forget set, the neighbours, the seed and
    the cached reference outputs (which depend on both) are new.
    """
    if seed == session.seed:
        return session
    replay = replay_indices(session.history.ledger, train) if session.history_options.replay else None
    forget = ForgetSet.from_request(session.request, train, session.backbone.preprocess, session.max_per_concept, seed, progress=False,
                                    replay=replay)
    out = replace(session, forget=forget, seed=seed, _reference=None)
    out.neighbours = out.draw_neighbours(train, seed)
    return out


def run_method(session: Session, method: str, train_cfg: TrainConfig | None = None, progress: bool = True, **hyper) -> dict:
    """Unlearn with ``method`` from the session's original weights; returns the results.json record."""
    if session.evaluator is None or session.original_scores is None:
        raise UsageError("this session was opened with evaluate=False; open one with evaluate=True to score methods.")
    m = build_method(method, **hyper)
    cfg = train_cfg or TrainConfig(seed=session.seed, workers=session.runtime.workers)
    reference = session.reference_for(m)
    session.backbone.load_trainable(session.original_state)
    t0 = time.time()
    log = unlearn(session.backbone, m, session.forget, session.world, cfg, progress=progress, original=session.original_state, reference=reference,
                  neighbours=session.neighbours)
    train_seconds = time.time() - t0
    scores = session.evaluator.evaluate(session.backbone)
    goal = session.request.goal
    summary = run_summary(session.original_scores, scores, goal, scores["n_fine"], scores["n_coarse"])
    change = weights_changed(session.original_state, dict(session.backbone.named_trainable_parameters()))
    flags = flags_for(session.original_scores, scores, goal, change)
    record: dict = RunRecord(
        method=m.name,
        request={**session.request.describe(), "forget_set_size": session.forget.own, "max_per_concept": session.max_per_concept,
                 **({"replay_images": session.forget.replayed} if session.forget.replayed else {})},
        original=session.original_scores,
        unlearned=scores,
        summary=summary,
        per_class_fine={"original": session.original_scores["per_class_fine"], "unlearned": scores["per_class_fine"]},
        config={
            "model": session.backbone.name,
            "method": m.hyperparameters(),
            "train": {**asdict(cfg), "lr": log.lr, "epochs": len(log.epochs), "selection": log.selection},
            "runtime": asdict(session.runtime),
            "selected_epoch": log.selected_epoch,
            "selection_rule": log.selection_rule,
            "epochs": log.epochs,
            "train_seconds": round(train_seconds, 2),
            "seconds": log.seconds,
            **({"history": session.history_record()} if session.earlier_requests else {}),
        },
        seed=session.seed,
        git_commit=git_commit(),
        versions=versions(),
        flags=flags.record(),
        neighbours=session.neighbour_record(),
    ).to_json()
    if session.history.cumulative is not None:  # a model earlier requests changed: this run against the base model too
        record["cumulative"] = cumulative_record(session.history, session.evaluator.last, session.evaluator.last_others, session.seed)
    return record


def save_unlearned(session: Session, out_dir: str | Path, record: dict) -> Path:
    """Write the current (unlearned) weights as safetensors next to results.json, with their ledger (also in ``record["ledger"]``)."""
    path = Path(out_dir) / "model.safetensors"
    ledger = save_checkpoint(session, path, record, {"format": "ktmu-unlearned", "method": record["method"],
                                                     "concepts": ",".join(session.request.concepts)})
    record["ledger"] = ledger.to_json()
    return path
