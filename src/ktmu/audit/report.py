"""The audit table: one row per model, the numbers that say whether the knowledge is gone or only its name.

Over several seeds (``--seeds N``) a model's record carries ``mean`` and ``interval`` of its
headline numbers (:mod:`ktmu.audit.seeds`); the table then prints them as ``mean ± half-width``
(:func:`ktmu.evaluation.intervals.format_interval`), and the mass f/s/o and the worst-case probe's
name are the first seed's.
"""
from __future__ import annotations

from typing import Mapping

from ktmu.evaluation.intervals import Interval, format_interval

# the audit table's columns (ktmu audit, unlearn --audit): column -> (headline key or None for a composed cell, digits)
COLUMNS = ("D_f fine", "held-out alias", "held-out tmpl", "probe recall", "MLP recall", "kNN recall", "soft-prompt", "relearn@50",
           "retain@50", "erasure probe", "erasure relearn", "recovery", "mass f/s/o", "Quality", "WC-Quality")
# headline key -> its path in a model's audit record: what the tables print, and what gets an interval over seeds
HEADLINE: dict[str, tuple[str, ...]] = {
    "d_f_fine": ("name", "d_f_fine"),
    "held_out_alias": ("aliases", "held_out", "worst"),
    "held_out_template": ("templates", "held_out", "worst"),
    "probe_recall": ("linear_probe", "forgotten_recall"),
    "relearn_after": ("relearn", "forget", "after"),  # at the budget (200 steps by default)
    "recovery": ("relearn", "forget", "recovery"),
    "quality": ("worst_case", "study_quality"),
    "wc_quality": ("worst_case", "quality"),
    "gap_d_f_fine": ("oracle_gap", "d_f_fine"),
    "gap_held_out_alias": ("oracle_gap", "held_out_alias"),
    "gap_held_out_template": ("oracle_gap", "held_out_template"),
    "gap_probe_recall": ("oracle_gap", "linear_probe_recall"),
    "gap_relearn_after": ("oracle_gap", "relearn", "forget", "after"),
    "mlp_recall": ("mlp_probe", "forgotten_recall"),
    "knn_recall": ("knn_probe", "forgotten_recall"),
    "soft_prompt": ("soft_prompt", "d_f_fine"),
    "relearn_at_50": ("relearn", "forget", "at_50"),
    "retain_at_50": ("relearn", "retain", "at_50"),
    "erasure_probe": ("erasure", "linear_probe"),
    "erasure_relearn": ("erasure", "relearn_at_50"),
    "gap_mlp_recall": ("oracle_gap", "mlp_recall"),
    "gap_knn_recall": ("oracle_gap", "knn_recall"),
    "gap_soft_prompt": ("oracle_gap", "soft_prompt"),
    "gap_relearn_at_50": ("oracle_gap", "relearn_at_50"),
    "gap_retain_at_50": ("oracle_gap", "retain_at_50"),
}
# the audit columns of the bench / unlearn results table (ktmu.report.tables): column -> headline key
BENCH_COLUMNS: dict[str, str] = {"alias leak": "held_out_alias", "probe": "probe_recall", "MLP": "mlp_recall", "kNN": "knn_recall",
                                 "relearn@50": "relearn_at_50", "soft-prompt": "soft_prompt", "erasure probe": "erasure_probe",
                                 "erasure relearn": "erasure_relearn", "retain@50": "retain_at_50", "WC-Quality": "wc_quality"}
FRACTIONS = {"recovery", "erasure_probe", "erasure_relearn"}  # printed with 2 decimals (the rest are percent, 1 decimal)
# seed-free diagnostics (one value per set of weights; no interval): key -> path
DIAGNOSTICS: dict[str, tuple[str, ...]] = {
    "steps_to_half": ("relearn", "forget", "steps_to_half"),
    "weight_distance": ("weights", "relative_distance"),
    "loss_barrier": ("weights", "barrier"),
    "ks_statistic": ("indistinguishability", "ks_statistic"),
    "ks_p_value": ("indistinguishability", "p_value"),
}


def _num(v: float | None, digits: int = 1) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def get_path(rec: Mapping, *path: str):
    """``rec[path[0]][path[1]]...``, or None when a part is missing or was skipped."""
    cur = rec
    for key in path:
        if not isinstance(cur, Mapping) or "skipped" in cur or key not in cur:
            return None
        cur = cur[key]
    return cur


def headline(rec: Mapping, key: str) -> tuple[float | None, Interval | None]:
    """One headline number of a model's audit record: the mean over seeds and its interval when it has one, else its value and None."""
    mean, iv = rec.get("mean") or {}, (rec.get("interval") or {}).get(key)
    if key not in mean:
        return get_path(rec, *HEADLINE[key]), None
    value = mean[key]
    if value is None or iv is None or iv.get("half_width") is None:  # nan is written as null
        return value, None
    return value, Interval(value, iv["low"], iv["high"])


def headline_cell(rec: Mapping, key: str, digits: int = 1) -> str:
    """:func:`headline` as a table cell: ``"97.8 ± 0.4"`` with an interval, the value alone without, ``-`` when missing."""
    value, iv = headline(rec, key)
    return format_interval(iv, digits) if iv is not None else _num(value, digits)


def audit_cells(rec: Mapping) -> dict[str, str]:
    """The table cells of one model's audit record (``-`` for a probe that was skipped or not measured)."""
    mass = rec.get("mass") or {}
    wc = rec.get("worst_case") or {}
    wc_cell = "-" if headline(rec, "wc_quality")[0] is None else f"{headline_cell(rec, 'wc_quality')} ({wc.get('probe')})"
    keys = {"D_f fine": "d_f_fine", "held-out alias": "held_out_alias", "held-out tmpl": "held_out_template", "probe recall": "probe_recall",
            "MLP recall": "mlp_recall", "kNN recall": "knn_recall", "soft-prompt": "soft_prompt", "relearn@50": "relearn_at_50",
            "retain@50": "retain_at_50", "erasure probe": "erasure_probe", "erasure relearn": "erasure_relearn", "recovery": "recovery"}
    cells = {col: headline_cell(rec, key, 2 if key in FRACTIONS else 1) for col, key in keys.items()}
    cells["mass f/s/o"] = "/".join(_num(None if mass.get(k) is None else 100 * mass[k], 0) for k in ("forgotten", "sibling", "other")) if mass else "-"
    cells["Quality"] = headline_cell(rec, "quality")
    cells["WC-Quality"] = wc_cell
    return {col: cells[col] for col in COLUMNS}


def diagnostic_cells(rec: Mapping) -> dict[str, str]:
    """The seed-free diagnostics of one model's record: steps to half the original's D_f accuracy, weight distance, loss barrier, KS test."""
    half, reached = get_path(rec, *DIAGNOSTICS["steps_to_half"]), get_path(rec, "relearn", "forget", "steps_to_half_reached")
    ks, p = get_path(rec, *DIAGNOSTICS["ks_statistic"]), get_path(rec, *DIAGNOSTICS["ks_p_value"])
    return {"steps to half": "-" if half is None else (f"{half}" if reached else f">{half}"),
            "weight distance": _num(get_path(rec, *DIAGNOSTICS["weight_distance"]), 3),
            "D_f loss barrier": _num(get_path(rec, *DIAGNOSTICS["loss_barrier"]), 3),
            "KS vs oracle (p)": "-" if ks is None else f"{ks:.2f} ({p:.2g})"}


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    fmt = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return [fmt(head), "-" * (sum(widths) + 2 * (len(widths) - 1))] + [fmt(r) for r in rows]


def audit_table(result: Mapping) -> str:
    """A plain-text table of an audit record (``ktmu audit``'s audit.json), one row per model, and what each column is."""
    models = result["models"]
    lines = _table(["model", *COLUMNS], [[role, *audit_cells(rec).values()] for role, rec in models.items()])
    steps = (result.get("settings") or {}).get("relearn", {}).get("steps", [])
    budget = steps[-1] if steps else "?"
    lines.append(f"D_f fine: canonical names; held-out alias / tmpl: D_f fine accuracy under the worst held-out name / template; "
                 f"probe / MLP / kNN recall: probes on frozen image features; soft-prompt: D_f fine with a learned text feature, weights "
                 f"frozen; relearn@50: D_f fine after 50 fine-tuning steps on a few unseen images of each concept (retain@50: on kept "
                 f"concepts only); erasure: 1 = the oracle's reading, 0 = the original's; recovery: (relearn - model) / (original - model) "
                 f"at {budget} steps; mass f/s/o: % of D_f predicted as a forgotten / sibling / other concept; WC-Quality: worst-case "
                 f"Quality (the probe that set it).")
    diag = [[role, *diagnostic_cells(rec).values()] for role, rec in models.items()]
    lines += [""] + _table(["model", *diagnostic_cells({})], diag)
    lines.append(f"steps to half: first measured relearning step with half the original's D_f fine accuracy ('>{budget}': not within "
                 f"the budget); weight distance: ||w - w_original|| / ||w_original||; D_f loss barrier: the largest rise of the D_f loss "
                 f"above the straight line from the original's weights; KS: Kolmogorov-Smirnov statistic of the D_f margins against the "
                 f"oracle's (p-value).")
    if result.get("interval_seeds"):
        lines.append(f"mean ± 95 % interval over {result['interval_seeds']} seeds (bootstrap over D_f test images, pooled over seeds); "
                     "mass f/s/o, the worst-case probe and the diagnostics: the first seed's.")
    for note in (result.get("settings") or {}).get("notes") or []:
        lines.append(f"note: {note}")
    for role, rec in models.items():
        notes = [f"{k}: {v['skipped']}" for k, v in _skipped_parts(rec)]
        if notes:
            lines.append(f"{role}: skipped " + "; ".join(notes))
    return "\n".join(lines)


def _skipped_parts(rec: Mapping, prefix: str = ""):
    for k, v in rec.items():
        if isinstance(v, Mapping):
            if "skipped" in v:
                yield prefix + k, v
            else:
                yield from _skipped_parts(v, f"{prefix}{k}.")
