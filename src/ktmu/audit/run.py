"""Run the knowledge audit on models of one architecture and build its record.

For each model (the original, the audited one, optionally an oracle that never learned the
concept) :meth:`Auditor.measure` runs every probe on the weights the backbone holds and leaves
them as it found them; :meth:`Auditor.result` then compares the measurements (recovery, sibling
damage, worst-case Quality and gaps to the oracle need the original's or the oracle's numbers).

Probes, all on the world's test split (D_f = test images of the forgotten fine concepts):

* ``name``: zero-shot accuracies with the canonical names and the training-template ensemble
  (D_f fine here is the study's D_f fine accuracy);
* ``aliases``: :func:`.names.alias_probe` with the held-out names (headline) and the method-visible aliases;
* ``templates``: :func:`.names.template_probe` with the training and the held-out templates;
* ``linear_probe``: :func:`.linear_probe.fit_linear_probe` on frozen image features, trained on a
  fixed budget per class of train images outside the proxy forget set (the auditor's own
  images: a method that overfitted the 150 images it saw must not shape the probe);
* ``relearn``: :mod:`.relearn` from the model's weights: few-shot fine-tuning on unseen images of
  the forgotten concepts (with kept-concept ones) and, separately, on kept-concept images only;
  recovery is measured against the original's D_f fine accuracy;
* ``mass``: :func:`.mass.forgotten_mass` of the D_f test predictions;
* ``sibling_damage``: :func:`.similarity.sibling_damage` against the original, in the original's
  text-feature space;
* ``worst_case``: :func:`.worst_case.worst_case_quality` over the name, worst held-out alias, worst
  held-out template and probe recall, next to the study's Quality;
* ``oracle_gap`` (with an oracle): this model minus the oracle, so > 0 means more of the concept
  left than in a model that never learned it.

A probe that cannot run is ``{"skipped": reason}``. NaN is written as null.

**Seeds.** ``AuditConfig.seed`` is the unlearning run's seed (which proxy forget set the probe
and the attack must avoid); ``draw_seed`` (default: ``seed``) draws the audit's own data: the
probe's train images, the relearning images and their order. :meth:`Auditor.reseeded` gives an
auditor for another seed. The probes that draw nothing (the study's scores, names, aliases,
templates) are measured once per set of weights and reused (``measure(..., reuse=...)``); the
linear probe and the relearning attacks run again under each seed, *also for the original*, so
that every comparison in a seed's record (worst-case Quality, recovery, gaps) pairs models
measured with the same draws. :func:`audit_over_seeds` audits fixed models under several draw
seeds (``ktmu audit --seeds N``); ``ktmu unlearn/bench --audit --seeds N`` audit each seed's
unlearned model with that seed's auditor. Each measurement keeps its models' per-image D_f hits
in memory (:class:`.seeds.ProbeHits`) for the mean ± 95 % interval over seeds (:mod:`.seeds`).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Callable, Mapping

import numpy as np
import torch

from ktmu.backbones import Backbone
from ktmu.backbones.encode import class_text_features, embed_source
from ktmu.data import ConceptDataset
from ktmu.data.stream import image_source
from ktmu.evaluation.metrics import relative_drop, summarize, summarize_chance_aware
from ktmu.prompts import AUDIT_TEMPLATES, eval_templates, train_templates
from ktmu.evaluation.protocol import UnlearningEvaluator
from ktmu.engine.request import MAX_PER_CONCEPT, UnlearningRequest, forget_set_indices
from ktmu.audit.linear_probe import ProbeResult, fit_linear_probe, probe_train_indices
from ktmu.audit.mass import forgotten_mass
from ktmu.audit.names import alias_hits, alias_record, is_skipped, percent, predict, skipped, template_hits, template_record
from ktmu.audit.recovery import curve_gap, relearning_recovery
from ktmu.audit.relearn import RelearnConfig, relearn_indices, relearning_curve
from ktmu.audit.seeds import ProbeHits, WorstHits, aggregate_audits, audit_replicates
from ktmu.audit.similarity import sibling_damage
from ktmu.audit.worst_case import worst_case_quality
from ktmu.errors import KtmuError
from ktmu.outputs import json_ready

if TYPE_CHECKING:
    from ktmu.runs.session import Session

ROLES = ("original", "unlearned", "oracle")  # record order: the reference first


class AuditError(KtmuError, ValueError):
    """An audit that cannot be run as asked; the message says what to change."""


@dataclass(frozen=True)
class AuditConfig:
    """What every model audited in one run is measured with (fixed, so models compare)."""

    probe_per_class: int = 100  # linear-probe train images per fine class; why 100: ktmu.audit.linear_probe
    relearn: RelearnConfig = field(default_factory=RelearnConfig)
    max_per_concept: int = MAX_PER_CONCEPT  # the proxy forget set the unlearning used: excluded from the probe and the attack
    seed: int = 0  # the unlearning run's seed (which forget set), and the audit's own draws unless draw_seed is given
    draw_seed: int | None = None  # the audit's own draws (probe images, relearning images); None: seed

    def __post_init__(self) -> None:
        if self.probe_per_class < 1:
            raise AuditError(f"the linear probe needs at least 1 train image per class, got {self.probe_per_class}.")
        if self.max_per_concept < 1:
            raise AuditError("--max-per-concept must be at least 1.")

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


@dataclass
class Measurement:
    """Every probe's raw result for one model."""

    role: str
    spec: str
    name: dict  # canonical-name accuracies: d_f_fine, d_f_coarse, d_r_fine, d_r_coarse, per_class_fine
    fine_pred: torch.Tensor  # (N_test,) canonical zero-shot fine predictions
    per_class: np.ndarray  # (K,) canonical fine accuracy per class
    text_features: torch.Tensor  # (K, D) canonical class text features (template ensemble)
    aliases: dict
    templates: dict
    probe: ProbeResult | str  # or the reason it was skipped
    relearn: dict[str, tuple[list[float], dict] | str]  # part -> (curve, after-attack scores), or the reason it was skipped
    study: dict | None = None  # the study's evaluation (UnlearningEvaluator.evaluate), when measured
    seconds: dict[str, float] = field(default_factory=dict)
    features: torch.Tensor | None = None  # (N_test, D) test image features: another seed's linear probe reuses them
    hits: ProbeHits | None = None  # per-image D_f hits of the headline probes, for intervals over seeds (never written out)


class _DfRecorder:
    """D_f fine accuracy of the current weights for a relearning curve, keeping the first and the last call's per-image hits."""

    def __init__(self, auditor: "Auditor", backbone: Backbone) -> None:
        self.auditor, self.backbone = auditor, backbone
        self.first: WorstHits | None = None
        self.last: WorstHits | None = None

    def __call__(self) -> float:
        hits = self.auditor.d_f_hits(self.backbone)
        self.last = WorstHits.of(hits.numpy())
        if self.first is None:
            self.first = self.last
        return percent(hits)


class Auditor:
    """Audits any number of models of one architecture for one request; data choices are made once."""

    def __init__(self, request: UnlearningRequest, train: ConceptDataset, evaluator: UnlearningEvaluator, preprocess,
                 cfg: AuditConfig = AuditConfig(), workers: int = 0, batch_size: int = 256, progress: bool = False,
                 force: bool = False) -> None:
        self.request, self.train, self.evaluator, self.cfg, self.preprocess = request, train, evaluator, cfg, preprocess
        self.world = request.world
        self.workers, self.batch_size, self.progress, self.force = workers, batch_size, progress, force
        self.test = evaluator.world  # the test split's ZeroShotEvaluator (cached pixels for small worlds)
        self.labels = self.test.fine_labels
        self.forget_fine = list(request.forget_fine)
        self.d_f = torch.isin(self.labels, torch.as_tensor(self.forget_fine, dtype=self.labels.dtype))
        self.d_f_positions = np.flatnonzero(self.d_f.numpy())
        d_f_labels = self.labels[self.d_f].numpy()
        self.strata = [np.flatnonzero(d_f_labels == c) for c in self.forget_fine]  # each concept's D_f images: the bootstrap's strata
        forget_idx = forget_set_indices(request, train, cfg.max_per_concept, cfg.seed)
        self.forget_set_size = len(forget_idx)
        self.probe_source, self.probe_reason = self._probe_source(forget_idx, preprocess)
        self.relearn_sources: dict[str, object] = {}
        for part in ("forget", "retain"):
            idx, reason = relearn_indices(request, train, part, cfg.relearn.images_per_concept, cfg.max_per_concept, cfg.seed,
                                          draw_seed=cfg.draws)
            self.relearn_sources[part] = image_source(train, preprocess, idx) if idx is not None else reason
        self._original: Measurement | None = None
        self._shared: dict[str, Measurement] = {}  # the original's first measurement, shared by reseeded auditors

    def reseeded(self, seed: int | None = None, draw_seed: int | None = None) -> "Auditor":
        """This auditor for another seed: the unlearning run's ``seed`` (default: this one's) and the audit's ``draw_seed`` (default: ``seed``).

        The relearning order follows the draw seed. The original's seed-free probes, once measured,
        are shared with this auditor (see the module doc).
        """
        seed = self.cfg.seed if seed is None else seed
        draws = seed if draw_seed is None else draw_seed
        cfg = replace(self.cfg, seed=seed, draw_seed=None if draws == seed else draws, relearn=replace(self.cfg.relearn, seed=draws))
        other = Auditor(self.request, self.train, self.evaluator, self.preprocess, cfg, self.workers, self.batch_size, self.progress, self.force)
        other._shared = self._shared
        return other

    @classmethod
    def for_session(cls, session: Session, cfg: AuditConfig | None = None) -> "Auditor":
        """An auditor for the unlearning runs of a session: its request, forget set, test split and runtime."""
        if session.evaluator is None:
            raise AuditError("this session was opened without test data (evaluate=False); the audit measures on the test split.")
        cfg = replace(cfg or AuditConfig(), max_per_concept=session.max_per_concept, seed=session.seed)
        rt = session.runtime
        return cls(session.request, session.forget.source.dataset, session.evaluator, session.backbone.preprocess, cfg,
                   workers=rt.workers, batch_size=rt.eval_batch_size, force=True)  # the session already checked the concept is known

    # ---- data chosen once -------------------------------------------------------------------------
    def _probe_source(self, forget_idx: np.ndarray, preprocess):
        labels = np.asarray(self.train.fine_labels)
        pool = np.setdiff1d(np.arange(len(labels)), forget_idx)
        idx = pool[probe_train_indices(labels[pool], self.cfg.probe_per_class, self.cfg.draws)] if len(pool) else pool
        present = set(np.unique(labels[idx]).tolist())
        missing = [self.world.fine[c].name for c in self.forget_fine if c not in present]
        if missing:
            return None, (f"the train split has no image of {', '.join(map(repr, missing))} outside the proxy forget set, "
                          "so a probe could not learn the concept from the auditor's own images")
        if len(present) < 2:
            return None, "a linear probe needs train images of at least two fine classes"
        return image_source(self.train, preprocess, idx), ""

    # ---- one model ----------------------------------------------------------------------------------
    def _embed(self, backbone: Backbone, source, positions=None, desc: str = "embed") -> torch.Tensor:
        return embed_source(backbone, source, positions, batch_size=self.batch_size, workers=self.workers, progress=self.progress, desc=desc)

    def d_f_hits(self, backbone: Backbone) -> torch.Tensor:
        """Per-image D_f test fine hits of the current weights (canonical names, training-template ensemble)."""
        feats = self._embed(backbone, self.test.source, self.d_f_positions, "embed D_f")
        text = class_text_features(backbone, self.world.fine_names, eval_templates(self.world)).float().cpu()
        return predict(feats, text) == self.labels[self.d_f]

    def d_f_fine(self, backbone: Backbone) -> float:
        """D_f test fine accuracy of the current weights (canonical names, training-template ensemble)."""
        return percent(self.d_f_hits(backbone))

    def d_r_fine(self, backbone: Backbone) -> dict:
        """What a relearning attack did to the kept concepts: D_r test fine accuracy of the current weights."""
        feats = self._embed(backbone, self.test.source, np.flatnonzero(~self.d_f.numpy()), "embed D_r")
        text = class_text_features(backbone, self.world.fine_names, eval_templates(self.world)).float().cpu()
        return {"d_r_fine": percent(predict(feats, text) == self.labels[~self.d_f])}

    def measure(self, backbone: Backbone, role: str, spec: str | None = None, study: bool = True,
                reuse: Measurement | None = None) -> Measurement:
        """Run every probe on ``backbone``'s current weights (restored after relearning); ``study`` also runs the study's evaluation.

        ``reuse``: a measurement of the *same weights* (under other draws, e.g. another seed's
        auditor): its probes that draw nothing (study, names, aliases, templates) are taken as they
        are, and only the linear probe and the relearning attacks run again. For the ``original``
        role with ``study`` the original must know the concept (as ``ktmu unlearn`` requires)
        unless the auditor was built with ``force``.
        """
        seconds: dict[str, float] = {}
        clock = time.perf_counter()

        def lap(key: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            seconds[key] = round(now - clock, 3)
            clock = now

        if reuse is not None and reuse.features is not None:
            fixed = reuse
        else:
            fixed = self._seed_free(backbone, role, spec, study, lap)
        feats, labels, world = fixed.features, self.labels, self.world
        probe: ProbeResult | str = self.probe_reason
        if self.probe_source is not None:
            train_feats = self._embed(backbone, self.probe_source, desc="embed probe images")
            probe = fit_linear_probe(train_feats, self.probe_source.fine, feats, labels, self.forget_fine, len(world.fine),
                                     per_class=self.cfg.probe_per_class, seed=self.cfg.draws)
        lap("linear_probe")
        relearn: dict[str, tuple[list[float], dict] | str] = {}
        recorded: dict[str, _DfRecorder] = {}
        for part, source in self.relearn_sources.items():
            if isinstance(source, str):
                relearn[part] = source
                continue
            recorded[part] = _DfRecorder(self, backbone)
            relearn[part] = relearning_curve(backbone, source, world.fine_names, recorded[part], self.cfg.relearn, self.workers,
                                             final=lambda: self.d_r_fine(backbone))
        lap("relearn")
        seconds["total"] = round(sum(seconds.values()), 3)
        d_f = self.d_f.numpy()
        hits = replace(fixed.hits, linear_probe=WorstHits.of(probe.predictions[d_f] == labels[self.d_f].numpy()) if isinstance(probe, ProbeResult) else None,
                       relearn_before=recorded["forget"].first if "forget" in recorded else None,
                       relearn_after=recorded["forget"].last if "forget" in recorded else None)
        return replace(fixed, role=role, spec=spec or backbone.name, probe=probe, relearn=relearn, seconds=seconds, hits=hits)

    def _seed_free(self, backbone: Backbone, role: str, spec: str | None, study: bool, lap: Callable[[str], None]) -> Measurement:
        """The probes that draw nothing (study, names, aliases, templates), with the test features and their D_f hits."""
        scores = None
        if study:
            scores = self.evaluator.evaluate(backbone)
            lap("study")
            if role == "original" and not self.force:
                self._check_known(scores)
        world, labels, d_f = self.world, self.labels, self.d_f
        feats = self.test.features(backbone)
        text = class_text_features(backbone, world.fine_names, eval_templates(world)).float().cpu()
        pred = predict(feats, text)
        coarse_pred = predict(feats, class_text_features(backbone, world.coarse_names, eval_templates(world)).float().cpu())
        coarse = self.test.coarse_labels
        hit, coarse_hit = pred == labels, coarse_pred == coarse
        per_class = np.array([percent(hit[labels == i]) for i in range(len(world.fine))])
        name = {"d_f_fine": percent(hit[d_f]), "d_f_coarse": percent(coarse_hit[d_f]),
                "d_r_fine": percent(hit[~d_f]), "d_r_coarse": percent(coarse_hit[~d_f]),
                "per_class_fine": dict(zip(world.fine_names, per_class.tolist()))}
        lap("name")
        swaps = {kind: alias_hits(backbone, feats, labels, world, self.forget_fine, kind) for kind in ("held_out", "method_visible")}
        aliases = {kind: alias_record(h, labels, world, self.forget_fine, kind) for kind, h in swaps.items()}
        lap("aliases")
        per_template = {"training": train_templates(world), "held_out": AUDIT_TEMPLATES}
        template_table = {kind: template_hits(backbone, feats, labels, world, ts) for kind, ts in per_template.items()}
        templates = {kind: template_record(template_table[kind], labels, self.forget_fine, ts) for kind, ts in per_template.items()}
        lap("templates")
        held_out = swaps["held_out"]
        alias_hit = None
        if not is_skipped(aliases["held_out"]):
            positions = dict(zip(self.forget_fine, self.strata))
            alias_hit = WorstHits(tuple(positions[c] for c in held_out), tuple(h[d_f].numpy()[positions[c]] for c, (_, h) in held_out.items()))
        hits = ProbeHits(name=WorstHits.of(hit[d_f].numpy()), held_out_alias=alias_hit,
                         held_out_template=None if is_skipped(templates["held_out"]) else WorstHits.columns(template_table["held_out"][d_f].numpy()))
        return Measurement(role, spec or backbone.name, name, pred, per_class, text, aliases, templates, self.probe_reason, {}, scores,
                           features=feats, hits=hits)

    def _check_known(self, scores: dict) -> None:
        from ktmu.runs.session import flags_for

        knows = flags_for(scores, scores, self.request.goal, weight_change=float("nan"))
        if not knows.original_knows_concept:
            reasons = "; ".join(r for r in knows.reasons if not r.startswith("the unlearned"))
            raise AuditError(f"{reasons}. Auditing the forgetting of a concept the original never knew measures nothing: "
                             "pick a concept it knows, or add --force to run anyway.")

    def original(self, backbone: Backbone, state: Mapping[str, torch.Tensor], spec: str | None = None) -> Measurement:
        """The original's measurement, made once per auditor: ``state`` (trainable weights) is loaded for it, then the backbone's own weights return.

        A reseeded auditor reuses the first one's seed-free probes of the original (see the module doc).
        """
        if self._original is None:
            current = backbone.copy_trainable()
            backbone.load_trainable(state)
            try:
                self._original = self.measure(backbone, "original", spec, study=False, reuse=self._shared.get("original"))
            finally:
                backbone.load_trainable(current)
            self._shared.setdefault("original", self._original)
        return self._original

    def measure_session_run(self, session: Session, label: str | None = None) -> dict[str, Measurement]:
        """The original's and the unlearned model's measurements for the weights the session's backbone holds now (an unlearning run's)."""
        original = self.original(session.backbone, session.original_state, session.backbone.name)
        return {"original": original, "unlearned": self.measure(session.backbone, "unlearned", label or session.backbone.name, study=False)}

    def audit_session_run(self, session: Session, label: str | None = None) -> dict:
        """Audit the weights the session's backbone holds now (an unlearning run's) against the session's original."""
        return self.result(self.measure_session_run(session, label))

    def replicates(self, measurements: Mapping[str, Measurement]) -> dict[str, dict[str, np.ndarray]]:
        """Role -> headline key -> bootstrap replicates of the D_f test images, seeded with the draw seed (:func:`.seeds.audit_replicates`)."""
        if "original" not in measurements:
            raise AuditError("the audit compares against the original model: measure it first.")
        original = _probe_accuracies(measurements["original"])
        wc = {role: [k for k in original if k in _probe_accuracies(m)] for role, m in measurements.items()}
        return audit_replicates({role: m.hits for role, m in measurements.items()}, self.strata, wc, seed=self.cfg.draws)

    # ---- records ---------------------------------------------------------------------------------------
    def result(self, measurements: Mapping[str, Measurement]) -> dict:
        """The audit record: request, settings and one record per model (``original`` required, ``oracle`` optional)."""
        if "original" not in measurements:
            raise AuditError("the audit compares against the original model: measure it first.")
        original, oracle = measurements["original"], measurements.get("oracle")
        order = [r for r in ROLES if r in measurements] + [r for r in measurements if r not in ROLES]
        models = {r: self.record(measurements[r], original, oracle) for r in order}
        return json_ready({"request": self.request_record(), "settings": self.settings_record(), "models": models,
                      "seconds": {r: m.seconds.get("total") for r, m in measurements.items()}})

    def request_record(self) -> dict:
        return {**self.request.describe(), "forget_set_size": self.forget_set_size, "max_per_concept": self.cfg.max_per_concept,
                "seed": self.cfg.seed, **({"draw_seed": self.cfg.draw_seed} if self.cfg.draw_seed is not None else {}),
                "d_f_test_images": len(self.d_f_positions), "test_images": len(self.labels)}

    def _relearn_size(self, part: str) -> int:
        source = self.relearn_sources[part]
        return 0 if isinstance(source, str) else len(source)

    def settings_record(self) -> dict:
        sizes = {part: self._relearn_size(part) for part in self.relearn_sources}
        return {"probe_per_class": self.cfg.probe_per_class, "probe_train_images": 0 if self.probe_source is None else len(self.probe_source),
                "probe_excludes_forget_set": True, "relearn": asdict(self.cfg.relearn), "relearn_images": sizes,
                "templates": list(train_templates(self.world)), "audit_templates": list(AUDIT_TEMPLATES)}

    def record(self, m: Measurement, original: Measurement, oracle: Measurement | None = None) -> dict:
        """One model's record; comparisons are against ``original`` (and ``oracle`` when given)."""
        world, forget = self.world, self.forget_fine
        f2c = world.fine_to_coarse()
        mass = forgotten_mass(m.fine_pred[self.d_f], self.labels[self.d_f], f2c, forget)
        damage = sibling_damage(original.per_class, m.per_class, original.text_features, forget, f2c, world.fine_names)
        rec: dict = {
            "role": m.role,
            "spec": m.spec,
            "name": m.name,
            "aliases": m.aliases,
            "templates": m.templates,
            "linear_probe": _probe_record(m.probe, world.fine_names, self.cfg.probe_per_class),
            "relearn": {part: _relearn_record(run, original.name["d_f_fine"], self.cfg.relearn, self._relearn_size(part))
                        for part, run in m.relearn.items()},
            "mass": asdict(mass),
            "sibling_damage": {"spearman": damage.spearman, "p_value": damage.p_value, **({"reason": damage.reason} if damage.reason else {}),
                               "rows": [asdict(r) for r in damage.rows]},
            "worst_case": _worst_case(m, original),
            "seconds": m.seconds,
        }
        if m.study is not None:
            rec["study"] = _study_record(m.study, original.study, self.request.goal)
        if oracle is not None and m is not oracle:
            rec["oracle_gap"] = _oracle_gap(m, oracle, mass, forgotten_mass(oracle.fine_pred[self.d_f], self.labels[self.d_f], f2c, forget))
        return rec


def measure_models(auditor: Auditor, models: Mapping[str, tuple[str, Backbone]], log: Callable[[str], None] | None = None,
                   reuse: Mapping[str, Measurement] | None = None) -> dict[str, Measurement]:
    """Measure ``models`` (role -> (spec, backbone); ``original`` required, measured first); ``reuse``: role -> an earlier measurement of the same weights."""
    if "original" not in models:
        raise AuditError("the audit needs the original model (--original SPEC).")
    measured = {}
    for role in [r for r in ROLES if r in models] + [r for r in models if r not in ROLES]:
        spec, backbone = models[role]
        if log:
            log(f"auditing the {role} model ({spec}) ...")
        measured[role] = auditor.measure(backbone, role, spec, reuse=(reuse or {}).get(role))
    return measured


def audit_models(auditor: Auditor, models: Mapping[str, tuple[str, Backbone]], log: Callable[[str], None] | None = None) -> dict:
    """Measure ``models`` (role -> (spec, backbone); ``original`` required, measured first) and return the audit record."""
    return auditor.result(measure_models(auditor, models, log))


def audit_over_seeds(auditor: Auditor, models: Mapping[str, tuple[str, Backbone]], seeds: int,
                     log: Callable[[str], None] | None = None) -> dict:
    """Audit fixed ``models`` under ``seeds`` draw seeds (the auditor's, +1, ...): one record, or the mean ± interval of several.

    The unlearning run's seed (the forget set the draws avoid) stays the auditor's; each seed
    redraws the probe's train images and the relearning images and order. Over several seeds the
    record is :func:`.seeds.aggregate_audits` of the per-seed records (kept under ``seeds``).
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


# ---- record parts (pure) ----------------------------------------------------------------------------
def _probe_record(p: ProbeResult | str, names: list[str], budget: int) -> dict:
    if isinstance(p, str):
        return skipped(p)
    return {"forgotten_recall": p.forgotten_recall, "kept_accuracy": p.kept_accuracy, "train_size": p.train_size,
            "per_class_budget": budget, "per_class_recall": dict(zip(names, p.recall.tolist()))}


def _relearn_record(run: tuple[list[float], dict] | str, original_d_f_fine: float, cfg: RelearnConfig, images: int) -> dict:
    if isinstance(run, str):
        return skipped(run)
    curve, final = run
    rec = relearning_recovery(original_d_f_fine, curve[0], curve[-1])
    out = {"steps": list(cfg.steps), "curve": curve, "after": curve[-1], "recovery": rec.value,
           **({"recovery_reason": rec.reason} if rec.reason else {}), "images": images, **{f"{k}_after": v for k, v in final.items()}}
    return out


def _probe_accuracies(m: Measurement) -> dict[str, float]:
    """The D_f accuracy under each probe that worst-case Quality takes the minimum over (left out when not measured)."""
    out = {"name": m.name["d_f_fine"]}
    if not is_skipped(m.aliases["held_out"]):
        out["held_out_alias"] = m.aliases["held_out"]["worst"]
    if not is_skipped(m.templates["held_out"]):
        out["held_out_template"] = m.templates["held_out"]["worst"]
    if isinstance(m.probe, ProbeResult):
        out["linear_probe"] = m.probe.forgotten_recall
    return {k: v for k, v in out.items() if not math.isnan(v)}


def _worst_case(m: Measurement, original: Measurement) -> dict:
    mine, ref = _probe_accuracies(m), _probe_accuracies(original)
    common = [k for k in ref if k in mine]
    wc = worst_case_quality({k: ref[k] for k in common}, {k: mine[k] for k in common})
    return {"quality": wc.quality, "probe": wc.probe, "per_probe": wc.per_probe, "accuracies": {k: mine[k] for k in common},
            "study_quality": relative_drop(original.name["d_f_fine"], m.name["d_f_fine"])}


def _study_record(scores: dict, original: dict | None, goal: str) -> dict:
    from ktmu.evaluation.records import recorded_scores

    out: dict = {"scores": recorded_scores(scores)}
    if original is not None and scores is not original:
        out["summary"] = {**summarize(original, scores, goal),
                          **summarize_chance_aware(original, scores, goal, scores["n_fine"], scores["n_coarse"])}
    return out


def _oracle_gap(m: Measurement, oracle: Measurement, mass, oracle_mass) -> dict:
    """This model minus the oracle (> 0: more of the concept left than in a model that never learned it)."""
    gap: dict = {"d_f_fine": m.name["d_f_fine"] - oracle.name["d_f_fine"]}
    for kind in ("held_out", "method_visible"):
        a, b = m.aliases[kind], oracle.aliases[kind]
        if not is_skipped(a) and not is_skipped(b):
            gap[f"{kind}_alias"] = a["worst"] - b["worst"]
    a, b = m.templates["held_out"], oracle.templates["held_out"]
    gap["held_out_template"] = a["worst"] - b["worst"]
    if isinstance(m.probe, ProbeResult) and isinstance(oracle.probe, ProbeResult):
        gap["linear_probe_recall"] = m.probe.forgotten_recall - oracle.probe.forgotten_recall
    relearn = {}
    for part, run in m.relearn.items():
        other = oracle.relearn.get(part)
        if isinstance(run, str) or isinstance(other, str) or other is None:
            relearn[part] = skipped("no relearning curve for this model or the oracle")
        else:
            relearn[part] = {"curve_gap": curve_gap(run[0], other[0]), "after": run[0][-1] - other[0][-1]}
    gap["relearn"] = relearn
    gap["mass"] = {k: getattr(mass, k) - getattr(oracle_mass, k) for k in ("forgotten", "sibling", "other")}
    return gap
