"""Run the knowledge audit on models of one architecture and build its record.

For each model (the original, the audited one, optionally an oracle that never learned the
concept) :meth:`Auditor.measure` runs every probe on the weights the backbone holds and leaves
them as it found them; :meth:`Auditor.result` then compares the measurements (recovery, sibling
damage, worst-case Quality, erasure, indistinguishability and gaps to the oracle need the
original's or the oracle's numbers).

Probes, all on the world's test split (D_f = test images of the forgotten fine concepts):

* ``name``: zero-shot accuracies with the canonical names and the training-template ensemble
  (D_f fine here is the study's D_f fine accuracy);
* ``aliases``: :func:`.names.alias_probe` with the held-out names (headline) and the method-visible aliases;
* ``templates``: :func:`.names.template_probe` with the training and the held-out templates;
* ``linear_probe``, ``mlp_probe``, ``knn_probe``: :mod:`.linear_probe` and :mod:`.feature_probes` on
  frozen image features, trained on a fixed budget per class of train images outside every image
  the method saw (the proxy forget set and its neighbours, :mod:`.draws`);
* ``relearn``: :mod:`.relearn` from the model's weights: few-shot fine-tuning on unseen images of
  the forgotten concepts (with kept-concept ones) and, separately, on kept-concept images only;
  the curve to the budget (200 steps), ``at_50``, recovery and ``steps_to_half`` (:mod:`.recovery`);
* ``soft_prompt``: :mod:`.soft_prompt`: every weight frozen, a learned text feature per forgotten
  class on the forget attack's images, then its zero-shot D_f fine accuracy;
* ``weights``: :mod:`.weights`: distance from the original's weights and the D_f loss barrier on
  the line between them;
* ``mass``: :func:`.mass.forgotten_mass` of the D_f test predictions;
* ``sibling_damage``: :func:`.similarity.sibling_damage` against the original, in the original's
  text-feature space;
* ``worst_case``: :func:`.worst_case.worst_case_quality` over the name, worst held-out alias, worst
  held-out template and probe recall, next to the study's Quality;
* with an oracle: ``oracle_gap`` (this model minus the oracle, so > 0 means more of the concept
  left than in a model that never learned it), ``erasure`` (:mod:`.erasure`, 1 oracle-like, 0
  original-like) and ``indistinguishability`` (:mod:`.margins`: KS test of the D_f margins).

A probe that cannot run is ``{"skipped": reason}``. NaN is written as null.

**Seeds.** ``AuditConfig.seed`` is the unlearning run's seed (which proxy forget set and
neighbours the probes and the attacks must avoid); ``draw_seed`` (default: ``seed``) draws the
audit's own data: the probes' train images, the relearning images and their order.
:meth:`Auditor.reseeded` gives an auditor for another seed. The probes that draw nothing (the
study's scores, names, aliases, templates, margins, weights) are measured once per set of weights
and reused (``measure(..., reuse=...)``); the feature probes, the relearning attacks and the
soft-prompt attack run again under each seed, *also for the original and the oracle*, so that
every comparison in a seed's record pairs models measured with the same draws.
:func:`audit_over_seeds` audits fixed models under several draw seeds (``ktmu audit --seeds N``).
Each measurement keeps its models' per-image D_f hits in memory (:class:`.seeds.ProbeHits`) for
the mean ± 95 % interval over seeds (:mod:`.seeds`).
"""
from __future__ import annotations

from dataclasses import asdict, replace
from typing import Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from ktmu.audit import record as R
from ktmu.audit.config import ROLES, AuditConfig, AuditError, check_same_architecture
from ktmu.audit.draws import probe_source_indices, seen_images
from ktmu.audit.feature_probes import MLP_EPOCHS, MLP_HIDDEN, fit_mlp_probe, knn_probe
from ktmu.audit.linear_probe import ProbeResult, fit_linear_probe
from ktmu.audit.margins import margins
from ktmu.audit.mass import forgotten_mass
from ktmu.audit.models import audit_models, audit_over_seeds, measure_models
from ktmu.audit.measurement import DfRecorder, Laps, Measurement
from ktmu.audit.names import name_probes, percent, predict, skipped
from ktmu.audit.relearn import HEADLINE_STEP, relearn_indices, relearning_curve
from ktmu.audit.seeds import ProbeHits, WorstHits, audit_replicates
from ktmu.audit.similarity import sibling_damage
from ktmu.audit.soft_prompt import SoftPromptRun, soft_prompt_run
from ktmu.audit.weights import weight_diagnostics
from ktmu.backbones import Backbone
from ktmu.backbones.encode import class_text_features, embed_source
from ktmu.data import ConceptDataset
from ktmu.data.stream import image_source
from ktmu.engine.request import UnlearningRequest
from ktmu.evaluation.flags import unknown_concept_reasons
from ktmu.evaluation.protocol import UnlearningEvaluator
from ktmu.outputs import json_ready
from ktmu.prompts import AUDIT_TEMPLATES, eval_templates, train_templates

__all__ = ["ROLES", "AuditConfig", "AuditError", "Auditor", "Measurement", "audit_models", "audit_over_seeds", "check_same_architecture",
           "measure_models"]

State = Mapping[str, torch.Tensor]


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
        self.seen = seen_images(request, train, cfg.max_per_concept, cfg.seed, cfg.neighbours, cfg.neighbours_scope)
        self.forget_set_size = len(self.seen.forget_set)
        self.notes: list[str] = []  # said once and recorded in the settings: budgets that shrank, attacks that were skipped
        self.probe_source, self.probe_reason, self.probe_shrunk = self._probe_source(preprocess)
        self.relearn_sources: dict[str, object] = {}
        for part in ("forget", "retain"):
            idx, reason = relearn_indices(request, train, part, cfg.relearn.images_per_concept, cfg.max_per_concept, cfg.seed,
                                          draw_seed=cfg.draws, neighbours=self.seen.neighbours)
            self.relearn_sources[part] = image_source(train, preprocess, idx) if idx is not None else reason
            if idx is None:
                self.notes.append(f"the {part} relearning attack is skipped: {reason}")
        self._measured: dict[str, Measurement] = {}  # this auditor's measurements of the session's original and oracle
        self._shared: dict[str, Measurement] = {}  # their first measurements, shared by reseeded auditors (seed-free probes)

    def reseeded(self, seed: int | None = None, draw_seed: int | None = None) -> "Auditor":
        """This auditor for another seed: the unlearning run's ``seed`` (default: this one's) and the audit's ``draw_seed`` (default: ``seed``).

        The relearning order follows the draw seed. The original's and the oracle's seed-free probes,
        once measured, are shared with this auditor (see the module doc).
        """
        seed = self.cfg.seed if seed is None else seed
        draws = seed if draw_seed is None else draw_seed
        cfg = replace(self.cfg, seed=seed, draw_seed=None if draws == seed else draws, relearn=replace(self.cfg.relearn, seed=draws))
        other = Auditor(self.request, self.train, self.evaluator, self.preprocess, cfg, self.workers, self.batch_size, self.progress, self.force)
        other._shared = self._shared
        return other

    # ---- data chosen once -------------------------------------------------------------------------
    def _probe_source(self, preprocess):
        idx, reason, shrunk = probe_source_indices(self.train, self.world, self.forget_fine, self.seen.all, self.cfg.probe_per_class,
                                                   self.cfg.draws)
        if idx is None:
            return None, reason, {}
        if shrunk:
            self.notes.append(f"the probes' budget of {self.cfg.probe_per_class} train images per class shrank for "
                              + ", ".join(f"{k!r} ({n} left outside the images the method saw)" for k, n in shrunk.items()))
        return image_source(self.train, preprocess, idx), "", shrunk

    # ---- one model ----------------------------------------------------------------------------------
    def _embed(self, backbone: Backbone, source, positions=None, desc: str = "embed") -> torch.Tensor:
        return embed_source(backbone, source, positions, batch_size=self.batch_size, workers=self.workers, progress=self.progress, desc=desc)

    def _d_f_logits(self, backbone: Backbone) -> torch.Tensor:
        """Zero-shot fine logits of the D_f test images under the current weights (canonical names, template ensemble, temperature)."""
        feats = self._embed(backbone, self.test.source, self.d_f_positions, "embed D_f")
        text = class_text_features(backbone, self.world.fine_names, eval_templates(self.world)).float().cpu()
        return float(backbone.logit_scale().detach().float().cpu()) * feats @ text.T

    def d_f_hits(self, backbone: Backbone) -> torch.Tensor:
        """Per-image D_f test fine hits of the current weights (canonical names, training-template ensemble)."""
        return self._d_f_logits(backbone).argmax(1) == self.labels[self.d_f]

    def d_f_fine(self, backbone: Backbone) -> float:
        """D_f test fine accuracy of the current weights (canonical names, training-template ensemble)."""
        return percent(self.d_f_hits(backbone))

    def d_f_loss(self, backbone: Backbone) -> float:
        """D_f test cross-entropy of the fine labels under the current weights (the weight diagnostics' loss line)."""
        return float(F.cross_entropy(self._d_f_logits(backbone), self.labels[self.d_f]))

    def d_r_fine(self, backbone: Backbone) -> dict:
        """What a relearning attack did to the kept concepts: D_r test fine accuracy of the current weights."""
        feats = self._embed(backbone, self.test.source, np.flatnonzero(~self.d_f.numpy()), "embed D_r")
        text = class_text_features(backbone, self.world.fine_names, eval_templates(self.world)).float().cpu()
        return {"d_r_fine": percent(predict(feats, text) == self.labels[~self.d_f])}

    def measure(self, backbone: Backbone, role: str, spec: str | None = None, study: bool = True,
                reuse: Measurement | None = None, reference: State | None = None, reference_loss: float | None = None) -> Measurement:
        """Run every probe on ``backbone``'s current weights (restored after relearning); ``study`` also runs the study's evaluation.

        ``reuse``: a measurement of the *same weights* (under other draws, e.g. another seed's
        auditor): its probes that draw nothing (study, names, aliases, templates, margins, weights)
        are taken as they are, and only the feature probes and the attacks run again.
        ``reference``: the original's trainable weights, for the weight diagnostics (without them
        those are skipped); ``reference_loss``: the original's D_f loss, when known. For the
        ``original`` role with ``study`` the original must know the concept (as ``ktmu unlearn``
        requires) unless the auditor was built with ``force``.
        """
        laps = Laps()
        if reuse is not None and reuse.features is not None:
            fixed = reuse
        else:
            fixed = self._seed_free(backbone, role, spec, study, laps, reference, reference_loss)
        probes = self._feature_probes(backbone, fixed.features, laps)
        relearn, recorded = self._relearn(backbone)
        laps("relearn")
        soft = self._soft_prompt(backbone, fixed)
        laps("soft_prompt")
        return replace(fixed, role=role, spec=spec or backbone.name, probe=probes["linear"], mlp=probes["mlp"], knn=probes["knn"],
                       relearn=relearn, soft_prompt=soft, seconds=laps.total(), hits=self._hits(fixed.hits, probes, recorded, soft))

    def _feature_probes(self, backbone: Backbone, test_feats: torch.Tensor, laps: Laps) -> dict[str, ProbeResult | str]:
        """The linear, MLP and kNN probes on the same budgeted train images (or the reason they cannot run)."""
        if self.probe_source is None:
            laps("linear_probe")
            return {k: self.probe_reason for k in ("linear", "mlp", "knn")}
        train = self._embed(backbone, self.probe_source, desc="embed probe images")
        args = (train, self.probe_source.fine, test_feats, self.labels, self.forget_fine, len(self.world.fine))
        budget = {"per_class": self.cfg.probe_per_class, "seed": self.cfg.draws}
        out: dict[str, ProbeResult | str] = {"linear": fit_linear_probe(*args, **budget)}
        laps("linear_probe")
        out["mlp"] = fit_mlp_probe(*args, **budget)
        laps("mlp_probe")
        out["knn"] = knn_probe(*args, **budget, k=self.cfg.knn_k)
        laps("knn_probe")
        return out

    def _relearn(self, backbone: Backbone) -> tuple[dict, dict[str, DfRecorder]]:
        relearn: dict = {}
        recorded: dict[str, DfRecorder] = {}
        for part, source in self.relearn_sources.items():
            if isinstance(source, str):
                relearn[part] = source
                continue
            recorded[part] = DfRecorder(lambda: self.d_f_hits(backbone))
            relearn[part] = relearning_curve(backbone, source, self.world.fine_names, recorded[part], self.cfg.relearn, self.workers,
                                             final=lambda: self.d_r_fine(backbone))
        return relearn, recorded

    def _soft_prompt(self, backbone: Backbone, fixed: Measurement) -> SoftPromptRun | str:
        """The soft-prompt attack on the forget relearning attack's images (:mod:`.soft_prompt`), scored on the test features."""
        source = self.relearn_sources["forget"]
        if isinstance(source, str):
            return f"the attack learns from the forget relearning attack's images, and there are none: {source}"
        feats = self._embed(backbone, source, desc="embed soft-prompt images")
        return soft_prompt_run(feats, source.fine, fixed.text_features, self.forget_fine, fixed.scale, fixed.features, self.labels,
                               self.d_f, self.cfg.soft_prompt)

    def _hits(self, base: ProbeHits, probes: Mapping[str, ProbeResult | str], recorded: Mapping[str, DfRecorder],
              soft: SoftPromptRun | str) -> ProbeHits:
        d_f, truth = self.d_f.numpy(), self.labels[self.d_f].numpy()
        got = {k: WorstHits.of(p.predictions[d_f] == truth) if isinstance(p, ProbeResult) else None for k, p in probes.items()}
        steps, forget, retain = self.cfg.relearn.steps, recorded.get("forget"), recorded.get("retain")
        return replace(base, linear_probe=got["linear"], mlp=got["mlp"], knn=got["knn"],
                       relearn_before=forget.first if forget else None, relearn_after=forget.last if forget else None,
                       relearn_at_50=forget.at(steps, HEADLINE_STEP) if forget else None,
                       retain_at_50=retain.at(steps, HEADLINE_STEP) if retain else None,
                       soft_prompt=WorstHits.of(soft.hits) if isinstance(soft, SoftPromptRun) else None)

    def _seed_free(self, backbone: Backbone, role: str, spec: str | None, study: bool, lap: Callable[[str], None],
                   reference: State | None = None, reference_loss: float | None = None) -> Measurement:
        """The probes that draw nothing (study, names, aliases, templates, margins, weights), with the test features and their D_f hits."""
        scores = None
        if study:
            scores = self.evaluator.evaluate(backbone)
            lap("study")
            if role == "original" and not self.force:
                self._check_known(scores)
        labels, d_f = self.labels, self.d_f
        feats = self.test.features(backbone)
        n = name_probes(backbone, feats, labels, self.test.coarse_labels, self.world, self.forget_fine, self.strata)
        lap("name")
        scale = float(backbone.logit_scale().detach().float().cpu())
        logits = scale * feats[d_f] @ n.text_features.T
        m = Measurement(role, spec or backbone.name, n.name, n.fine_pred, n.per_class, n.text_features, n.aliases, n.templates,
                        self.probe_reason, {}, scores, features=feats, hits=n.hits, margins=margins(logits, labels[d_f]),
                        d_f_loss=float(F.cross_entropy(logits, labels[d_f])), scale=scale)
        m.weights = weight_diagnostics(backbone, reference, self.cfg.barrier_points, m.d_f_loss, lambda: self.d_f_loss(backbone), reference_loss)
        lap("weights")
        return m

    def _check_known(self, scores: dict) -> None:
        unknown = unknown_concept_reasons(scores, self.request.goal)
        if unknown:
            raise AuditError(f"{'; '.join(unknown)}. Auditing the forgetting of a concept the original never knew measures nothing: "
                             "pick a concept it knows, or add --force to run anyway.")

    def original(self, backbone: Backbone, state: State, spec: str | None = None) -> Measurement:
        """The original's measurement, made once per auditor: ``state`` (trainable weights) is loaded for it, then the backbone's own weights return.

        A reseeded auditor reuses the first one's seed-free probes of the original (see the module doc).
        """
        if "original" not in self._measured:
            current = backbone.copy_trainable()
            backbone.load_trainable(state)
            try:
                self._keep("original", self.measure(backbone, "original", spec, study=False, reuse=self._shared.get("original"), reference=state))
            finally:
                backbone.load_trainable(current)
        return self._measured["original"]

    def oracle(self, backbone: Backbone, reference: State, spec: str | None = None) -> Measurement:
        """The oracle's measurement (a model of its own), made once per auditor; ``reference``: the original's trainable weights."""
        if "oracle" not in self._measured:
            known = self._measured.get("original")
            self._keep("oracle", self.measure(backbone, "oracle", spec, study=False, reuse=self._shared.get("oracle"), reference=reference,
                                              reference_loss=known.d_f_loss if known is not None else None))
        return self._measured["oracle"]

    def _keep(self, role: str, m: Measurement) -> None:
        self._measured[role] = m
        self._shared.setdefault(role, m)

    def replicates(self, measurements: Mapping[str, Measurement]) -> dict[str, dict[str, np.ndarray]]:
        """Role -> headline key -> bootstrap replicates of the D_f test images, seeded with the draw seed (:func:`.seeds.audit_replicates`)."""
        if "original" not in measurements:
            raise AuditError("the audit compares against the original model: measure it first.")
        original = R.probe_accuracies(measurements["original"])
        wc = {role: [k for k in original if k in R.probe_accuracies(m)] for role, m in measurements.items()}
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
        cfg = self.cfg
        sizes = {part: self._relearn_size(part) for part in self.relearn_sources}
        return {"probe_per_class": cfg.probe_per_class, "probe_train_images": 0 if self.probe_source is None else len(self.probe_source),
                "probe_excludes_forget_set": True, "probe_excludes_neighbours": True, "probe_shrunk": self.probe_shrunk,
                "excluded": self.seen.record(), "relearn": asdict(cfg.relearn), "relearn_images": sizes,
                "mlp": {"hidden": MLP_HIDDEN, "epochs": MLP_EPOCHS}, "knn_k": cfg.knn_k, "soft_prompt": asdict(cfg.soft_prompt),
                "barrier_points": cfg.barrier_points, "notes": list(self.notes),
                "templates": list(train_templates(self.world)), "audit_templates": list(AUDIT_TEMPLATES)}

    def record(self, m: Measurement, original: Measurement, oracle: Measurement | None = None) -> dict:
        """One model's record; comparisons are against ``original`` (and ``oracle`` when given)."""
        world, forget, cfg, names = self.world, self.forget_fine, self.cfg, self.world.fine_names
        f2c = world.fine_to_coarse()
        mass = forgotten_mass(m.fine_pred[self.d_f], self.labels[self.d_f], f2c, forget)
        damage = sibling_damage(original.per_class, m.per_class, original.text_features, forget, f2c, names)
        rec: dict = {
            "role": m.role,
            "spec": m.spec,
            "name": m.name,
            "aliases": m.aliases,
            "templates": m.templates,
            "linear_probe": R.probe_record(m.probe, names, cfg.probe_per_class),
            "mlp_probe": R.probe_record(m.mlp, names, cfg.probe_per_class, hidden=MLP_HIDDEN, epochs=MLP_EPOCHS),
            "knn_probe": R.probe_record(m.knn, names, cfg.probe_per_class, k=cfg.knn_k),
            "relearn": {part: R.relearn_record(run, original.name["d_f_fine"], cfg.relearn, self._relearn_size(part))
                        for part, run in m.relearn.items()},
            "soft_prompt": R.soft_prompt_record(m.soft_prompt, cfg.soft_prompt),
            "weights": m.weights if isinstance(m.weights, dict) else skipped(m.weights),
            "mass": asdict(mass),
            "sibling_damage": {"spearman": damage.spearman, "p_value": damage.p_value, **({"reason": damage.reason} if damage.reason else {}),
                               "rows": [asdict(r) for r in damage.rows]},
            "worst_case": R.worst_case_record(m, original),
            "erasure": R.erasure_record(m, original, oracle, cfg.relearn.steps),
            "seconds": m.seconds,
        }
        if m is not oracle:  # the oracle against itself says nothing
            rec["indistinguishability"] = R.indistinguishability_record(m, oracle)
        if m.study is not None:
            rec["study"] = R.study_record(m.study, original.study, self.request.goal)
        if oracle is not None and m is not oracle:
            oracle_mass = forgotten_mass(oracle.fine_pred[self.d_f], self.labels[self.d_f], f2c, forget)
            rec["oracle_gap"] = R.oracle_gap_record(m, oracle, mass, oracle_mass, cfg.relearn.steps)
        return rec
