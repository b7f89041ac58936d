"""A checkpoint's history in a session: the ledger it carries, the base model it names, the cumulative scores and the ledger it passes on.

* Plan time, before any model loads: :func:`read_model_ledger` reads ``--model``'s ledger and checks
  that it names the architecture being loaded; :func:`ledger_request` resolves the request with the
  concepts forgotten before (``also_forgotten``) and refuses, unless ``--force``, a concept the
  ledger already holds.
* Open time: :func:`check_weights` checks that the loaded weights are the ones the ledger's last
  request wrote; :func:`open_history` loads the base model it names (or ``--original``), checks its
  sha256, and keeps its predictions (:class:`BasePredictions`, shared through ``bases`` by the steps of a sequence).
* Run time: :func:`cumulative_record`: the run against the base model (:mod:`ktmu.evaluation.cumulative`).
* Save time: :func:`save_checkpoint`: the weights with the ledger one request longer, in the
  safetensors metadata and the sidecar (:mod:`ktmu.engine.ledger`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ktmu.backbones import Backbone, load_backbone
from ktmu.concepts import Hierarchy, HierarchyError
from ktmu.data import ConceptDataset
from ktmu.engine.ledger import (BaseModel, Ledger, LedgerEntry, LedgerError, absolute_spec, architecture_of, checkpoint_of,
                                ledger_metadata, read_ledger, weights_sha256, write_sidecar)
from ktmu.engine.request import RequestError, UnlearningRequest, forget_set_indices
from ktmu.errors import UsageError
from ktmu.evaluation.cumulative import concept_accuracies, concept_scores, cumulative_summary
from ktmu.evaluation.protocol import UnlearningEvaluator
from ktmu.evaluation.records import recorded_scores
from ktmu.evaluation.zero_shot import WorldEval
from ktmu.registry import suggest

if TYPE_CHECKING:
    from ktmu.workflows.session import RuntimeOptions, Session


def state_sha256(backbone: Backbone) -> str:
    """:func:`ktmu.engine.ledger.weights_sha256` of what a checkpoint of ``backbone`` holds (its non-frozen state), one tensor at a time."""
    state = backbone.model.state_dict()
    return weights_sha256({k: v for k, v in state.items() if not k.startswith(backbone.frozen_prefixes)})


# ---- plan time ---------------------------------------------------------------------------------------
def read_model_ledger(spec: str) -> Ledger:
    """The ledger of the checkpoint ``spec`` loads (the empty ledger for a spec without one), checked against the spec's architecture."""
    ckpt = checkpoint_of(spec)
    ledger = read_ledger(ckpt) if ckpt is not None else Ledger()
    if ledger.base is not None and ledger.base.architecture != architecture_of(spec):
        raise LedgerError(f"the ledger of {ckpt} names base model {ledger.base.spec} ({ledger.base.architecture}), but --model {spec} "
                          f"loads it as {architecture_of(spec)}: load the checkpoint with the architecture it was trained as "
                          f"({ledger.base.architecture}:{ckpt}).")
    return ledger


def _earlier_concepts(ledger: Ledger, world: Hierarchy) -> tuple[str, ...]:
    """The concepts the ledger's requests on ``world`` forgot, each checked to be a concept of the loaded world."""
    names = ledger.concepts_in(world.name)
    for name in names:
        try:
            world.find(name)
        except HierarchyError as e:
            number = next(i for i, r in enumerate(ledger.requests, 1) if name in r.concepts and r.world == world.name)
            raise LedgerError(f"request {number} of the checkpoint's ledger forgot {name!r} in world {world.name!r}, which the loaded "
                              f"world {world.name!r} does not have ({e}): load the world that request ran on.") from None
    return names


def ledger_request(ledger: Ledger, world: Hierarchy, names: Sequence[str], goal: str, force: bool = False) -> UnlearningRequest:
    """The request for ``names`` on a model whose ledger is ``ledger``: earlier concepts are ``also_forgotten``.

    A concept the ledger already holds (a fine concept an earlier request forgot, by name or under a
    coarse concept, or the same coarse concept) is refused unless ``force``: training again on a
    model that no longer knows it would measure nothing.
    """
    request = UnlearningRequest.parse(world, names, goal, also_forgotten=_earlier_concepts(ledger, world))
    if force:
        return request
    for name in request.concepts:
        c = world.find(name)
        number = ledger.holding(world.name, c.name) if c.level == "fine" else next(
            (i for i, r in enumerate(ledger.requests, 1) if r.world == world.name and c.name in r.concepts), None)
        if number is not None:
            entry = ledger.requests[number - 1]
            raise RequestError(f"{c.name!r} is already forgotten: request {number} of the checkpoint's ledger ({entry.method}, "
                               f"seed {entry.seed}, forgetting {', '.join(entry.concepts)}) removed it. Add --force to forget it again, "
                               "or name a concept the model still knows.")
    return request


ANCHORS = ("base", "previous")  # the model whose outputs a later request's KL (and every reference term) holds the model to


@dataclass(frozen=True)
class HistoryOptions:
    """How a request on a checkpoint whose ledger holds earlier requests treats them (``--replay``, ``--anchor``).

    Both defaults were chosen on the embedded chain shirt -> coat -> sandal (nhl-kl, seed 0, step 3):
    cumulative Utility 95.19 / zero-shot 81.3 % with neither (the model drifts a little more with
    each step and nothing holds what it says of the earlier concepts' images), 95.21 / 87.6 with
    replay alone, 74.85 / 85.9 with the base anchor alone, 99.37 / 96.2 with both (docs/sequences.md).
    On a model no request changed neither does anything: a single request is what it always was.
    """

    replay: bool = True  # the earlier requests' forget images rejoin this request's forget set (redrawn from the ledger)
    anchor: str = "base"  # the reference outputs come from the ledger's base model ("previous": the model the request starts from)

    def __post_init__(self) -> None:
        if self.anchor not in ANCHORS:
            raise UsageError(f"unknown --anchor {self.anchor!r}.{suggest(self.anchor, list(ANCHORS))} Use one of {', '.join(ANCHORS)}.")

    def record(self, replayed: int) -> dict:
        """What results.json (``config.history``) and the ledger entry record: the settings and how many images were replayed."""
        return {"replay": self.replay, "replay_images": int(replayed), "anchor": self.anchor}


def replay_indices(ledger: Ledger, train: ConceptDataset) -> np.ndarray:
    """The train indices of the forget sets of the ledger's requests on ``train``'s world, redrawn from what each recorded.

    Each request's proxy forget set is a pure function of its concepts, goal, seed and
    ``max_per_concept`` (:func:`ktmu.engine.request.forget_set_indices`), so the images are exactly
    the ones it trained on. A redraw whose size is not the recorded ``forget_set_size`` (the train
    split changed since) is refused: replaying other images would hold the model to images no
    request saw.
    """
    world = train.hierarchy
    chosen = [np.empty(0, dtype=np.int64)]
    for number, entry in enumerate(ledger.requests, 1):
        if entry.world != world.name:
            continue
        request = UnlearningRequest.parse(world, entry.concepts, entry.goal)
        idx = forget_set_indices(request, train, entry.max_per_concept, entry.seed)
        if len(idx) != entry.forget_set_size:
            raise LedgerError(f"request {number} of the checkpoint's ledger trained on {entry.forget_set_size} forget images, but its forget set "
                              f"redrawn from this train split has {len(idx)}: the split is not the one it ran on. Load that split, or add "
                              "--no-replay to leave the earlier requests' images out.")
        chosen.append(idx)
    return np.unique(np.concatenate(chosen))


# ---- open time ---------------------------------------------------------------------------------------
@dataclass
class BasePredictions:
    """The base model's predictions on the world's test split and the zero-shot domains: what cumulative scores compare with."""

    model: BaseModel
    spec: str  # where it was loaded from (the ledger's spec, or --original)
    world: WorldEval
    others: dict[str, WorldEval]


@dataclass
class History:
    """What a session knows of its model's past: its ledger, and (when scored cumulatively) the base model and its scores."""

    ledger: Ledger = field(default_factory=Ledger)  # the starting model's ledger; its base is the model itself for a base model
    cumulative: UnlearningEvaluator | None = None  # the evaluator of every request together (request.together())
    base: BasePredictions | None = None
    base_scores: dict | None = None  # cumulative's scores of the base model
    requests: dict[str, int] = field(default_factory=dict)  # concept -> which request forgot it (1 = oldest; this run's = len + 1)


def check_weights(ledger: Ledger, backbone: Backbone, spec: str) -> None:
    """Refuse weights (loaded from ``spec``) that are not the ones the ledger's last request wrote; nothing to check for the empty ledger."""
    if ledger.empty:
        return
    sha = state_sha256(backbone)
    if sha != ledger.requests[-1].weights_sha256:
        raise LedgerError(f"the weights of {spec} are not the ones its ledger's last request wrote (sha256 {sha[:12]}..., the ledger says "
                          f"{ledger.requests[-1].weights_sha256[:12]}...): the ledger was copied from another checkpoint or the weights "
                          "were changed after it was written. Use the checkpoint ktmu wrote, or a model without a ledger.")


def check_original_spec(ledger: Ledger, original: str | None, spec: str) -> None:
    """Refuse an ``--original`` (the base model's spec) for a ``--model`` without a ledger, or of another architecture than the ledger's base."""
    if original is None:
        return
    if ledger.empty:
        raise UsageError(f"--original names the base model of --model's ledger, but --model {spec} carries none (no request changed it); "
                         "drop --original.")
    if architecture_of(original) != ledger.base.architecture:
        raise LedgerError(f"--original {original} is a {architecture_of(original)} model, but the ledger's base model {ledger.base.spec} is "
                          f"{ledger.base.architecture}; pass --original with the model the ledger's first request started from.")


def _checked_base(base: BaseModel, rt: RuntimeOptions, original: str | None = None) -> Backbone:
    """Load the base model (from its spec, or ``original``), refusing one whose sha256 is not the ledger's (:func:`check_original_spec` first)."""
    spec = original or base.spec
    backbone = load_backbone(spec, device=rt.device, precision=rt.precision)
    sha = state_sha256(backbone)
    if sha != base.sha256:
        said = f"--original {original} is not" if original is not None else f"the ledger's base model {spec} now loads weights that are not"
        raise LedgerError(f"{said} the model the ledger's first request started from (sha256 {sha[:12]}..., the ledger says "
                          f"{base.sha256[:12]}...). Pass --original SPEC with that model (e.g. the checkpoint it was loaded from).")
    return backbone


def _load_base(ledger: Ledger, original: str | None, rt: RuntimeOptions, evaluator: UnlearningEvaluator) -> BasePredictions:
    """Load the ledger's base (or ``original``), checked (:func:`_checked_base`), and predict with it."""
    world, others = evaluator.predict(_checked_base(ledger.base, rt, original))
    return BasePredictions(ledger.base, original or ledger.base.spec, world, others)


def load_base_backbone(base: BasePredictions, rt: RuntimeOptions) -> Backbone:
    """The base model of a session's :class:`History` loaded again (for the ledger audits), from where it was loaded before."""
    return _checked_base(base.model, rt, base.spec if base.spec != base.model.spec else None)


def open_history(plan_ledger: Ledger, spec: str, backbone: Backbone, request: UnlearningRequest, evaluator: UnlearningEvaluator | None,
                 rt: RuntimeOptions, cumulative: bool = False, original: str | None = None, bases: dict[str, BasePredictions] | None = None,
                 predictions: tuple[WorldEval, dict[str, WorldEval]] | None = None) -> History:
    """The session's :class:`History`, with the model ``spec`` loaded in ``backbone`` (checked by :func:`check_weights`), whose
    ``predictions`` by ``evaluator`` are given (default: the evaluator's ``last``).

    Scores go cumulative when the ledger holds requests on the request's world, or when
    ``cumulative`` asks (a sequence's first step: the base is the loaded model itself). ``bases``:
    base predictions by sha256, reused instead of loading a base model again.
    """
    ledger = plan_ledger if plan_ledger.base is not None else Ledger(BaseModel(absolute_spec(spec), architecture_of(spec), state_sha256(backbone)))
    earlier = ledger.concepts_in(request.world.name)
    if evaluator is None or not (earlier or cumulative):
        return History(ledger)
    bases = {} if bases is None else bases
    if ledger.base.sha256 not in bases:
        world, others = predictions or (evaluator.last, evaluator.last_others)
        loaded_is_base = ledger.empty  # no request changed the loaded model: it is its own base
        bases[ledger.base.sha256] = BasePredictions(ledger.base, spec, world, dict(others)) if loaded_is_base else _load_base(ledger, original, rt, evaluator)
    base = bases[ledger.base.sha256]
    together = evaluator.with_request(request.together())
    numbers = {c: i for i, r in enumerate(ledger.requests, 1) if r.world == request.world.name for c in r.concepts}
    numbers.update({c: len(ledger.requests) + 1 for c in request.concepts})
    return History(ledger, together, base, together.score(base.world, base.others), numbers)


# ---- run time ----------------------------------------------------------------------------------------
def cumulative_record(history: History, ev: WorldEval, others: dict[str, WorldEval], seed: int) -> dict:
    """The cumulative part of a run's record: every request together, the model with predictions ``ev``/``others`` against the base."""
    together = history.cumulative
    world, names = together.request.world, together.request.concepts
    scores = together.score(ev, others)
    base = history.base_scores
    concepts = concept_scores(concept_accuracies(history.base.world, world, names), concept_accuracies(ev, world, names), history.requests)
    return {"against": "base", "base_model": {"spec": history.base.spec, "sha256": history.base.model.sha256},
            "request": together.request.describe(), "seed": seed, "base": recorded_scores(base), "unlearned": recorded_scores(scores),
            **cumulative_summary(base, scores, together.request.goal, scores["n_fine"], scores["n_coarse"]), "concepts": concepts}


# ---- save time ---------------------------------------------------------------------------------------
def ledger_entry(session: Session, record: dict, sha256: str) -> LedgerEntry:
    """The ledger entry of the run ``record`` describes (one seed's), whose weights have ``sha256``."""
    from ktmu import __version__

    req = session.request
    return LedgerEntry(
        world=session.world.name, goal=req.goal, concepts=req.concepts, forget_fine=tuple(req.describe()["forget_fine"]),
        forget_coarse=tuple(req.describe()["forget_coarse"]), level=session.level, method=record["method"],
        hyperparameters=dict(record["config"]["method"]), train=_train_settings(record["config"]), seed=int(record["seed"]),
        forget_set_size=session.forget.own, max_per_concept=session.max_per_concept, forced=session.runtime.force,
        weights_sha256=sha256, commit=record["git_commit"], ktmu_version=__version__,
        date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )


def _train_settings(config: dict) -> dict:
    """A ledger entry's ``train``: the trainer settings that ran, and how the request kept the earlier ones (``history``) where it had any."""
    return {**config["train"], **({"history": config["history"]} if "history" in config else {})}


def save_checkpoint(session: Session, path: str | Path, record: dict, metadata: dict[str, str]) -> Ledger:
    """Write the backbone's weights to ``path`` with ``metadata`` and the session's ledger plus this run, then its sidecar; the new ledger."""
    ledger = session.history.ledger.append(ledger_entry(session, record, state_sha256(session.backbone)))
    session.backbone.save_weights(path, metadata={**metadata, **ledger_metadata(ledger)})
    write_sidecar(path, ledger)
    return ledger


def check_original(ledger: Ledger, original: Backbone, spec: str) -> None:
    """Refuse an ``--original`` that is neither the ledger's base model nor a model along it (the weights after an earlier request)."""
    if ledger.empty:
        return
    along = {ledger.base.sha256} | {r.weights_sha256 for r in ledger.requests[:-1]}
    if state_sha256(original) not in along:
        raise LedgerError(f"--original {spec} is not the base model the audited checkpoint's ledger names ({ledger.base.spec}) nor a model "
                          f"after one of its earlier requests: the audit would compare with a model the checkpoint never came from. "
                          f"Pass --original {ledger.base.spec}.")
