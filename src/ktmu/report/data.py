"""The numbers behind each figure of ``ktmu report``, as plain JSON-ready data (pure functions of the run records).

Each ``*_data`` function reads :class:`~ktmu.report.runs.Run` records and returns exactly what
its figure draws; the page embeds that data next to the figure. Missing parts of a record are
left out (and named in ``missing`` where a reader would look for them), never guessed.
Values are percent unless a key says otherwise; a run over several seeds contributes its mean
over seeds and, where ktmu recorded one, its 95 % interval (``low``/``high``).
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

from ktmu.audit.report import headline
from ktmu.report.runs import Run, describe_request, dig, request_key, seed_audits, seed_records

SUMMARY_KEYS = ("quality", "utility", "qu", "quality_ca", "utility_ca", "qu_ca")
# headline audit numbers drawn against the oracle: key in ktmu.audit.report.HEADLINE -> label
PROBE_KEYS = {"d_f_fine": "D_f fine (canonical names)", "held_out_alias": "held-out alias (worst)",
              "held_out_template": "held-out template (worst)", "probe_recall": "linear-probe recall",
              "mlp_recall": "MLP-probe recall", "knn_recall": "kNN-probe recall", "soft_prompt": "soft-prompt attack",
              "relearn_at_50": "relearn@50", "retain_at_50": "retain@50 (kept only)",
              "relearn_after": "relearn at the budget"}


def number(v: Any) -> float | None:
    """A finite float, or None for anything else (missing, null, NaN, a string)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def metric(record: Mapping, key: str) -> float | None:
    """A summary metric (``quality``, ``qu``, ...) of a results row: its mean over seeds when it has one."""
    mean = record.get("mean")
    if isinstance(mean, Mapping) and key in mean:
        return number(mean[key])
    return number(record.get(key))


def interval(record: Mapping, key: str) -> list[float] | None:
    """``[low, high]`` of a row's 95 % interval for ``key``, or None when it has none."""
    iv = dig(record, "interval", key)
    low, high = (number(iv.get("low")), number(iv.get("high"))) if isinstance(iv, Mapping) else (None, None)
    return None if low is None or high is None else [low, high]


def unlearned_zero_shot(record: Mapping) -> float | None:
    """The unlearned model's zero-shot accuracy (mean over seeds when there are several)."""
    mean = record.get("mean")
    if isinstance(mean, Mapping) and "zero_shot" in mean:
        return number(mean["zero_shot"])
    return number(dig(record, "unlearned", "zero_shot"))


def flag_list(record: Mapping) -> list[str]:
    """The raised flags of a row (any seed's), as the tables name them in lower case: ``collapsed``, ``unchanged``, ``unknown-concept``."""
    from ktmu.report.tables import flag_words

    return [w.lower() for w in flag_words(record).split(",") if w != "-"]


# ---- Quality against Utility ---------------------------------------------------------------------------
def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both coordinates (higher is better), by the first coordinate.

    A point is dominated when another is at least as good on both and better on one; equal points
    are all kept. Example: (90, 99), (99, 90), (95, 95), (80, 80) -> [0, 2, 1].
    """
    keep = [i for i, (a, b) in enumerate(points)
            if not any((c >= a and d >= b) and (c > a or d > b) for c, d in points)]
    return sorted(keep, key=lambda i: (points[i][0], -points[i][1]))


def _point(run: Run, record: Mapping) -> dict | None:
    q, u = metric(record, "quality"), metric(record, "utility")
    if q is None or u is None:
        return None
    original_zs, zs = number(dig(run.original or {}, "zero_shot")), unlearned_zero_shot(record)
    zs_iv = interval(record, "zero_shot")
    drop = None if original_zs is None or zs is None else original_zs - zs
    return {"run": run.label, "method": str(record.get("method", "?")), "quality": q, "utility": u,
            "qu": metric(record, "qu"), "qu_ca": metric(record, "qu_ca"),
            "quality_interval": interval(record, "quality"), "utility_interval": interval(record, "utility"),
            "qu_interval": interval(record, "qu"), "zero_shot_drop": drop,
            "zero_shot_drop_interval": None if drop is None or zs_iv is None else [original_zs - zs_iv[1], original_zs - zs_iv[0]],
            "seeds": len(seed_records(record)), "flags": flag_list(record)}


def tradeoff_data(runs: Iterable[Run]) -> list[dict]:
    """One group per request (runs of different requests never share a plot): its points and Pareto front."""
    groups: dict[tuple, dict] = {}
    for run in runs:
        if not run.rows:
            continue
        group = groups.setdefault(request_key(run.request), {"request": describe_request(run.request), "runs": [], "points": []})
        group["runs"].append(run.label)
        group["points"] += [p for p in (_point(run, r) for r in run.rows) if p is not None]
    out = []
    for group in groups.values():
        pts = group["points"]
        group["pareto"] = [f"{pts[i]['run']}: {pts[i]['method']}" for i in pareto_front([(p["quality"], p["utility"]) for p in pts])]
        if pts:
            out.append(group)
    return out


# ---- per class ---------------------------------------------------------------------------------------------
def _mean(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def per_class_data(run: Run) -> dict | None:
    """Fine accuracy per class: the original's and each method's after unlearning (mean over seeds)."""
    first = next((dig(r, "per_class_fine", "original") for r in run.rows if dig(r, "per_class_fine", "original")), None)
    if not isinstance(first, Mapping):
        return None
    classes = list(first)
    rows = [{"model": "original", "values": [number(first[c]) for c in classes]}]
    for record in run.rows:
        seeds = [dig(s, "per_class_fine", "unlearned") or {} for s in seed_records(record)]
        rows.append({"model": str(record.get("method", "?")), "values": [_mean([number(s.get(c)) for s in seeds]) for c in classes],
                     "seeds": len(seeds)})
    forgotten = list(dig(run.request or {}, "forget_fine", default=[]))
    return {"run": run.label, "classes": classes, "forgotten": [c for c in classes if c in forgotten], "rows": rows}


# ---- the audit ----------------------------------------------------------------------------------------------
def audit_models(run: Run) -> list[dict]:
    """The audited models of a run in drawing order: ``{"model", "role", "record", "seeds"}``.

    ``record`` is the model's audit record (with ``mean``/``interval`` over seeds where recorded),
    ``seeds`` its per-seed records. An audit run gives its roles (original, unlearned, oracle);
    an audited unlearn/bench run gives the original, one model per method, and an oracle when the
    rows carry one.
    """
    if run.audit is not None:
        per_seed = seed_audits(run.audit)
        return [{"model": role, "role": role, "spec": rec.get("spec"), "record": rec,
                 "seeds": [dig(a, "models", role) for a in per_seed if dig(a, "models", role)]}
                for role, rec in (run.audit.get("models") or {}).items() if isinstance(rec, Mapping)]
    audited = [r for r in run.rows if isinstance(r.get("audit"), Mapping)]
    if not audited:
        return []
    first = audited[0]
    roles = {role: _model(role, role, dig(first, "audit", "models", role), first) for role in ("original", "oracle")}
    methods = [_model(str(r.get("method", "?")), "unlearned", dig(r, "audit", "models", "unlearned"), r) for r in audited]
    return [m for m in [roles["original"], *methods, roles["oracle"]] if m is not None]


def _model(name: str, role: str, rec: Any, row: Mapping) -> dict | None:
    """One audited model of a results row: its record and its per-seed records."""
    if not isinstance(rec, Mapping):
        return None
    per_seed = [dig(a, "models", role) for a in seed_audits(row["audit"], row)]
    return {"model": name, "role": role, "spec": rec.get("spec"), "record": rec, "seeds": [s for s in per_seed if s]}


def mass_data(run: Run) -> dict | None:
    """Where the forgotten concepts' test images are predicted: forgotten / sibling / other, percent (mean over seeds)."""
    rows = []
    for m in audit_models(run):
        shares = {k: _mean([number(dig(s, "mass", k)) for s in m["seeds"]]) for k in ("forgotten", "sibling", "other")}
        if all(v is not None for v in shares.values()):
            rows.append({"model": m["model"], **{k: 100 * v for k, v in shares.items()}, "seeds": len(m["seeds"])})
    return {"run": run.label, "models": rows} if rows else None


def relearn_data(run: Run) -> dict | None:
    """Relearning curves per model and attack part (``forget``: on unseen forgotten images; ``retain``: kept concepts only).

    Each model's curve is the mean over seeds with the lowest and highest seed as its band.
    """
    parts: dict[str, dict] = {}
    for m in audit_models(run):
        for part in ("forget", "retain"):
            curves = [(dig(s, "relearn", part, "steps"), dig(s, "relearn", part, "curve")) for s in m["seeds"]]
            curves = [(st, c) for st, c in curves if isinstance(st, list) and isinstance(c, list) and len(st) == len(c) and c]
            if not curves:
                continue
            steps = curves[0][0]
            same = [[number(v) for v in c] for st, c in curves if st == steps]
            cols = list(zip(*same))
            if any(v is None for col in cols for v in col):
                continue
            parts.setdefault(part, {"steps": steps, "models": []})["models"].append(
                {"model": m["model"], "role": m["role"], "mean": [sum(c) / len(c) for c in cols],
                 "low": [min(c) for c in cols], "high": [max(c) for c in cols], "seeds": len(same)})
    return {"run": run.label, "parts": parts} if parts else None


def probe_data(run: Run) -> dict | None:
    """The headline audit numbers per model (with 95 % intervals over seeds where recorded), the oracle's among them."""
    models = []
    for m in audit_models(run):
        values = {}
        for key in PROBE_KEYS:
            value, iv = headline(m["record"], key)
            if number(value) is not None:
                values[key] = {"value": float(value), "low": iv.low if iv else None, "high": iv.high if iv else None}
        if values:
            models.append({"model": m["model"], "role": m["role"], "values": values})
    if not models:
        return None
    drawn = {k: label for k, label in PROBE_KEYS.items() if any(k in m["values"] for m in models)}  # older records lack the newer probes
    return {"run": run.label, "metrics": drawn, "models": models,
            "oracle": any(m["role"] == "oracle" for m in models)}


KCURVE_KEYS = {"qu": "Q-U", "probe_recall": "linear-probe recall", "knn_recall": "kNN-probe recall", "soft_prompt": "soft-prompt attack",
               "relearn_at_50": "relearn@50"}  # what the K-curve draws against K (docs/audit.md, "the K-curve")


def _kcurve_point(row: Mapping, rec: Mapping, key: str) -> dict | None:
    """One K-curve value of a row: ``qu`` from the row's summary, the rest from the audit record ``rec``; None when missing."""
    if key == "qu":
        value, iv = metric(row, "qu"), interval(row, "qu")
        return None if value is None else {"value": value, "low": iv[0] if iv else None, "high": iv[1] if iv else None}
    value, hiv = headline(rec, key)
    if number(value) is None:
        return None
    return {"value": float(value), "low": hiv.low if hiv else None, "high": hiv.high if hiv else None}


def kcurve_data(runs: Iterable[Run]) -> list[dict]:
    """Removal against neighbour data: per request, each method's audited numbers at each ``--neighbours K``, and the oracle's.

    Reads audited bench and unlearn runs (each row's ``neighbours.k``, 0 when absent). A request
    gets a curve only when its rows span at least two values of K. The oracle's numbers are each
    run's own (its audit draws avoid that run's neighbours), kept per K. Example: benches at K = 0
    and K = 16 of forget shirt -> one group, ``ks == [0, 16]``, each method's values by K.
    """
    groups: dict[tuple, dict] = {}
    for run in runs:
        for row in run.rows:
            unlearned = dig(row, "audit", "models", "unlearned")
            if not isinstance(unlearned, Mapping):
                continue
            k = int(number(dig(row, "neighbours", "k")) or 0)
            request = row.get("request") or run.request
            g = groups.setdefault(request_key(request), {"request": describe_request(request), "methods": {}, "oracle": {}})
            values = {key: v for key in KCURVE_KEYS if (v := _kcurve_point(row, unlearned, key)) is not None}
            g["methods"].setdefault(str(row.get("method", "?")), {})[k] = values
            oracle = dig(row, "audit", "models", "oracle")
            if isinstance(oracle, Mapping) and k not in g["oracle"]:
                g["oracle"][k] = {key: v for key in KCURVE_KEYS if key != "qu" and (v := _kcurve_point(row, oracle, key)) is not None}
    out = []
    for g in groups.values():
        ks = sorted({k for by_k in g["methods"].values() for k in by_k})
        if len(ks) > 1:
            out.append({**g, "ks": ks, "metrics": dict(KCURVE_KEYS)})
    return out


def sibling_data(run: Run) -> dict | None:
    """Each kept concept's accuracy change against its text similarity to the forgotten concepts (first seed)."""
    models = []
    for m in audit_models(run):
        if m["role"] == "original":
            continue
        rows = [{"name": r.get("name"), "similarity": number(r.get("similarity")), "change": number(r.get("change")),
                 "same_parent": bool(r.get("same_parent"))} for r in dig(m["record"], "sibling_damage", "rows", default=[])]
        rows = [r for r in rows if r["similarity"] is not None and r["change"] is not None]
        if rows:
            models.append({"model": m["model"], "spearman": number(dig(m["record"], "sibling_damage", "spearman")), "rows": rows})
    return {"run": run.label, "models": models} if models else None


# ---- training and perf -----------------------------------------------------------------------------------------
TERM_SKIP = ("epoch", "selection_score", "forget_train_fine_acc", "forget_train_coarse_acc", "forget_train_fine_acc_steps")


def training_data(run: Run) -> dict | None:
    """Per method (first seed): each loss term and the forget-train fine accuracy per epoch, and the selected epoch."""
    methods = []
    for record in run.rows:
        epochs = [e for e in dig(record, "config", "epochs", default=[]) if isinstance(e, Mapping)]
        if not epochs:
            continue
        terms = sorted({k for e in epochs for k, v in e.items() if k not in TERM_SKIP and number(v) is not None})
        acc_key = "forget_train_fine_acc" if any("forget_train_fine_acc" in e for e in epochs) else "forget_train_fine_acc_steps"
        methods.append({"method": str(record.get("method", "?")), "epochs": [e.get("epoch", i + 1) for i, e in enumerate(epochs)],
                        "terms": {t: [number(e.get(t)) for e in epochs] for t in terms},
                        "forget_acc": [number(e.get(acc_key)) for e in epochs], "forget_acc_key": acc_key,
                        "selected_epoch": dig(record, "config", "selected_epoch"),
                        "selection_rule": dig(record, "config", "selection_rule"), "seeds": len(seed_records(record))})
    return {"run": run.label, "methods": methods} if methods else None


def perf_data(runs: Iterable[Run]) -> dict | None:
    """Step time of every method over plain fine-tuning, per perf run."""
    out = []
    for run in runs:
        p = run.perf or {}
        ratios = {str(k): number(v) for k, v in (p.get("step_ratio") or {}).items()}
        ratios = {k: v for k, v in ratios.items() if v is not None}
        if ratios:
            out.append({"run": run.label, "model": p.get("model"), "device": p.get("device"), "precision": p.get("precision"),
                        "batch_size": p.get("batch_size"), "ratios": ratios,
                        "plain_step_ms": None if number(dig(p, "step_seconds", "plain-ce")) is None else 1000 * p["step_seconds"]["plain-ce"],
                        **{k: number(p.get(k)) for k in ("epoch_overhead_ratio", "eval_ratio", "peak_mem_mb", "train_images_per_s")}})
    return {"runs": out} if out else None


def sequence_data(run: Run) -> dict | None:
    """A sequence's course: after each step, each forgotten concept's D_f accuracy and the cumulative Utility and zero-shot.

    From each row's ``cumulative`` part (against the base model; means over seeds where recorded);
    None for other runs or a sequence whose rows carry no cumulative scores.
    """
    if run.kind != "sequence":
        return None
    steps = [r for r in run.rows if isinstance(r.get("cumulative"), Mapping)]
    if not steps:
        return None
    concepts = list(dict.fromkeys(c for r in steps for c in r["cumulative"].get("concepts", {})))
    base = {c: number(v.get("base")) for r in steps for c, v in r["cumulative"].get("concepts", {}).items()}
    out: dict[str, Any] = {"labels": [str(r.get("label")) for r in steps], "concepts": {c: [] for c in concepts}, "base": base,
                           "utility": [], "zero_shot": [], "base_zero_shot": number(dig(steps[0], "cumulative", "base", "zero_shot"))}
    for r in steps:
        cum = r["cumulative"]
        means = cum.get("concepts_mean") or {c: {"unlearned": v.get("unlearned")} for c, v in cum.get("concepts", {}).items()}
        for c in concepts:
            out["concepts"][c].append(number(means[c]["unlearned"]) if c in means else None)
        mean = cum.get("mean") or {}
        out["utility"].append(number(mean.get("utility", cum.get("utility"))))
        out["zero_shot"].append(number(mean.get("zero_shot", dig(cum, "unlearned", "zero_shot"))))
    return out
