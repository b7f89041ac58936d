"""``ktmu report``: one self-contained HTML page from run folders, and each figure as its own file on request.

:func:`build_report` reads the runs (:mod:`ktmu.report.runs`), computes each figure's data
(:mod:`ktmu.report.data`), draws it with matplotlib (:mod:`ktmu.report.figures`,
:mod:`ktmu.report.figures_audit`) and assembles the page (:mod:`ktmu.report.html`).
:func:`write_report` checks the outputs first and writes nothing until everything is built.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from ktmu.report import data as D
from ktmu.report.definitions import DEFINITIONS
from ktmu.report.html import esc, figure_block, note, page
from ktmu.report.runs import ReportError, Run, read_runs
from ktmu.report.sections import headline_table, provenance, run_overview, sequence_table

FORMATS = ("png", "svg", "pdf")
SECTIONS = (("runs", "Runs"), ("provenance", "Provenance"), ("results", "Headline results"),
            ("tradeoff", "Quality, Utility and zero-shot"), ("classes", "Per class"), ("sequence", "Requests over time"),
            ("audit", "The audit: is it really gone?"),
            ("training", "Training curves"), ("perf", "Performance"), ("definitions", "Definitions"))


@dataclass
class PageFigure:
    """One figure of the page: where it goes, what it says, the data it draws and how to draw it."""

    section: str
    slug: str
    title: str
    caption: str
    data: Any
    draw: Callable[[], Any]  # -> matplotlib Figure
    png: bytes = b""


@dataclass
class Report:
    """A built report: the page's HTML, its figures (drawn), and how long it took."""

    html: str
    figures: list[PageFigure] = field(default_factory=list)
    seconds: float = 0.0

    def figure_files(self, fmt: str = "png") -> dict[str, bytes]:
        """Each figure as its own file (``NN-slug.FMT`` -> bytes), for papers."""
        from ktmu.report.figures import figure_style, render

        out = {}
        for i, f in enumerate(self.figures, 1):
            if fmt == "png":
                out[f"{i:02d}-{f.slug}.png"] = f.png
                continue
            with figure_style():
                out[f"{i:02d}-{f.slug}.{fmt}"] = render(f.draw(), fmt)
        return out


def plan_figures(runs: Sequence[Run]) -> list[PageFigure]:
    """Every figure the runs can fill, in page order (nothing for what they lack)."""
    from ktmu.report import figures as F, figures_audit as A

    names = [str(r.get("method")) for run in runs for r in run.rows] + [m["model"] for run in runs for m in D.audit_models(run)]
    palette = F.colours(names)
    out: list[PageFigure] = []
    # a sequence's rows answer different requests (one per step): it gets its own table and figure, not the per-method ones
    methods_runs = [r for r in runs if r.kind != "sequence"]
    groups = D.tradeoff_data(methods_runs)
    for i, g in enumerate(groups, 1):
        out.append(PageFigure("tradeoff", f"tradeoff-{i}", f"Quality against Utility, and zero-shot drop ({g['request']})",
                              "One point per method and run (mean over seeds), bars = 95 % intervals where recorded; dashed: the "
                              "Pareto front. Hollow points carry a flag and must not be read at face value.",
                              g, lambda g=g: F.tradeoff_figure(g, palette)))
    for run in methods_runs:
        label = run.label
        for slug, title, caption, d, draw in (
            ("classes", f"Fine accuracy per class before and after ({label})",
             "Rows: the original and each method (mean over seeds); the forgotten classes are outlined.",
             D.per_class_data(run), F.per_class_figure),
            ("probes", f"The audit's numbers against the original and the oracle ({label})",
             "Each panel is one probe of the forgotten concepts' test images; points are means with 95 % intervals over seeds "
             "where recorded. Near the oracle (green) is removed; near the original (grey) is only renamed.",
             D.probe_data(run), lambda d: A.probe_figure(d, palette)),
            ("relearn", f"Relearning curves ({label})",
             "D_f fine accuracy while an attacker fine-tunes the model; lines are means over seeds, bands span the lowest to the "
             "highest seed. A model that has removed the concept relearns no faster than the oracle.",
             D.relearn_data(run), lambda d: A.relearn_figure(d, palette)),
            ("mass", f"Where the forgotten images' predictions go ({label})",
             "Share of the forgotten concepts' test images predicted as a forgotten concept, a kept sibling or another concept "
             "(mean over seeds). A fine goal wants them on the siblings.", D.mass_data(run), A.mass_figure),
            ("siblings", f"Sibling damage against text similarity ({label})",
             "Each kept concept's change in fine accuracy against how close its name is to the forgotten concepts (first seed).",
             D.sibling_data(run), lambda d: A.sibling_figure(d, palette)),
            ("training", f"Training curves ({label})",
             "Per method, first seed: each loss term per epoch (left axis), forget-train fine accuracy (dashed, right axis) and "
             "the epoch that checkpoint selection kept (red).", D.training_data(run), lambda d: F.training_figure(d, palette)),
        ):
            if d is not None:
                section = {"probes": "audit", "relearn": "audit", "mass": "audit", "siblings": "audit"}.get(slug, slug)
                out.append(PageFigure(section, f"{slug}-{_slug(label)}", title, caption, d, lambda d=d, draw=draw: draw(d)))
    for i, g in enumerate(D.kcurve_data(methods_runs), 1):
        out.append(PageFigure("audit", f"kcurve-{i}", f"Removal against neighbour data: the K-curve ({g['request']})",
                              "Each audited number of each method against K, the neighbour images per concept it learned from "
                              "(means over seeds, bars = 95 % intervals where recorded); green dotted: the oracle that never "
                              "learned the concept, measured with the same draws. Removal is where a method meets the oracle.",
                              g, lambda g=g: A.kcurve_figure(g, palette)))
    for run in runs:
        seq = D.sequence_data(run)
        if seq is not None:
            out.append(PageFigure("sequence", f"sequence-{_slug(run.label)}", f"Requests over time ({run.label})",
                                  "After each step (and the concepts forgotten all at once, last): each concept's D_f accuracy, "
                                  "and Utility and zero-shot against the base model (means over seeds). A concept that climbs "
                                  "back after a later step reopened.", seq, lambda d=seq: F.sequence_figure(d)))
    perf = D.perf_data(runs)
    if perf is not None:
        out.append(PageFigure("perf", "perf", "Step time against plain fine-tuning",
                              "Seconds per unlearning step of each method over one plain cross-entropy step on the same model and "
                              "batch (lower is cheaper).", perf, lambda: F.perf_figure(perf, palette)))
    return out


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")[:40] or "run"


def _section_text(key: str, runs: Sequence[Run], figures: Sequence[PageFigure]) -> str:
    """The text of a section before its figures; what is missing is said, not left out silently."""
    if key == "runs":
        return run_overview(runs)
    if key == "provenance":
        return "".join(provenance(r) for r in runs)
    if key == "results":
        return "".join(f"<h3>{esc(r.label)}</h3>{headline_table(r)}" for r in runs if r.kind not in ("perf", "sequence")) or "<p>no unlearning results</p>"
    if key == "sequence":
        return "".join(f"<h3>{esc(r.label)}</h3>{sequence_table(r)}" for r in runs if r.kind == "sequence") or "<p>no ktmu sequence among these runs.</p>"
    if key == "definitions":
        return '<dl class="defs">' + "".join(f"<dt>{esc(t)}</dt><dd>{esc(d)}</dd>" for t, d in DEFINITIONS) + "</dl>"
    here = [f for f in figures if f.section == key]
    if key == "tradeoff" and len(here) > 1:
        return note(f"These runs answer {len(here)} different requests; each has its own plot, because Quality and Utility "
                    "of different requests do not compare.")
    if key == "audit":
        unaudited = [r.label for r in runs if r.kind in ("unlearn", "bench") and not r.audited]
        skipped = [f"{r.label} / {m['model']}: {s}" for r in runs for m in D.audit_models(r) for s in _skipped(m["record"])]
        text = (note(f"not audited: {', '.join(unaudited)} (run with --audit, or ktmu audit)") if unaudited else "")
        return text + "".join(note(f"skipped: {s}") for s in skipped)
    if not here:
        return {"perf": "<p>no ktmu perf result among these runs (ktmu perf --json FILE).</p>"}.get(key, "<p>nothing to show for these runs.</p>")
    return ""


def _skipped(record: Mapping, prefix: str = "") -> list[str]:
    """'part: reason' for every part of an audit record that was skipped."""
    out = []
    for k, v in record.items():
        if isinstance(v, Mapping):
            out += [f"{prefix}{k}: {v['skipped']}"] if "skipped" in v else _skipped(v, f"{prefix}{k}.")
    return out


def build_report(paths: Iterable[str | Path], title: str = "ktmu report", command: str | None = None) -> Report:
    """Read the runs at ``paths``, draw every figure they can fill, and assemble the page (nothing is written)."""
    from ktmu import __version__
    from ktmu.report.figures import figure_style, render

    t0 = time.perf_counter()
    runs = read_runs(paths)
    figures = plan_figures(runs)
    for f in figures:
        with figure_style():
            f.png = render(f.draw(), "png")
    sections = []
    for key, heading in SECTIONS:
        blocks = "".join(figure_block(f"fig-{i}-{f.slug}", f.title, f.caption, f.png, f.data)
                         for i, f in enumerate(figures, 1) if f.section == key)
        sections.append((key, heading, _section_text(key, runs, figures) + blocks))
    intro = (f"<p>{len(runs)} run{'s' if len(runs) > 1 else ''}: {esc(', '.join(r.label for r in runs))}. "
             f"{len(figures)} figures; the numbers behind each are embedded beside it.</p>")
    footer = f"<p>made by ktmu {esc(__version__)}" + (f" with <code>{esc(command)}</code>" if command else "") + "</p>"
    return Report(page(title, intro, sections, footer), figures, time.perf_counter() - t0)


def check_outputs(out: Path, overwrite: bool, figures_dir: Path | None = None, fmt: str = "png") -> None:
    """Refuse, before any work, an --out that exists (without ``overwrite``), a bad folder, or an unknown format."""
    if fmt not in FORMATS:
        raise ReportError(f"--format {fmt!r} is not a figure format; use one of {', '.join(FORMATS)}.")
    if out.is_dir():
        raise ReportError(f"--out {out} is a folder; give the HTML file to write, e.g. {out / 'report.html'}.")
    if out.exists() and not overwrite:
        raise ReportError(f"--out {out} exists; pass --overwrite to replace it, or choose another file.")
    if out.parent.exists() and not out.parent.is_dir():
        raise ReportError(f"cannot write {out}: {out.parent} is a file, not a folder.")
    if figures_dir is not None:
        if figures_dir.exists() and not figures_dir.is_dir():
            raise ReportError(f"--figures {figures_dir} is a file; give a folder for the figure files.")
        if figures_dir.is_dir() and any(figures_dir.iterdir()) and not overwrite:
            raise ReportError(f"--figures {figures_dir} is not empty; pass --overwrite to replace its figure files, or choose "
                              "a new folder.")


def write_report(run_dirs: Sequence[str | Path] | str | Path, out: str | Path | None = None, overwrite: bool = False,
                 figures_dir: str | Path | None = None, fmt: str = "png", command: str | None = None) -> Path:
    """Write the report of ``run_dirs`` to ``out`` (default: ``RUN_DIR/report.html`` for one folder); returns its path.

    With ``figures_dir`` each figure is also written there as ``NN-slug.FMT`` (png, svg or pdf).
    Every output is checked before the runs are read and written only once the whole page is
    built (each file atomically), so a failure leaves nothing half-written.
    """
    from ktmu.outputs import atomic_path, write_text_atomic

    dirs = [run_dirs] if isinstance(run_dirs, (str, Path)) else list(run_dirs)
    if out is None:
        if len(dirs) != 1 or not Path(dirs[0]).is_dir():
            raise ReportError("--out FILE.html is needed for several runs, or for a result file; one run folder defaults to "
                              "RUN_DIR/report.html.")
        out = Path(dirs[0]) / "report.html"
    out, fig_dir = Path(out), Path(figures_dir) if figures_dir is not None else None
    check_outputs(out, overwrite, fig_dir, fmt)
    report = build_report(dirs, command=command)
    files = report.figure_files(fmt) if fig_dir is not None else {}
    for name, blob in files.items():
        with atomic_path(fig_dir / name) as tmp:  # type: ignore[operator]
            tmp.write_bytes(blob)
    write_text_atomic(out, report.html)
    return out
