"""Reading what ktmu wrote into run folders (unlearn, bench, audit, perf), for ``ktmu report``.

Every reader is defensive: records written by older or newer ktmu versions may lack keys (or
carry new ones, such as issue 13's ``neighbours``); a missing part is reported as missing, never
a crash. What a folder holds decides its kind:

* ``results.json`` with ``rows``: a finished bench (with ``steps`` as well: a ``ktmu sequence``); with
  ``method``: an unlearn run;
* ``bench.json`` and ``methods/<method>.json`` without ``results.json``: a bench that has not
  finished (its finished methods are read, the others named as missing);
* ``audit.json``: a ``ktmu audit`` run (a folder may hold it beside an unlearn run's results);
* a ``ktmu perf --json`` file (given as the file, or as any ``*.json`` at the top of the folder).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ktmu.errors import KtmuError

KINDS = ("unlearn", "bench", "audit", "perf", "sequence")
EXPECTED = ("results.json (ktmu unlearn, bench or sequence), bench.json with methods/*.json (a bench that has not finished), "
            "audit.json (ktmu audit) or a ktmu perf --json file")


class ReportError(KtmuError, ValueError):
    """Run folders that cannot be reported as asked; the message says what was expected."""


@dataclass
class Run:
    """One ktmu result read from disk: its kind, a label for the page, and its records as ktmu wrote them."""

    path: Path
    kind: str  # one of KINDS
    label: str = ""
    rows: list[dict] = field(default_factory=list)  # unlearning records (results.json rows), one per method
    original: dict | None = None  # the original model's scores (unlearn / bench)
    request: dict | None = None  # the request record (world, goal, concepts, ...)
    audit: dict | None = None  # audit.json (kind audit)
    perf: dict | None = None  # the perf record (kind perf)
    top: dict = field(default_factory=dict)  # the file's top-level record (bench: level, seconds, provenance, recipe)
    missing: list[str] = field(default_factory=list)  # methods of an unfinished bench that have no record yet
    notes: list[str] = field(default_factory=list)  # said on the page next to this run

    @property
    def audited(self) -> bool:
        """Whether the run carries a knowledge audit (its own, or in its rows)."""
        return self.audit is not None or any("audit" in r for r in self.rows)


def read_json(path: Path) -> Any:
    """A JSON file ktmu wrote; an unreadable or malformed one is a :class:`ReportError` naming it."""
    try:
        return json.loads(path.read_text())
    except OSError as e:
        raise ReportError(f"cannot read {path} ({e.strerror or e}).") from e
    except json.JSONDecodeError as e:
        raise ReportError(f"{path} is not valid JSON ({e}); it was not written by ktmu, or was cut short.") from e


def is_perf(record: Any) -> bool:
    """Whether a JSON record is a ``ktmu perf`` result."""
    return isinstance(record, dict) and "step_ratio" in record and "step_seconds" in record


def is_audit(record: Any) -> bool:
    """Whether a JSON record is a ``ktmu audit`` result (audit.json)."""
    return isinstance(record, dict) and isinstance(record.get("models"), dict) and "settings" in record


def is_sequence(record: Any) -> bool:
    """Whether a JSON record is a finished ``ktmu sequence`` (its results.json: ``steps`` and one row per step)."""
    return isinstance(record, dict) and isinstance(record.get("steps"), list) and isinstance(record.get("rows"), list)


def _from_record(path: Path, record: Any) -> Run:
    """The run that one results/audit/perf record describes."""
    if is_perf(record):
        return Run(path, "perf", perf=record, top=record)
    if is_audit(record):
        return Run(path, "audit", audit=record, request=record.get("request"), top=record)
    if is_sequence(record):  # each row: one step's (or the all-at-once run's) record, under its label
        rows = [{**r["record"], "label": r.get("label")} for r in record["rows"] if isinstance(r, dict) and isinstance(r.get("record"), dict)]
        return Run(path, "sequence", rows=rows, original=_first(rows, "original"), request=_first(rows, "request"), top=record)
    if isinstance(record, dict) and isinstance(record.get("rows"), list):
        rows = [r for r in record["rows"] if isinstance(r, dict)]
        request = {**(record.get("request") or {}), **(_first(rows, "request") or {})}  # the rows' adds the forget-set size
        return Run(path, "bench", rows=rows, original=record.get("original") or _first(rows, "original"), request=request or None, top=record)
    if isinstance(record, dict) and "method" in record and "unlearned" in record:
        return Run(path, "unlearn", rows=[record], original=record.get("original"), request=record.get("request"), top=record)
    raise ReportError(f"{path} is not a ktmu result; expected {EXPECTED}.")


def _first(rows: Sequence[dict], key: str) -> Any:
    return next((r[key] for r in rows if key in r), None)


def _unfinished_bench(folder: Path) -> Run:
    """A bench folder without results.json: the finished methods' records, and the names of the others."""
    manifest = read_json(folder / "bench.json")
    planned = [m for m in (manifest.get("methods") or []) if isinstance(m, str)] if isinstance(manifest, dict) else []
    files = {p.stem: p for p in sorted((folder / "methods").glob("*.json"))}
    order = planned + [m for m in files if m not in planned]
    rows = []
    for name in order:
        if name in files:
            saved = read_json(files[name])
            record = saved.get("record") if isinstance(saved, dict) else None
            if isinstance(record, dict):
                rows.append(record)
    missing = [m for m in planned if m not in files]
    if not rows:
        raise ReportError(f"{folder} holds a bench that has not finished any method yet (bench.json, but no methods/*.json); "
                          "report it once a method has finished.")
    run = Run(folder, "bench", rows=rows, original=_first(rows, "original"), request=_first(rows, "request"),
              top={"provenance": _first(rows, "provenance") or {}}, missing=missing)
    run.notes.append(f"this bench has not finished: {len(rows)} of {len(rows) + len(missing)} methods have results"
                     + (f"; missing: {', '.join(missing)}" if missing else ""))
    return run


def read_folder(folder: Path) -> list[Run]:
    """Every ktmu result in one folder (usually one; an unlearn folder may also hold an audit.json)."""
    runs: list[Run] = []
    if (folder / "results.json").is_file():
        runs.append(_from_record(folder, read_json(folder / "results.json")))
    elif (folder / "bench.json").is_file():
        runs.append(_unfinished_bench(folder))
    if (folder / "audit.json").is_file():
        runs.append(_from_record(folder, read_json(folder / "audit.json")))
    known = {"results.json", "audit.json", "bench.json", "table.md", "sequence.json"}
    for extra in sorted(p for p in folder.glob("*.json") if p.name not in known):
        try:
            record = json.loads(extra.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # not ours: a folder may hold other files
        if is_perf(record):
            runs.append(Run(extra, "perf", perf=record, top=record))
    if not runs:
        raise ReportError(f"{folder} holds no ktmu results: expected {EXPECTED}.")
    return runs


def read_runs(paths: Iterable[str | Path]) -> list[Run]:
    """The runs at ``paths`` (folders or result files), labelled uniquely for the page."""
    runs: list[Run] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            runs += read_folder(path)
        elif path.is_file():
            runs.append(_from_record(path, read_json(path)))
        else:
            raise ReportError(f"{path} does not exist; give run folders (or result files) that ktmu wrote: {EXPECTED}.")
    if not runs:
        raise ReportError(f"no run folders given; expected folders holding {EXPECTED}.")
    _label(runs)
    return runs


def _label(runs: list[Run]) -> None:
    """A short label per run: its folder (or file) name, with its kind when several runs share it, made unique."""
    names = [r.path.name or str(r.path) for r in runs]
    seen: dict[str, int] = {}
    for run, name in zip(runs, names):
        label = f"{name} ({run.kind})" if names.count(name) > 1 else name
        seen[label] = seen.get(label, 0) + 1
        run.label = label if seen[label] == 1 else f"{label} #{seen[label]}"


# ---- what the page reads off a run ---------------------------------------------------------------------
def dig(record: Any, *path: str, default: Any = None) -> Any:
    """``record[path[0]][path[1]]...`` (:func:`ktmu.audit.report.get_path`), or ``default`` when a part is missing, skipped or null."""
    from ktmu.audit.report import get_path

    value = get_path(record, *path) if isinstance(record, Mapping) else None
    return default if value is None else value


def request_key(request: Mapping | None) -> tuple:
    """What makes two runs answer the same request: world, goal and the forgotten concepts (sorted)."""
    r = request or {}
    return (r.get("world"), r.get("goal"), tuple(sorted(r.get("forget_fine") or r.get("concepts") or ())),
            tuple(sorted(r.get("forget_coarse") or ())))


def describe_request(request: Mapping | None) -> str:
    """A request in words, e.g. ``forget shirt (fine goal) in world fashion``."""
    if not request:
        return "unknown request (not recorded)"
    concepts = ", ".join(request.get("concepts") or request.get("forget_fine") or []) or "?"
    return f"forget {concepts} ({request.get('goal', '?')} goal) in world {request.get('world', '?')}"


def seed_records(record: Mapping) -> list[dict]:
    """The per-seed records of a run over several seeds, or the record itself for one seed."""
    seeds = record.get("seeds")
    return [s for s in seeds if isinstance(s, dict)] if isinstance(seeds, list) and seeds else [dict(record)]


def seed_audits(audit: Mapping | None, record: Mapping | None = None) -> list[dict]:
    """Each seed's audit record: ``ktmu audit --seeds`` keeps them under ``seeds``, a results.json row under its own ``seeds``."""
    if audit is None:
        return []
    if isinstance(audit.get("seeds"), list) and audit["seeds"]:
        return [a for a in audit["seeds"] if isinstance(a, dict)]
    if record is not None and isinstance(record.get("seeds"), list):
        per_seed = [s.get("audit") for s in record["seeds"] if isinstance(s, dict) and isinstance(s.get("audit"), dict)]
        if per_seed:
            return per_seed
    return [dict(audit)]
