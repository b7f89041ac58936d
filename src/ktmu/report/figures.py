"""The report's result figures, drawn with matplotlib from the data of :mod:`ktmu.report.data`.

Figures are built as ``matplotlib.figure.Figure`` objects rendered by the Agg canvas, never
through pyplot: no global state, no display, the same bytes whatever backend a notebook chose.
Every function takes the plain data its figure shows (what the page embeds as JSON) and draws
nothing that is not in it. Audit figures are in :mod:`ktmu.report.figures_audit`.
"""
from __future__ import annotations

import io
import math
from typing import ContextManager, Mapping, Sequence

from matplotlib.figure import Figure

WIDTH = 11.5  # inches: at DPI, 1,150 px, the page's content width at a 1280 px window
DPI = 100  # 1 px per point at 100 %: crisp at 1280 px and about 40-90 kB per PNG figure
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">")  # one per run sharing a plot
ORIGINAL, ORACLE = "#444444", "#2ca02c"
STYLE = {"font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8, "axes.grid": True,
         "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False, "svg.fonttype": "none",
         "svg.hashsalt": "ktmu", "pdf.fonttype": 42}  # svg text stays text; the fixed salt keeps SVG ids stable


def colours(names: Sequence[str]) -> dict[str, str]:
    """One colour per method name, stable across every figure of a page (original grey, oracle green)."""
    from matplotlib import colormaps

    # tab10 without its green and grey (the oracle's and the original's), then tab20b's darker half, then its lighter half
    tab20b = [colormaps["tab20b"](i) for i in (*range(0, 20, 2), *range(1, 20, 2))]
    palette = [colormaps["tab10"](i) for i in range(10) if i not in (2, 7)] + tab20b
    out = {"original": ORIGINAL, "oracle": ORACLE}
    for i, name in enumerate(n for n in dict.fromkeys(names) if n not in out):
        r, g, b, _ = palette[i % len(palette)]
        out[name] = f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"
    return out


def figure_style() -> ContextManager[None]:
    """The context every report figure is built and rendered in: the page's matplotlib style (a ``rc_context``)."""
    import matplotlib

    return matplotlib.rc_context(STYLE)


def new_figure(height: float, width: float = WIDTH) -> Figure:
    """A figure of the page's width with constrained layout (labels never overlap the axes)."""
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def render(fig: Figure, fmt: str = "png") -> bytes:
    """The figure's bytes as PNG, SVG or PDF (metadata without dates, so a rebuild gives the same file)."""
    buf = io.BytesIO()
    meta = {"png": {"Software": None}, "svg": {"Date": None}, "pdf": {"CreationDate": None}}.get(fmt)
    with figure_style():
        fig.savefig(buf, format=fmt, dpi=DPI, metadata=meta)
    return buf.getvalue()


def _err(values: Sequence[float], intervals: Sequence[Sequence[float] | None]) -> list[list[float]] | None:
    """matplotlib's asymmetric error bars from ``[low, high]`` intervals (0 where a point has none)."""
    if all(iv is None for iv in intervals):
        return None
    lows = [max(0.0, v - iv[0]) if iv else 0.0 for v, iv in zip(values, intervals)]
    highs = [max(0.0, iv[1] - v) if iv else 0.0 for v, iv in zip(values, intervals)]
    return [lows, highs]


def _scatter(ax, points: list[dict], x: str, y: str, palette: Mapping[str, str], markers: Mapping[str, str]) -> None:
    """Points with their interval bars, labelled by method; flagged runs drawn hollow with their flag."""
    for p in points:
        if p.get(x) is None or p.get(y) is None:
            continue
        colour = palette.get(p["method"], ORIGINAL)
        flagged = bool(p["flags"])
        xerr, yerr = _err([p[x]], [p.get(f"{x}_interval")]), _err([p[y]], [p.get(f"{y}_interval")])
        ax.errorbar([p[x]], [p[y]], xerr=xerr, yerr=yerr, fmt=markers[p["run"]], color=colour, ms=7, capsize=2, lw=1,
                    mfc="white" if flagged else colour, zorder=3)
        label = p["method"] + (f" ({', '.join(p['flags']).upper()})" if flagged else "")
        ax.annotate(label, (p[x], p[y]), xytext=(5, 4), textcoords="offset points", fontsize=7, color=colour)


def tradeoff_figure(group: Mapping, palette: Mapping[str, str]) -> Figure:
    """Quality against Utility with the Pareto front, and zero-shot drop against Q-U, for one request."""
    points = list(group["points"])
    runs = list(dict.fromkeys(p["run"] for p in points))
    markers = {r: MARKERS[i % len(MARKERS)] for i, r in enumerate(runs)}
    fig = new_figure(4.6)
    left, right = fig.subplots(1, 2)
    _scatter(left, points, "quality", "utility", palette, markers)
    front = [next(p for p in points if f"{p['run']}: {p['method']}" == key) for key in group["pareto"]]
    if len(front) > 1:
        left.step([p["quality"] for p in front], [p["utility"] for p in front], where="pre", color="#999999", ls="--", lw=1,
                  zorder=1, label="Pareto front")
        left.legend(loc="lower left")
    left.set(xlabel="Quality (forgotten, %)", ylabel="Utility (kept, %)", title="Quality against Utility (up and right is better)")
    zs = [p for p in points if p.get("zero_shot_drop") is not None]
    _scatter(right, [{**p, "zero_shot_drop_interval": p.get("zero_shot_drop_interval")} for p in zs], "qu", "zero_shot_drop",
             palette, markers)
    right.axhline(0, color="#999999", lw=0.8)
    right.set(xlabel="Q-U (harmonic mean of Quality and Utility)", ylabel="zero-shot drop (points)",
              title="Zero-shot ability lost against Q-U (down and right is better)")
    if not zs:
        right.text(0.5, 0.5, "no zero-shot domain was measured", ha="center", va="center", transform=right.transAxes)
    if len(runs) > 1:
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], ls="", marker=markers[r], color="#555555", label=r) for r in runs]
        right.legend(handles=handles, title="run", loc="best")
    return fig


def per_class_figure(data: Mapping) -> Figure:
    """Fine accuracy per class before and after unlearning (a table of colours, the forgotten classes outlined)."""
    classes, rows = data["classes"], data["rows"]
    values = [[math.nan if v is None else v for v in r["values"]] for r in rows]
    fig = new_figure(0.9 + 0.32 * len(rows))
    ax = fig.subplots()
    image = ax.imshow(values, cmap="viridis", vmin=0, vmax=100, aspect="auto")
    ax.set_xticks(range(len(classes)), classes, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), [r["model"] for r in rows])
    ax.grid(False)
    for i, row in enumerate(values):
        for j, v in enumerate(row):
            if not math.isnan(v):
                ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=7, color="white" if v < 60 else "black")
    for j, c in enumerate(classes):
        if c in data["forgotten"]:
            ax.add_patch(_outline(j, len(rows)))
            ax.get_xticklabels()[j].set_color("#d62728")
            ax.get_xticklabels()[j].set_fontweight("bold")
    fig.colorbar(image, ax=ax, label="fine accuracy %", shrink=0.9)
    ax.set_title("Fine zero-shot accuracy per class on the test split (forgotten classes outlined in red)")
    return fig


def _outline(column: int, rows: int):
    from matplotlib.patches import Rectangle

    return Rectangle((column - 0.5, -0.5), 1, rows, fill=False, edgecolor="#d62728", lw=2)


def training_figure(data: Mapping, palette: Mapping[str, str]) -> Figure:
    """Per method: each loss term per epoch (left axis), forget-train fine accuracy (right axis), the selected epoch marked."""
    from matplotlib.ticker import MaxNLocator

    methods = data["methods"]
    cols = min(4, len(methods))
    nrows = math.ceil(len(methods) / cols)
    height = 2.3 * nrows + 0.3
    # a fixed grid (no layout engine): with a dozen twin axes, constrained layout's text measuring costs seconds
    fig = Figure(figsize=(WIDTH, height), dpi=DPI)
    fig.subplots_adjust(left=0.06, right=0.95, bottom=0.55 / height, top=1 - 0.35 / height, wspace=0.38, hspace=0.7 if nrows > 1 else 0.2)
    axes = fig.subplots(nrows, cols, squeeze=False)
    for ax, m in zip(axes.flat, methods):
        for term, ys in m["terms"].items():  # the total loss thick and black, its terms thin in the default cycle
            style = {"color": "black", "lw": 2.0} if term == "loss" else {"lw": 1.0}
            ax.plot(m["epochs"], [math.nan if v is None else v for v in ys], marker=".", label=term, **style)
        twin = ax.twinx()
        twin.plot(m["epochs"], [math.nan if v is None else v for v in m["forget_acc"]], color="#888888", ls="--", lw=1, marker="x", ms=4,
                  label="forget-train fine acc %")
        twin.set_ylim(-3, 103)
        twin.set_yticks([0, 50, 100])
        twin.grid(False)
        if m.get("selected_epoch"):
            ax.axvline(m["selected_epoch"], color="#d62728", lw=1, alpha=0.7)
            ax.annotate("selected", (m["selected_epoch"], 1), xycoords=("data", "axes fraction"), xytext=(2, -9),
                        textcoords="offset points", fontsize=7, color="#d62728")
        ax.set_title(m["method"], color=palette.get(m["method"]))
        ax.set_xlabel("epoch", labelpad=1)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(nbins=4))
        # a fixed place ("best" costs a search per panel): losses and accuracy fall, so the lower left is mostly free
        ax.legend(loc="lower left", fontsize=6, framealpha=0.6)
    for ax in list(axes.flat)[len(methods):]:
        ax.set_visible(False)
    axes[0][0].set_ylabel("loss term")
    return fig


def perf_figure(data: Mapping, palette: Mapping[str, str]) -> Figure:
    """Each method's training-step time over a plain fine-tuning step, one bar group per perf run."""
    runs = data["runs"]
    methods = list(dict.fromkeys(m for r in runs for m in r["ratios"]))
    fig = new_figure(3.4)
    ax = fig.subplots()
    width = min(0.8, 0.25 * len(methods)) / len(runs)  # a few methods: narrow bars, not slabs
    for i, r in enumerate(runs):
        xs = [j + (i - (len(runs) - 1) / 2) * width for j, m in enumerate(methods) if m in r["ratios"]]
        ys = [r["ratios"][m] for m in methods if m in r["ratios"]]
        bars = ax.bar(xs, ys, width=width * 0.95, label=f"{r['run']}: {r['model']} on {r['device']} ({r['precision']})",
                      color=[palette.get(m, ORIGINAL) for m in methods if m in r["ratios"]] if len(runs) == 1 else None)
        ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
    ax.axhline(1, color="#999999", ls="--", lw=1)
    ax.set_xticks(range(len(methods)), methods, rotation=20, ha="right")
    ax.set(ylabel="step time / plain fine-tuning step", title="Cost of one unlearning step against plain fine-tuning (1 = same cost)")
    ax.legend(loc="upper left")
    return fig


def sequence_figure(data: Mapping) -> Figure:
    """A sequence's course: each concept's D_f accuracy after each step (left); cumulative Utility and zero-shot (right)."""
    fig = new_figure(3.2)
    left, right = fig.subplots(1, 2)
    xs = list(range(len(data["labels"])))
    palette = colours(list(data["concepts"]))
    for concept, values in data["concepts"].items():
        left.plot(xs, [float("nan") if v is None else v for v in values], marker="o", label=concept, color=palette[concept])
    left.set(ylabel="D_f accuracy at its level (%)", title="Each forgotten concept after each step", ylim=(-2, 102))
    right.plot(xs, [float("nan") if v is None else v for v in data["utility"]], marker="o", label="Utility (vs base)", color="#1f77b4")
    right.plot(xs, [float("nan") if v is None else v for v in data["zero_shot"]], marker="s", label="zero-shot", color="#2ca02c")
    if data.get("base_zero_shot") is not None:
        right.axhline(data["base_zero_shot"], color="#2ca02c", ls="--", lw=1, label="zero-shot of the base")
    right.set(ylabel="%", title="What is kept, against the base model")
    for ax in (left, right):
        ax.set_xticks(xs, data["labels"], rotation=15, ha="right")
        ax.legend(loc="best", fontsize=7)
    return fig
