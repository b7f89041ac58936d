"""The ``ktmu eval`` table: zero-shot accuracy per domain, with its hardest classes."""
from __future__ import annotations


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
