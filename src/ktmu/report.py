"""Result tables: one row for the original model and one per unlearning run."""
from __future__ import annotations

from typing import Sequence

COLUMNS = ("D_f coarse", "D_f fine", "D_r coarse", "D_r fine", "Quality", "Utility", "Q-U", "Zero-shot")


def _row(name: str, acc: dict, summary: dict | None) -> list[str]:
    cells = [acc["forget_coarse"], acc["forget_fine"], acc["retain_coarse"], acc["retain_fine"]]
    q = [summary["quality"], summary["utility"], summary["qu"]] if summary else [None] * 3
    return [name] + [f"{v:.2f}" if v is not None else "-" for v in cells + q + [acc["zero_shot"]]]


def table_rows(original: dict, records: Sequence[dict]) -> list[list[str]]:
    rows = [_row("original", original, None)]
    rows += [_row(r["method"], r["unlearned"], r) for r in records]
    return rows


def markdown_table(original: dict, records: Sequence[dict]) -> str:
    head = ["method", *COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * len(COLUMNS)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in table_rows(original, records)]
    return "\n".join(lines)


def text_table(original: dict, records: Sequence[dict]) -> str:
    head = ["method", *COLUMNS]
    rows = [head] + table_rows(original, records)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    fmt = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return "\n".join([fmt(rows[0]), "-" * (sum(widths) + 2 * (len(widths) - 1))] + [fmt(r) for r in rows[1:]])
