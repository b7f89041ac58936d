"""Zero-shot evaluation of a backbone on several labelled splits, as the ``ktmu eval`` JSON schema and a table."""
from __future__ import annotations

from typing import Sequence

from .backbones import Backbone
from .data import ConceptDataset
from .evaluate import ZeroShotEvaluator


def evaluate_datasets(backbone: Backbone, items: Sequence[ConceptDataset | tuple[ConceptDataset, Sequence[str]]], progress: bool = False,
                      batch_size: int = 256, workers: int = 0) -> dict:
    """``{"model", "domains": {name: {"coarse_acc"?, "fine_acc", "per_class", "ece"}}}`` (percentages), one entry per split."""
    out = {}
    for item in items:
        dataset, templates = item if isinstance(item, tuple) else (item, None)
        ev = ZeroShotEvaluator(dataset, backbone.preprocess, templates, progress=progress, batch_size=batch_size, workers=workers)
        out[dataset.hierarchy.name] = ev.evaluate(backbone).summary()
    return {"model": backbone.name, "domains": out}


def evaluate_domains(backbone: Backbone, domains: Sequence[str], progress: bool = False) -> dict:
    """The same for registered zero-shot domains that ship with ktmu (e.g. ``fashion``, ``digits``)."""
    from .domains import DOMAINS

    return evaluate_datasets(backbone, [(DOMAINS.get(d).open(), DOMAINS.get(d).templates) for d in domains], progress=progress)


def format_eval_table(result: dict) -> str:
    width = max([10] + [len(n) for n in result["domains"]])
    rows = [f"{'domain':<{width}} {'coarse %':>9} {'fine %':>8} {'ECE':>6}", "-" * (width + 26)]
    for name, r in result["domains"].items():
        coarse = f"{r['coarse_acc']:.2f}" if "coarse_acc" in r else "-"
        rows.append(f"{name:<{width}} {coarse:>9} {r['fine_acc']:>8.2f} {r['ece']:>6.3f}")
    worst = []
    for name, r in result["domains"].items():
        lo = sorted(r["per_class"].items(), key=lambda kv: kv[1])[:3]
        worst.append(f"{name}: " + ", ".join(f"{k} {v:.1f}" for k, v in lo))
    return "\n".join(rows + ["hardest classes  " + " | ".join(worst)])
