"""The audit table: one row per model, the numbers that say whether the knowledge is gone or only its name."""
from __future__ import annotations

from typing import Mapping

COLUMNS = ("D_f fine", "held-out alias", "held-out tmpl", "probe recall", "relearn", "recovery", "mass f/s/o", "Quality", "WC-Quality")


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


def audit_cells(rec: Mapping) -> dict[str, str]:
    """The table cells of one model's audit record (``-`` for a probe that was skipped or not measured)."""
    mass = rec.get("mass") or {}
    wc = rec.get("worst_case") or {}
    wc_cell = "-" if wc.get("quality") is None else f"{wc['quality']:.1f} ({wc.get('probe')})"
    recovery = get_path(rec, "relearn", "forget", "recovery")
    return {
        "D_f fine": _num(get_path(rec, "name", "d_f_fine")),
        "held-out alias": _num(get_path(rec, "aliases", "held_out", "worst")),
        "held-out tmpl": _num(get_path(rec, "templates", "held_out", "worst")),
        "probe recall": _num(get_path(rec, "linear_probe", "forgotten_recall")),
        "relearn": _num(get_path(rec, "relearn", "forget", "after")),
        "recovery": _num(recovery, 2),
        "mass f/s/o": "/".join(_num(None if mass.get(k) is None else 100 * mass[k], 0) for k in ("forgotten", "sibling", "other")) if mass else "-",
        "Quality": _num(wc.get("study_quality")),
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
