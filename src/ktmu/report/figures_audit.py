"""The report's audit figures (is the knowledge gone, or only its name?), from :mod:`ktmu.report.data`'s audit data."""
from __future__ import annotations

import math
from typing import Mapping

from matplotlib.figure import Figure

from ktmu.report.figures import ORACLE, ORIGINAL, new_figure

PART_TITLES = {"forget": "fine-tuning on a few unseen images of the forgotten concepts",
               "retain": "fine-tuning on kept concepts only (no forgotten image)"}
MASS_COLOURS = {"forgotten": "#d62728", "sibling": "#1f77b4", "other": "#bbbbbb"}


def _style(model: Mapping, palette: Mapping[str, str]) -> dict:
    """Line style of a model: the original dashed grey, the oracle dotted green, methods solid in their colour."""
    if model["role"] == "original":
        return {"color": ORIGINAL, "ls": "--"}
    if model["role"] == "oracle":
        return {"color": ORACLE, "ls": ":"}
    return {"color": palette.get(model["model"], ORIGINAL), "ls": "-"}


def relearn_figure(data: Mapping, palette: Mapping[str, str]) -> Figure:
    """D_f fine accuracy along each relearning attack, per model: the mean over seeds, its band from lowest to highest seed."""
    parts = data["parts"]
    fig = new_figure(3.8)
    axes = fig.subplots(1, len(parts), squeeze=False)[0]
    for ax, (part, d) in zip(axes, parts.items()):
        for m in d["models"]:
            style = _style(m, palette)
            ax.plot(d["steps"], m["mean"], marker="o", ms=3, lw=1.5, label=f"{m['model']}" + (f" ({m['seeds']} seeds)" if m["seeds"] > 1 else ""),
                    **style)
            if m["seeds"] > 1:  # fainter bands when many overlap
                ax.fill_between(d["steps"], m["low"], m["high"], color=style["color"], alpha=0.15 if len(d["models"]) <= 4 else 0.07, lw=0)
        if 50 in d["steps"] and d["steps"][-1] > 50:  # the headline point (relearn@50) of a longer curve
            ax.axvline(50, color="#999999", lw=0.8, ls="--")
        ax.set(xlabel="relearning steps", ylabel="D_f fine accuracy %", title=PART_TITLES.get(part, part), ylim=(-3, 103))
        ax.legend(loc="upper left", fontsize=7)
    return fig


def probe_figure(data: Mapping, palette: Mapping[str, str]) -> Figure:
    """The audit's headline numbers per model (one panel each), with intervals; the oracle's value as a line and band."""
    metrics, models = data["metrics"], data["models"]
    cols = min(5, len(metrics))  # five panels a row: ten probes stay readable at the page's width
    rows = -(-len(metrics) // cols)
    fig = new_figure(rows * (1.5 + 0.3 * len(models)))
    grid = fig.subplots(rows, cols, sharey=True, squeeze=False)
    axes = grid.ravel()
    for ax in axes[len(metrics):]:
        ax.set_visible(False)
    names = [m["model"] for m in models]
    oracle = next((m for m in models if m["role"] == "oracle"), None)
    for ax, (key, label) in zip(axes, metrics.items()):
        for i, m in enumerate(models):
            v = m["values"].get(key)
            if v is None:
                continue
            err = None if v["low"] is None else [[max(0, v["value"] - v["low"])], [max(0, v["high"] - v["value"])]]
            ax.errorbar([v["value"]], [i], xerr=err, fmt="o", color=_style(m, palette)["color"], ms=5, capsize=2)
            ax.annotate(f"{v['value']:.1f}", (v["value"], i), xytext=(6, 0), textcoords="offset points", fontsize=6, va="center")
        ov = (oracle or {}).get("values", {}).get(key)
        if ov is not None:
            ax.axvline(ov["value"], color=ORACLE, ls=":", lw=1.2)
            if ov["low"] is not None:
                ax.axvspan(ov["low"], ov["high"], color=ORACLE, alpha=0.12, lw=0)
        ax.set(title=label, xlim=(-5, 105), ylim=(len(models) - 0.5, -0.5))
        ax.set_xlabel("% of D_f test images", fontsize=7)
    for row in grid:
        row[0].set_yticks(range(len(names)), names)
    fig.suptitle("What is left of the forgotten concepts, probe by probe" + (" (green: the oracle that never learned them)" if oracle else ""),
                 fontsize=10)
    return fig


def mass_figure(data: Mapping) -> Figure:
    """Where the forgotten concepts' test images are predicted, per model: still forgotten, a sibling, or another concept."""
    models = data["models"]
    fig = new_figure(1.4 + 0.3 * len(models))
    ax = fig.subplots()
    left = [0.0] * len(models)
    for kind, colour in MASS_COLOURS.items():
        widths = [m[kind] for m in models]
        bars = ax.barh(range(len(models)), widths, left=left, color=colour, label={"forgotten": "a forgotten concept",
                       "sibling": "a kept sibling (same coarse concept)", "other": "a concept of another coarse concept"}[kind])
        ax.bar_label(bars, labels=[f"{w:.0f}" if w >= 4 else "" for w in widths], label_type="center", fontsize=7)
        left = [a + w for a, w in zip(left, widths)]
    ax.set_yticks(range(len(models)), [m["model"] for m in models])
    ax.invert_yaxis()
    ax.set(xlim=(0, 100), xlabel="% of the forgotten concepts' test images", title="Where the forgotten images' predictions go")
    ax.grid(False)
    fig.legend(loc="outside lower center", ncol=3)
    return fig


def sibling_figure(data: Mapping, palette: Mapping[str, str]) -> Figure:
    """Each kept concept's change in fine accuracy against its text similarity to the forgotten concepts, per model."""
    fig = new_figure(3.8, width=8.0)
    ax = fig.subplots()
    for m in data["models"]:
        colour = palette.get(m["model"], ORIGINAL)
        rho = m.get("spearman")
        label = m["model"] + ("" if rho is None or math.isnan(rho) else f" (Spearman {rho:+.2f})")
        for same, marker in ((True, "o"), (False, "^")):
            rows = [r for r in m["rows"] if r["same_parent"] is same]
            ax.scatter([r["similarity"] for r in rows], [r["change"] for r in rows], marker=marker, s=22, color=colour,
                       label=label if same or not any(r["same_parent"] for r in m["rows"]) else None, alpha=0.85)
        if len(data["models"]) == 1:
            for r in m["rows"]:
                ax.annotate(r["name"], (r["similarity"], r["change"]), xytext=(3, 2), textcoords="offset points", fontsize=6)
    ax.axhline(0, color="#999999", lw=0.8)
    ax.set(xlabel="text similarity to the closest forgotten concept (cosine, original model)",
           ylabel="change in fine accuracy (points)",
           title="Damage to kept concepts against how close their names are (circles: siblings, triangles: others)")
    ax.legend(loc="best", fontsize=7)
    return fig


def kcurve_figure(data: Mapping, palette: Mapping[str, str]) -> Figure:
    """Each audited number against the neighbour exemplars per concept (K, evenly spaced): one line per method, the oracle dotted."""
    ks, metrics = data["ks"], data["metrics"]
    fig = new_figure(3.4)
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    at = {k: i for i, k in enumerate(ks)}
    for ax, (key, label) in zip(axes, metrics.items()):
        for method, by_k in data["methods"].items():
            points = [(at[k], v[key]) for k, v in sorted(by_k.items()) if key in v]
            if not points:
                continue
            xs = [x for x, _ in points]
            ys = [p["value"] for _, p in points]
            err = [[max(0, p["value"] - p["low"]) if p["low"] is not None else 0 for _, p in points],
                   [max(0, p["high"] - p["value"]) if p["high"] is not None else 0 for _, p in points]]
            ax.errorbar(xs, ys, yerr=err, marker="o", ms=4, lw=1.5, capsize=2, color=palette.get(method, ORIGINAL), label=method)
        oracle = [(at[k], v[key]) for k, v in sorted(data["oracle"].items()) if key in v and k in at]
        if oracle:
            xs = [x for x, _ in oracle]
            ax.plot(xs, [p["value"] for _, p in oracle], color=ORACLE, ls=":", marker="s", ms=3, label="oracle")
            if all(p["low"] is not None for _, p in oracle):
                ax.fill_between(xs, [p["low"] for _, p in oracle], [p["high"] for _, p in oracle], color=ORACLE, alpha=0.12, lw=0)
        ax.set_xticks(range(len(ks)), [str(k) for k in ks])
        ax.set(xlabel="K", title=label, ylim=(-3, 103))
    axes[0].set_ylabel("%")
    axes[0].legend(loc="lower left", fontsize=7)
    fig.suptitle("Removal against K, the neighbour images per kept concept a method learns from (green: the oracle)", fontsize=10)
    return fig
