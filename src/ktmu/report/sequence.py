"""The table of requests forgotten over time: after each step, every concept forgotten so far and the cumulative cost.

One row per step of a sequence (and the all-at-once run), each from its record's ``cumulative`` part
(:mod:`ktmu.evaluation.cumulative`), under a ``base`` row of the model no request touched:

* one column per forgotten concept: its D_f accuracy at its level (fine for a fine concept), in
  percent, ``-`` before the step that forgets it; a concept an earlier step forgot and a later one
  reopened shows here by name;
* ``Quality``, ``Utility``, ``Q-U``: every concept forgotten so far as one request, against the base;
* ``Zero-shot`` and ``ZS drop``: the model's zero-shot accuracy, and the points lost since the base;
* ``step Q-U``: the step's own Q-U against the model it started from (its cost alone).

Over several seeds every cell is the mean over seeds, and Q-U and zero-shot show ``± half`` the 95 % interval.
"""
from __future__ import annotations

from typing import Sequence

from ktmu.report.tables import aligned, format_value, markdown_lines, with_interval

TAIL = ("Quality", "Utility", "Q-U", "Zero-shot", "ZS drop", "step Q-U")


def _concepts(rows: Sequence[tuple[str, dict]]) -> list[str]:
    """Every concept some row's cumulative record holds, in the order the rows first forget them."""
    return list(dict.fromkeys(c for _, record in rows for c in record["cumulative"]["concepts"]))


def _base_row(rows: Sequence[tuple[str, dict]], concepts: Sequence[str]) -> list[str]:
    base = {}
    for _, record in rows:
        base.update({c: v["base"] for c, v in record["cumulative"]["concepts"].items()})
    zero_shot = rows[0][1]["cumulative"]["base"]["zero_shot"]
    return ["base", *[format_value(base[c]) for c in concepts], *["-"] * 3, format_value(zero_shot), "-", "-"]


def _row(label: str, record: dict, concepts: Sequence[str]) -> list[str]:
    cum = record["cumulative"]
    means = cum.get("concepts_mean") or {c: {"unlearned": v["unlearned"]} for c, v in cum["concepts"].items()}
    mean = cum.get("mean") or {}
    value = {k: mean.get(k, cum.get(k)) for k in ("quality", "utility", "qu", "zero_shot_drop")}
    value["zero_shot"] = mean.get("zero_shot", cum["unlearned"]["zero_shot"])
    value["interval"] = cum.get("interval")
    step = {"qu": (record.get("mean") or {}).get("qu", record.get("qu")), "interval": record.get("interval")}
    cells = [format_value(means[c]["unlearned"]) if c in means else "-" for c in concepts]
    return [label, *cells, format_value(value["quality"]), format_value(value["utility"]), format_value(with_interval(value, "qu")),
            format_value(with_interval(value, "zero_shot")), format_value(value["zero_shot_drop"]), format_value(with_interval(step, "qu"))]


def sequence_rows(rows: Sequence[tuple[str, dict]]) -> tuple[list[str], list[list[str]]]:
    """The table's head and rows for ``(label, record)`` pairs, each record holding a ``cumulative`` part; the ``base`` row first."""
    concepts = _concepts(rows)
    return ["after", *concepts, *TAIL], [_base_row(rows, concepts), *[_row(label, record, concepts) for label, record in rows]]


def sequence_text_table(rows: Sequence[tuple[str, dict]]) -> str:
    """The table as aligned text (what ``ktmu sequence`` prints)."""
    return aligned(*sequence_rows(rows))


def sequence_markdown(rows: Sequence[tuple[str, dict]]) -> str:
    """The table in Markdown (``table.md``)."""
    return markdown_lines(*sequence_rows(rows))
