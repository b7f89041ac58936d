"""The audit table: one row per model, the numbers that say whether the knowledge is gone or only its name.

Over several seeds (``--seeds N``) a model's record carries ``mean`` and ``interval`` of its
headline numbers (:mod:`ktmu.audit.seeds`); the table then prints them as ``mean ± half-width``
(:func:`ktmu.evaluation.intervals.format_interval`), and the mass f/s/o and the worst-case probe's
name are the first seed's.
"""
from __future__ import annotations

from typing import Mapping

from ktmu.evaluation.intervals import Interval, format_interval

COLUMNS = ("D_f fine", "held-out alias", "held-out tmpl", "probe recall", "relearn", "recovery", "mass f/s/o", "Quality", "WC-Quality")
# headline key -> its path in a model's audit record: what the tables print, and what gets an interval over seeds
HEADLINE: dict[str, tuple[str, ...]] = {
    "d_f_fine": ("name", "d_f_fine"),
    "held_out_alias": ("aliases", "held_out", "worst"),
    "held_out_template": ("templates", "held_out", "worst"),
    "probe_recall": ("linear_probe", "forgotten_recall"),
    "relearn_after": ("relearn", "forget", "after"),
    "recovery": ("relearn", "forget", "recovery"),
    "quality": ("worst_case", "study_quality"),
    "wc_quality": ("worst_case", "quality"),
    "gap_d_f_fine": ("oracle_gap", "d_f_fine"),
    "gap_held_out_alias": ("oracle_gap", "held_out_alias"),
    "gap_held_out_template": ("oracle_gap", "held_out_template"),
    "gap_probe_recall": ("oracle_gap", "linear_probe_recall"),
    "gap_relearn_after": ("oracle_gap", "relearn", "forget", "after"),
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
    return {
        "D_f fine": headline_cell(rec, "d_f_fine"),
        "held-out alias": headline_cell(rec, "held_out_alias"),
        "held-out tmpl": headline_cell(rec, "held_out_template"),
        "probe recall": headline_cell(rec, "probe_recall"),
        "relearn": headline_cell(rec, "relearn_after"),
        "recovery": headline_cell(rec, "recovery", 2),
        "mass f/s/o": "/".join(_num(None if mass.get(k) is None else 100 * mass[k], 0) for k in ("forgotten", "sibling", "other")) if mass else "-",
        "Quality": headline_cell(rec, "quality"),
        "WC-Quality": wc_cell,
    }


def audit_table(result: Mapping) -> str:
    """A plain-text table of an audit record (``ktmu audit``'s audit.json), one row per model, and what each column is."""
    models = result["models"]
    head = ["model", *COLUMNS]
    rows = [head] + [[role, *audit_cells(rec).values()] for role, rec in models.items()]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    fmt = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    lines = [fmt(rows[0]), "-" * (sum(widths) + 2 * (len(widths) - 1))] + [fmt(r) for r in rows[1:]]
    steps = (result.get("settings") or {}).get("relearn", {}).get("steps", [])
    budget = steps[-1] if steps else "?"
    lines.append(f"D_f fine: canonical names; held-out alias / tmpl: D_f fine accuracy under the worst held-out name / template; "
                 f"probe recall: linear probe on frozen image features; relearn: D_f fine after {budget} fine-tuning steps on a few "
                 f"unseen images of each concept; recovery: (relearn - model) / (original - model); mass f/s/o: % of D_f predicted as a "
                 f"forgotten / sibling / other concept; WC-Quality: worst-case Quality (the probe that set it).")
    if result.get("interval_seeds"):
        lines.append(f"mean ± 95 % interval over {result['interval_seeds']} seeds (bootstrap over D_f test images, pooled over seeds); "
                     "mass f/s/o and the worst-case probe: the first seed's.")
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
