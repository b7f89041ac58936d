"""Result tables: one row for the original model and one per unlearning run.

Next to the study's Quality / Utility / Q-U, ``Q-U*`` is the chance-aware Q-U (accuracies
rescaled so chance = 0, see :mod:`ktmu.evaluation.metrics`), and ``flags`` marks runs whose numbers must not
be read at face value: ``COLLAPSED`` (the model predicts near chance or mostly one class),
``UNCHANGED`` (its weights equal the original's) and ``UNKNOWN-CONCEPT`` (the original model did not
know what was forgotten, so forgetting it measures nothing).

When runs carry a knowledge audit (``--audit``), :data:`AUDIT_COLUMNS` are added
(:data:`ktmu.audit.report.BENCH_COLUMNS`): ``alias leak`` (D_f fine accuracy under the worst
held-out name), ``probe`` / ``MLP`` / ``kNN`` (recall of the forgotten concepts by probes on frozen
image features), ``relearn@50`` (D_f fine accuracy after 50 relearning steps), ``soft-prompt``
(D_f fine accuracy with a learned text feature, weights frozen), ``erasure probe`` / ``erasure
relearn`` (1 = the oracle's reading, 0 = the original's), ``retain@50`` (after 50 steps on kept
concepts only) and ``WC-Quality`` (worst-case Quality); see :mod:`ktmu.audit.run`. When the audits
carry an oracle, it gets a row of its own (audit columns only).

A run over several seeds (``--seeds N``, see :mod:`ktmu.evaluation.seeds`) carries ``mean`` and ``interval``:
its row shows the means over seeds, ``Q-U``, ``Q-U*`` and ``Zero-shot`` as ``97.8 ± 0.4`` (mean ±
half the 95 % interval), and the flags raised by any seed. Its audit columns likewise show the
mean ± half-width of the audit's headline numbers over seeds (:mod:`ktmu.audit.seeds`).
"""
from __future__ import annotations

import math
from typing import Sequence

from ktmu.audit.report import BENCH_COLUMNS, FRACTIONS

COLUMNS = ("D_f coarse", "D_f fine", "D_r coarse", "D_r fine", "Quality", "Utility", "Q-U", "Zero-shot", "Q-U*", "flags")
AUDIT_COLUMNS = tuple(BENCH_COLUMNS)


def flag_words(record: dict) -> str:
    """The run's warnings as short words ('-' for a clean run); over several seeds, those of any seed."""
    words = []
    for r in record.get("seeds") or [record]:
        f = r.get("flags") or {}
        words += [w for w, on in (("COLLAPSED", f.get("collapsed")), ("UNCHANGED", f.get("unchanged")),
                                  ("UNKNOWN-CONCEPT", f and not f.get("original_knows_concept", True))) if on and w not in words]
    return ",".join(words) or "-"


def _fmt(v: float | str | None) -> str:
    if isinstance(v, str):
        return v
    return "-" if v is None else ("nan" if isinstance(v, float) and math.isnan(v) else f"{v:.2f}")


def _with_interval(summary: dict, key: str) -> float | str | None:
    """``"97.8 ± 0.4"`` when the run carries an interval for ``key``, else the plain value."""
    value, iv = summary.get(key), (summary.get("interval") or {}).get(key)
    if iv is None or value is None or math.isnan(value):
        return value
    from ktmu.evaluation.intervals import Interval, format_interval

    return format_interval(Interval(value, iv["low"], iv["high"]))


def _row(name: str, acc: dict, summary: dict | None) -> list[str]:
    mean = (summary or {}).get("mean")
    if mean:  # several seeds: every number is the mean over seeds
        acc = {**acc, **{k: v for k, v in mean.items() if k in acc}}
        summary = {**summary, **{k: v for k, v in mean.items() if k in summary}}
    cells = [acc["forget_coarse"], acc["forget_fine"], acc["retain_coarse"], acc["retain_fine"]]
    q = [summary["quality"], summary["utility"], _with_interval(summary, "qu")] if summary else [None] * 3
    zero_shot = _with_interval({"zero_shot": acc["zero_shot"], "interval": summary.get("interval")}, "zero_shot") if summary else acc["zero_shot"]
    tail = [_with_interval(summary, "qu_ca")] if summary else [None]
    return [name] + [_fmt(v) for v in cells + q + [zero_shot] + tail] + [flag_words(summary) if summary else ""]


def _audited(records: Sequence[dict]) -> bool:
    return any("audit" in r for r in records)


def _audit_cells(audit_model: dict | None) -> list[str]:
    """The audit columns of one model's audit record ('-' where missing or skipped); over seeds, ``mean ± half-width``."""
    if not audit_model:
        return ["-"] * len(AUDIT_COLUMNS)
    from ktmu.evaluation.intervals import format_interval
    from ktmu.audit.report import headline

    cells = []
    for key in BENCH_COLUMNS.values():
        value, iv = headline(audit_model, key)
        cells.append(format_interval(iv, 2 if key in FRACTIONS else 1) if iv is not None else _fmt(value))
    return cells


def _columns(records: Sequence[dict]) -> tuple[str, ...]:
    """COLUMNS, with the audit columns before ``flags`` when a run carries an audit."""
    return COLUMNS[:-1] + AUDIT_COLUMNS + COLUMNS[-1:] if _audited(records) else COLUMNS


def table_rows(original: dict, records: Sequence[dict]) -> list[list[str]]:
    rows = [_row("original", original, None)]
    rows += [_row(r["method"], r["unlearned"], r) for r in records]
    if _audited(records):  # the original's (and the oracle's) audit is the same in every audited run's record
        first = next(r["audit"] for r in records if "audit" in r)
        audits = [first["models"].get("original")] + [(r.get("audit") or {}).get("models", {}).get("unlearned") for r in records]
        rows = [row[:-1] + _audit_cells(a) + row[-1:] for row, a in zip(rows, audits)]
        oracle = first["models"].get("oracle")
        if oracle:
            rows.append(["oracle"] + ["-"] * (len(COLUMNS) - 1) + _audit_cells(oracle) + [""])
    return rows


def markdown_table(original: dict, records: Sequence[dict], original_label: str = "original") -> str:
    """The table in Markdown; ``original_label`` names the first row (``previous`` for a model earlier requests changed)."""
    return markdown_lines(["method", *_columns(records)], _relabel(table_rows(original, records), original_label), text_last=True)


def text_table(original: dict, records: Sequence[dict], original_label: str = "original") -> str:
    """The table as aligned text (what the commands print); ``original_label`` names the first row."""
    return aligned(["method", *_columns(records)], _relabel(table_rows(original, records), original_label), text_last=True)


def _relabel(rows: list[list[str]], label: str) -> list[list[str]]:
    return [[label, *rows[0][1:]], *rows[1:]]


def markdown_lines(head: Sequence[str], rows: Sequence[Sequence[str]], text_last: bool = False) -> str:
    """A Markdown table: the first column (and with ``text_last`` the last) left-aligned, the others right-aligned numbers."""
    inner = len(head) - (2 if text_last else 1)
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * inner + (["---"] if text_last else [])) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def aligned(head: Sequence[str], rows: Sequence[Sequence[str]], text_last: bool = False) -> str:
    """Rows as aligned text under ``head`` and a rule: the first column (and with ``text_last`` the last) left-aligned, the others right-aligned."""
    rows = [list(head), *map(list, rows)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    left = {0, len(head) - 1} if text_last else {0}
    fmt = lambda r: "  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return "\n".join([fmt(rows[0]), "-" * (sum(widths) + 2 * (len(widths) - 1))] + [fmt(r).rstrip() for r in rows[1:]])


table_columns = _columns  # the public name: the HTML report prints the same columns (ktmu.report.sections)
format_value = _fmt  # public names for the other tables (ktmu.report.sequence): one number format, one "± interval" rule
with_interval = _with_interval
