"""The report's text sections: which runs, with what provenance, and their headline tables (HTML fragments)."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from ktmu.audit.report import COLUMNS as AUDIT_TABLE_COLUMNS, audit_cells
from ktmu.report.html import esc, note, table
from ktmu.report.runs import Run, describe_request, dig, seed_records
from ktmu.report.tables import table_columns, table_rows


def _seeds(run: Run) -> str:
    """The seeds a run used, e.g. ``0, 1, 2`` (each row's training seeds; an audit's draw seeds)."""
    if run.audit is not None:
        draws = [dig(a, "request", "draw_seed", default=dig(a, "request", "seed")) for a in run.audit.get("seeds") or [run.audit]]
        return ", ".join(str(s) for s in draws if s is not None) or "-"
    seeds = sorted({s.get("seed") for r in run.rows for s in seed_records(r) if isinstance(s.get("seed"), int)})
    return ", ".join(map(str, seeds)) or "-"


def _first_row(run: Run) -> Mapping:
    return run.rows[0] if run.rows else {}


def run_overview(runs: Sequence[Run]) -> str:
    """One line per run: its kind, request, model, methods, seeds and folder."""
    rows = []
    for run in runs:
        first = _first_row(run)
        if run.kind == "perf":
            what, model = "step time per method", (run.perf or {}).get("model", "?")
        else:
            what = describe_request(run.request)
            model = dig(first, "config", "model", default=dig(run.audit or {}, "provenance", "models", "unlearned", default="?"))
        methods = ", ".join(str(r.get("method")) for r in run.rows) or ("-" if run.kind != "audit" else ", ".join((run.audit or {}).get("models", {})))
        rows.append([run.label, run.kind, what, model, methods, _seeds(run), str(run.path)])
    out = table(["run", "kind", "request", "model", "methods / models", "seeds", "path"], rows, text_columns=(1, 2, 3, 4, 6))
    for run in runs:
        out += "".join(note(f"{run.label}: {n}") for n in run.notes)
    return out


def _pairs(items: Sequence[tuple[str, Any]]) -> str:
    rows = [[k, v] for k, v in items if v not in (None, "", [], {})]
    return table(None, rows, text_columns=(1,)) if rows else "<p>not recorded</p>"


def provenance(run: Run) -> str:
    """Where a run's numbers come from: model, commit, command line, recipe, seeds, device, precision, versions, settings."""
    first = _first_row(run)
    prov = run.top.get("provenance") or first.get("provenance") or {}
    if run.kind == "perf":
        p = run.perf or {}
        items = [("model", p.get("model")), ("device", p.get("device")), ("precision", p.get("precision")), ("train", p.get("train")),
                 ("batch size", p.get("batch_size")), ("repeats", p.get("repeats")), ("path", str(run.path))]
        return f"<h3>{esc(run.label)}</h3>" + _pairs(items)
    runtime = dig(first, "config", "runtime", default={})
    recipe = run.top.get("recipe") or first.get("recipe") or {}
    versions = first.get("versions") or prov.get("versions") or {}
    items = [
        ("model", dig(first, "config", "model", default=None) or _models(prov)),
        ("git commit", first.get("git_commit") or prov.get("git_commit")),
        ("command", prov.get("command")),
        ("recipe", f"{recipe.get('path')} (sha256 {str(recipe.get('sha256', ''))[:12]}…)" if recipe.get("path") else None),
        ("recipe values changed on the command line", ", ".join(recipe.get("overridden_on_command_line") or []) or None),
        ("seeds", _seeds(run)),
        ("device", runtime.get("device")), ("precision", runtime.get("precision")), ("trainable weights", runtime.get("train")),
        ("forget set", f"{dig(run.request or {}, 'forget_set_size', default='?')} images "
                       f"(at most {dig(run.request or {}, 'max_per_concept', default='?')} per concept)" if run.request else None),
        ("neighbours", _neighbours(first)),
        ("data", dig(prov, "data_root", "path")), ("hierarchy", dig(prov, "hierarchy", "path")),
        ("bench time", f"{run.top['seconds']} s" if run.kind == "bench" and "seconds" in run.top else None),
        ("versions", ", ".join(f"{k} {v}" for k, v in versions.items())),
    ]
    out = f"<h3>{esc(run.label)} ({esc(run.kind)})</h3>" + _pairs(items)
    if run.rows:
        out += method_settings(run.rows)
    if run.audit is not None:
        out += _audit_settings(run.audit)
    return out


def _models(prov: Mapping) -> str | None:
    models = prov.get("models")
    return ", ".join(f"{k}: {v}" for k, v in models.items()) if isinstance(models, Mapping) else None


def _neighbours(record: Mapping) -> str | None:
    """Issue 13's neighbour exemplars, when the record has them (K, scope, hash of the drawn images)."""
    n = record.get("neighbours")
    if isinstance(n, Mapping):
        return ", ".join(f"{k} {v}" for k, v in n.items() if not isinstance(v, (list, dict)))
    return None if n is None else str(n)


def method_settings(rows: Sequence[Mapping]) -> str:
    """Per method: learning rate, epochs, the selected epoch, the selection rule and every hyperparameter."""
    head = ["method", "lr", "epochs", "selected epoch", "hyperparameters", "train s", "selection rule"]
    body = []
    for r in rows:
        hyper = {k: v for k, v in (dig(r, "config", "method", default={}) or {}).items() if k not in ("lr", "epochs")}
        body.append([r.get("method"), dig(r, "config", "train", "lr", default="-"), dig(r, "config", "train", "epochs", default="-"),
                     dig(r, "config", "selected_epoch", default="-"), ", ".join(f"{k}={v}" for k, v in hyper.items()) or "-",
                     dig(r, "config", "train_seconds", default="-"), dig(r, "config", "selection_rule", default="-")])
    return table(head, body, text_columns=(4, 6))


def _audit_settings(audit: Mapping) -> str:
    s = audit.get("settings") or {}
    relearn = s.get("relearn") or {}
    items = [("probe train images", s.get("probe_train_images")), ("probe images per class", s.get("probe_per_class")),
             ("relearning steps", ", ".join(map(str, relearn.get("steps") or []))), ("relearning lr", relearn.get("lr")),
             ("relearning images", ", ".join(f"{k} {v}" for k, v in (s.get("relearn_images") or {}).items())),
             ("audit seeds pooled", audit.get("interval_seeds"))]
    return _pairs(items)


def headline_table(run: Run) -> str:
    """The run's results table, the same cells as the command line prints (intervals, flags, audit columns)."""
    if run.kind == "audit":
        models = (run.audit or {}).get("models") or {}
        rows = [[role, *audit_cells(rec).values()] for role, rec in models.items() if isinstance(rec, Mapping)]
        return table(["model", *AUDIT_TABLE_COLUMNS], rows)
    if not run.rows or not run.original:
        return "<p>no results rows in this run</p>"
    try:
        rows = table_rows(run.original, run.rows)
        head = ["method", *table_columns(run.rows)]
    except (KeyError, TypeError, AttributeError) as e:  # a record from another ktmu version: say so rather than fail
        return note(f"{run.label}: its records lack what the results table needs ({type(e).__name__}: {e}); the figures below "
                    "show what they do hold.")
    classes = ["original"] + [""] * (len(rows) - 1)  # table_rows may add rows of its own (an audited bench's oracle)
    rows += [[m] + ["not finished"] + [""] * (len(head) - 2) for m in run.missing]
    classes += ["missing"] * len(run.missing)
    return table(head, rows, row_classes=classes, flag_column=len(head) - 1)


def sequence_table(run: Run) -> str:
    """A sequence's table (:mod:`ktmu.report.sequence`: each concept after each step, the cumulative scores), as ktmu wrote it."""
    saved = run.top.get("table")
    if isinstance(saved, Mapping) and isinstance(saved.get("head"), list) and isinstance(saved.get("rows"), list):
        return table(saved["head"], saved["rows"])
    return "<p>this sequence's results.json holds no table.</p>"
