"""The audit record's parts: pure functions from :class:`~ktmu.audit.measurement.Measurement` to JSON-ready dicts.

Each ``*_record`` turns one probe's raw result into what audit.json holds; the comparisons
(worst case, gaps to the oracle, erasure, indistinguishability) take the original's and the
oracle's measurements too. A probe that did not run is ``{"skipped": reason}``.
"""
from __future__ import annotations

import math

import numpy as np

from ktmu.audit.erasure import erasure
from ktmu.audit.linear_probe import ProbeResult
from ktmu.audit.margins import ks_test
from ktmu.audit.measurement import Measurement, RelearnRun, SoftPromptRun
from ktmu.audit.names import is_skipped, skipped
from ktmu.audit.recovery import curve_gap, relearning_recovery, steps_to_half
from ktmu.audit.relearn import HEADLINE_STEP, RelearnConfig
from ktmu.audit.worst_case import worst_case_quality
from ktmu.evaluation.metrics import relative_drop, summarize, summarize_chance_aware

ERASED = {"linear_probe": "probe_recall", "relearn_at_50": "relearn_at_50", "mlp_probe": "mlp_recall", "knn_probe": "knn_recall",
          "soft_prompt": "soft_prompt"}  # erasure entry -> the reading it normalises (linear_probe and relearn_at_50 are the headline)


def probe_record(p: ProbeResult | str, names: list[str], budget: int, **extra) -> dict:
    """A feature probe's record (linear, MLP or kNN): recalls in percent, its train size and budget."""
    if isinstance(p, str):
        return skipped(p)
    return {"forgotten_recall": p.forgotten_recall, "kept_accuracy": p.kept_accuracy, "train_size": p.train_size,
            "per_class_budget": budget, **extra, "per_class_recall": dict(zip(names, p.recall.tolist()))}


def relearn_record(run: RelearnRun | str, original_d_f_fine: float, cfg: RelearnConfig, images: int) -> dict:
    """One relearning attack: its curve, the value at the budget (``after``) and at 50 steps (``at_50``), recovery and steps to half."""
    if isinstance(run, str):
        return skipped(run)
    curve, final = run
    steps = list(cfg.steps)
    rec = relearning_recovery(original_d_f_fine, curve[0], curve[-1])
    at_50 = curve[steps.index(HEADLINE_STEP)] if HEADLINE_STEP in steps else None
    half = steps_to_half(steps, curve, original_d_f_fine) if not math.isnan(original_d_f_fine) else None
    out = {"steps": steps, "curve": curve, "after": curve[-1], "at_50": at_50, "recovery": rec.value,
           **({"recovery_reason": rec.reason} if rec.reason else {}),
           **({"at_50_reason": f"the budget ({steps[-1]} steps) is under {HEADLINE_STEP}"} if at_50 is None else {}),
           "steps_to_half": None if half is None else half.step, "steps_to_half_reached": None if half is None else half.reached,
           "images": images, **{f"{k}_after": v for k, v in final.items()}}
    if at_50 is not None:
        r50 = relearning_recovery(original_d_f_fine, curve[0], at_50)
        out["recovery_at_50"] = r50.value
    return out


def soft_prompt_record(run: SoftPromptRun | str, cfg) -> dict:
    """The soft-prompt attack's record: D_f (and D_r) fine accuracy with the learned text features, and its budget."""
    if isinstance(run, str):
        return skipped(run)
    return {"d_f_fine": run.d_f_fine, "d_r_fine": run.d_r_fine, "loss_start": run.loss[0], "loss_end": run.loss[1],
            "train_accuracy_start": run.train_accuracy[0], "train_accuracy_end": run.train_accuracy[1], "images": run.images,
            "steps": cfg.steps, "lr": cfg.lr}


def probe_accuracies(m: Measurement) -> dict[str, float]:
    """The D_f accuracy under each probe that worst-case Quality takes the minimum over (left out when not measured)."""
    out = {"name": m.name["d_f_fine"]}
    if not is_skipped(m.aliases["held_out"]):
        out["held_out_alias"] = m.aliases["held_out"]["worst"]
    if not is_skipped(m.templates["held_out"]):
        out["held_out_template"] = m.templates["held_out"]["worst"]
    if isinstance(m.probe, ProbeResult):
        out["linear_probe"] = m.probe.forgotten_recall
    return {k: v for k, v in out.items() if not math.isnan(v)}


def worst_case_record(m: Measurement, original: Measurement) -> dict:
    mine, ref = probe_accuracies(m), probe_accuracies(original)
    common = [k for k in ref if k in mine]
    wc = worst_case_quality({k: ref[k] for k in common}, {k: mine[k] for k in common})
    return {"quality": wc.quality, "probe": wc.probe, "per_probe": wc.per_probe, "accuracies": {k: mine[k] for k in common},
            "study_quality": relative_drop(original.name["d_f_fine"], m.name["d_f_fine"])}


def study_record(scores: dict, original: dict | None, goal: str) -> dict:
    from ktmu.evaluation.records import recorded_scores

    out: dict = {"scores": recorded_scores(scores)}
    if original is not None and scores is not original:
        out["summary"] = {**summarize(original, scores, goal),
                          **summarize_chance_aware(original, scores, goal, scores["n_fine"], scores["n_coarse"])}
    return out


def readings(m: Measurement, steps: tuple[int, ...]) -> dict[str, float | None]:
    """The numbers erasure and the oracle gaps compare: probe recalls, the soft-prompt attack and relearning at 50 of ``steps`` (None: not measured)."""
    out: dict[str, float | None] = {}
    for key, p in (("probe_recall", m.probe), ("mlp_recall", m.mlp), ("knn_recall", m.knn)):
        out[key] = p.forgotten_recall if isinstance(p, ProbeResult) else None
    out["soft_prompt"] = m.soft_prompt.d_f_fine if isinstance(m.soft_prompt, SoftPromptRun) else None
    for part, key in (("forget", "relearn_at_50"), ("retain", "retain_at_50")):
        run = m.relearn.get(part)
        measured = not isinstance(run, str) and run is not None and HEADLINE_STEP in steps
        out[key] = run[0][list(steps).index(HEADLINE_STEP)] if measured else None
    return {k: (None if v is None or math.isnan(v) else v) for k, v in out.items()}


def erasure_record(m: Measurement, original: Measurement, oracle: Measurement | None, steps: tuple[int, ...]) -> dict:
    """Erasure of each reading (module :mod:`ktmu.audit.erasure`): 1 oracle-like, 0 original-like; null with a reason where undefined."""
    mine, ref = readings(m, steps), readings(original, steps)
    theirs = readings(oracle, steps) if oracle is not None else {}
    out: dict = {}
    reasons = {}
    for entry, key in ERASED.items():
        if mine[key] is None:
            out[entry] = None
            reasons[entry] = "this probe was not measured for this model"
            continue
        oracle_value = None if oracle is None else _nan(theirs[key])
        e = erasure(mine[key], _nan(ref[key]), oracle_value)
        out[entry] = None if math.isnan(e.value) else e.value
        if e.reason:
            reasons[entry] = e.reason
    return {**out, **({"reasons": reasons} if reasons else {})}


def indistinguishability_record(m: Measurement, oracle: Measurement | None) -> dict:
    """The KS test of this model's D_f margins against the oracle's (:mod:`ktmu.audit.margins`)."""
    if oracle is None:
        return skipped("no oracle was audited (pass --oracle SPEC): the margins are compared with a model that never knew the concept")
    if m.margins is None or oracle.margins is None:
        return skipped("no D_f margins were measured")
    ks = ks_test(m.margins, oracle.margins)
    return {"ks_statistic": ks.statistic, "p_value": ks.p_value, "images": ks.n, "oracle_images": ks.n_oracle,
            "margin_median": float(np.median(m.margins)), "oracle_margin_median": float(np.median(oracle.margins))}


def _nan(v: float | None) -> float:
    return math.nan if v is None else v


def oracle_gap_record(m: Measurement, oracle: Measurement, mass, oracle_mass, steps: tuple[int, ...]) -> dict:
    """This model minus the oracle (> 0: more of the concept left than in a model that never learned it)."""
    gap: dict = {"d_f_fine": m.name["d_f_fine"] - oracle.name["d_f_fine"]}
    for kind in ("held_out", "method_visible"):
        a, b = m.aliases[kind], oracle.aliases[kind]
        if not is_skipped(a) and not is_skipped(b):
            gap[f"{kind}_alias"] = a["worst"] - b["worst"]
    a, b = m.templates["held_out"], oracle.templates["held_out"]
    gap["held_out_template"] = a["worst"] - b["worst"]
    mine, theirs = readings(m, steps), readings(oracle, steps)
    if mine["probe_recall"] is not None and theirs["probe_recall"] is not None:
        gap["linear_probe_recall"] = mine["probe_recall"] - theirs["probe_recall"]
    for key in ("mlp_recall", "knn_recall", "soft_prompt", "relearn_at_50", "retain_at_50"):
        if mine[key] is not None and theirs[key] is not None:
            gap[key] = mine[key] - theirs[key]
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
