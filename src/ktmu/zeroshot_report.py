"""Zero-shot evaluation of a backbone on named worlds, as the ``ktmu eval`` JSON schema and a table."""
from __future__ import annotations

from typing import Sequence

from .backbones import Backbone
from .data import load_dataset
from .evaluate import ZeroShotEvaluator


def evaluate_domains(backbone: Backbone, domains: Sequence[str], split: str = "test", progress: bool = False) -> dict:
    """``{"model", "domains": {name: {"coarse_acc"?, "fine_acc", "per_class", "ece"}}}`` (percentages)."""
    out = {}
    for name in domains:
        ev = ZeroShotEvaluator(load_dataset(name, split), backbone.preprocess, progress=progress)
        out[name] = ev.evaluate(backbone).summary()
    return {"model": backbone.name, "domains": out}


def format_eval_table(result: dict) -> str:
    rows = [f"{'domain':<10} {'coarse %':>9} {'fine %':>8} {'ECE':>6}", "-" * 36]
    for name, r in result["domains"].items():
        coarse = f"{r['coarse_acc']:.2f}" if "coarse_acc" in r else "-"
        rows.append(f"{name:<10} {coarse:>9} {r['fine_acc']:>8.2f} {r['ece']:>6.3f}")
    worst = []
    for name, r in result["domains"].items():
        lo = sorted(r["per_class"].items(), key=lambda kv: kv[1])[:3]
        worst.append(f"{name}: " + ", ".join(f"{k} {v:.1f}" for k, v in lo))
    return "\n".join(rows + ["hardest classes  " + " | ".join(worst)])
