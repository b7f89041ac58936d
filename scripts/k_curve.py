"""The K-curve table: one row per (method, --neighbours K) from audited multi-seed benches, with each bench's oracle.

Reads the ``results.json`` of ``ktmu bench --audit --seeds N [--neighbours K]`` folders and prints one
Markdown table: Q-U, zero-shot, held-out alias leak, linear / MLP / kNN probe recall, relearn@50,
soft-prompt, both erasures, retain@50 (mean ± half the 95 % interval, as the bench computed them),
then the means over seeds of the KS statistic against the oracle, the D_f loss barrier and the
relative weight distance. Each bench's oracle row follows its methods: with K > 0 the audit draws
its images outside the neighbours, so each bench has its own oracle numbers. Example::

    python scripts/k_curve.py runs/curve/k0-nhl-kl+sam-nhl-kl runs/curve/k16-merge-mmd
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Mapping

AUDIT = (("held_out_alias", "alias leak"), ("probe_recall", "probe"), ("mlp_recall", "MLP"), ("knn_recall", "kNN"),
         ("relearn_at_50", "relearn@50"), ("soft_prompt", "soft-prompt"), ("erasure_probe", "erasure probe"),
         ("erasure_relearn", "erasure relearn"), ("retain_at_50", "retain@50"))


def cell(mean: Mapping[str, Any], interval: Mapping[str, Any], key: str, digits: int = 1) -> str:
    """'mean ± half-width' (or the mean alone, or '-')."""
    value = mean.get(key)
    if value is None:
        return "-"
    half = (interval.get(key) or {}).get("half_width")
    return f"{value:.{digits}f}" + (f" ± {half:.{digits}f}" if half is not None else "")


def seed_mean(seeds: list[Mapping], role: str, *path: str) -> str:
    """The mean over seeds of one number of each seed's audit record (``-`` when no seed has it)."""
    values = []
    for s in seeds:
        node: Any = s.get("audit", {}).get("models", {}).get(role, {})
        for p in path:
            node = node.get(p) if isinstance(node, Mapping) else None
        if isinstance(node, (int, float)):
            values.append(float(node))
    return f"{sum(values) / len(values):.3f}" if values else "-"


def rows_of(folder: Path) -> list[list[str]]:
    """The table rows of one bench: its methods, then its oracle."""
    record = json.loads((folder / "results.json").read_text())
    out = []
    for row in record["rows"]:
        k = (row.get("neighbours") or {}).get("k", 0)
        models = row["audit"]["models"]
        u = models["unlearned"]
        digits = {"erasure_probe": 2, "erasure_relearn": 2}
        out.append([row["method"], str(k), cell(row["mean"], row["interval"], "qu"), cell(row["mean"], row["interval"], "zero_shot"),
                    *[cell(u["mean"], u["interval"], key, digits.get(key, 1)) for key, _ in AUDIT],
                    seed_mean(row["seeds"], "unlearned", "indistinguishability", "ks_statistic"),
                    seed_mean(row["seeds"], "unlearned", "weights", "barrier"), seed_mean(row["seeds"], "unlearned", "weights", "relative_distance")])
    first = record["rows"][0]
    oracle = first["audit"]["models"].get("oracle")
    if oracle is not None:
        k = (first.get("neighbours") or {}).get("k", 0)
        out.append([f"oracle (K = {k} draws)", "-", "-", "-", *[cell(oracle["mean"], oracle["interval"], key, 2 if "erasure" in key else 1)
                                                            for key, _ in AUDIT],
                    "-", seed_mean(first["seeds"], "oracle", "weights", "barrier"), seed_mean(first["seeds"], "oracle", "weights", "relative_distance")])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("benches", nargs="+", type=Path, help="folders of ktmu bench --audit --seeds N runs")
    args = parser.parse_args()
    head = ["method", "K", "Q-U", "zero-shot", *[name for _, name in AUDIT], "KS vs oracle", "loss barrier", "weight distance"]
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|")
    for folder in args.benches:
        for row in rows_of(folder):
            print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
