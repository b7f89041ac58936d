"""``ktmu report``: the figure data on hand-built records, then pages built from real tiny-clip runs of every kind.

The real runs (an audited two-method bench over two seeds, an unlearn run, an audit with an
oracle, a perf measurement) are made once for this module on tiny-clip, whose numbers mean
nothing but whose records have every key a real run writes. The browser check is in
tests/test_report_browser.py.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np

import pytest

from ktmu.cli import main
from ktmu.report import data as D
from ktmu.report.page import build_report, plan_figures, write_report
from ktmu.report.runs import ReportError, Run, read_runs
from ktmu.report.sections import headline_table
from ktmu.workflows.model_card import audit_verdict

TINY = ["--model", "tiny-clip", "--force", "--epochs", "1", "--max-per-concept", "10", "--quiet"]
AUDIT_FAST = ["--force", "--zero-shot", "none", "--probe-per-class", "5", "--relearn-steps", "4", "--relearn-images", "4",
              "--max-per-concept", "10", "--quiet"]


# ---- figure data on hand-built records ----------------------------------------------------------------
def test_pareto_front_keeps_the_points_nothing_beats_on_both():
    assert D.pareto_front([(90, 99), (99, 90), (95, 95), (80, 80)]) == [0, 2, 1]
    assert D.pareto_front([(90, 90), (90, 90), (80, 95)]) == [2, 0, 1]  # equal points are both kept
    assert D.pareto_front([(50, 50), (60, 60)]) == [1]


def _row(method: str, quality: float, utility: float, zero_shot: float, request: dict, **extra) -> dict:
    return {"method": method, "quality": quality, "utility": utility, "qu": 2 * quality * utility / (quality + utility),
            "unlearned": {"zero_shot": zero_shot}, "request": request, **extra}


SHIRT = {"world": "fashion", "goal": "fine", "concepts": ["shirt"], "forget_fine": ["shirt"], "forget_coarse": []}
COAT = {**SHIRT, "concepts": ["coat"], "forget_fine": ["coat"]}


def test_tradeoff_groups_runs_by_request_and_shifts_the_zero_shot_interval():
    seeds = {"mean": {"quality": 96.0, "utility": 99.5, "zero_shot": 97.5},
             "interval": {"quality": {"low": 94.0, "high": 98.0}, "zero_shot": {"low": 97.0, "high": 98.5}},
             "seeds": [{"seed": 0}, {"seed": 1}]}
    a = Run("a", "bench", label="a", original={"zero_shot": 98.8}, request=SHIRT,
            rows=[_row("ga", 98.0, 99.0, 98.3, SHIRT), _row("nhl-kl", 1.0, 1.0, 90.0, SHIRT, **seeds)])
    b = Run("b", "unlearn", label="b", original={"zero_shot": 98.8}, request=COAT, rows=[_row("ga", 50.0, 60.0, 98.8, COAT)])
    groups = D.tradeoff_data([a, b])
    assert [g["request"] for g in groups] == ["forget shirt (fine goal) in world fashion", "forget coat (fine goal) in world fashion"]
    ga, nhl = groups[0]["points"]
    assert ga["zero_shot_drop"] == pytest.approx(0.5) and ga["zero_shot_drop_interval"] is None and ga["seeds"] == 1
    # several seeds: the mean over seeds, and the drop's interval is the zero-shot interval mirrored around the original
    assert (nhl["quality"], nhl["utility"], nhl["seeds"]) == (96.0, 99.5, 2)
    assert nhl["quality_interval"] == [94.0, 98.0] and nhl["utility_interval"] is None
    assert nhl["zero_shot_drop"] == pytest.approx(1.3) and nhl["zero_shot_drop_interval"] == pytest.approx([0.3, 1.8])
    assert groups[0]["pareto"] == ["a: nhl-kl", "a: ga"]  # (96, 99.5) and (98, 99): both on the front, by quality
    assert groups[1]["pareto"] == ["b: ga"]


def test_flags_of_any_seed_are_raised_and_missing_numbers_are_left_out():
    row = _row("ga-kl", 100.0, 48.0, 60.0, SHIRT, seeds=[{"flags": {"collapsed": False}}, {"flags": {"collapsed": True}}])
    assert D.flag_list(row) == ["collapsed"]
    assert D.flag_list({"flags": {"original_knows_concept": False}}) == ["unknown-concept"]
    broken = Run("c", "unlearn", label="c", original={}, request=SHIRT, rows=[{"method": "x", "quality": float("nan"), "utility": 1.0}])
    assert D.tradeoff_data([broken]) == []  # no point without both numbers
    assert D.number(float("inf")) is None and D.number(True) is None and D.number(3) == 3.0


def test_every_method_gets_its_own_colour_and_none_is_the_original_or_the_oracle():
    from ktmu.methods import METHODS
    from ktmu.report.figures import ORACLE, ORIGINAL, colours

    names = ["unlearned", *METHODS.names()]
    palette = colours(["original", *names, "oracle"])
    assert palette["original"] == ORIGINAL and palette["oracle"] == ORACLE
    assert len({palette[n] for n in names} | {ORIGINAL, ORACLE}) == len(names) + 2


def _audit_model(role: str, curves: list[list[float]], mass: tuple[float, float, float]) -> list[dict]:
    """One model's per-seed audit records: a relearning curve and a mass split per seed."""
    return [{"role": role, "relearn": {"forget": {"steps": [0, 10, 50], "curve": c}}, "mass": dict(zip(("forgotten", "sibling", "other"), mass))}
            for c in curves]


def test_audit_run_curves_average_over_seeds_with_a_min_max_band_and_mass_in_percent():
    seeds = [{"models": {"original": o, "unlearned": u}} for o, u in
             zip(_audit_model("original", [[80, 60, 70], [80, 64, 74]], (0.8, 0.15, 0.05)),
                 _audit_model("unlearned", [[2, 30, 60], [4, 40, 70]], (0.02, 0.9, 0.08)))]
    audit = {"models": seeds[0]["models"], "settings": {}, "seeds": seeds}
    run = Run("r", "audit", label="r", audit=audit)
    curves = {m["model"]: m for m in D.relearn_data(run)["parts"]["forget"]["models"]}
    assert curves["unlearned"]["mean"] == [3, 35, 65] and curves["unlearned"]["low"] == [2, 30, 60]
    assert curves["unlearned"]["high"] == [4, 40, 70] and curves["original"]["seeds"] == 2
    mass = {m["model"]: m for m in D.mass_data(run)["models"]}
    assert mass["unlearned"]["sibling"] == pytest.approx(90.0) and mass["original"]["forgotten"] == pytest.approx(80.0)
    assert D.per_class_data(run) is None and D.training_data(run) is None  # an audit has neither


def _verdict_models(unlearned: dict, oracle: dict | None) -> dict:
    rec = lambda v: {"name": {"d_f_fine": v[0]}, "aliases": {"held_out": {"worst": v[1]}},  # noqa: E731
                     "linear_probe": {"forgotten_recall": v[2]}, "relearn": {"forget": {"after": v[3]}}}
    return {"unlearned": rec(unlearned), **({"oracle": rec(oracle)} if oracle else {})}


def test_audit_verdict_against_the_oracle():
    assert "removed" in audit_verdict(_verdict_models((1, 2, 55, 30), (0, 0, 56, 28)))
    hidden = audit_verdict(_verdict_models((1, 2, 72, 69), (0, 0, 56, 28)))
    assert hidden.startswith("**hidden, not removed**") and "linear-probe recall 72.00 against the oracle's 56.00" in hidden
    assert "D_f fine after relearning 69.00" in hidden and "held-out alias" not in hidden
    assert audit_verdict(_verdict_models((60, 2, 72, 69), (0, 0, 56, 28))).startswith("**not forgotten**")
    assert audit_verdict(_verdict_models((1, 2, 72, 69), None)).startswith("no oracle")


# ---- pages from real runs ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Real run folders of every kind on tiny-clip, made once: bench (audited, 2 seeds), unlearn, audit, perf."""
    root = tmp_path_factory.mktemp("report-runs")
    assert main(["bench", "--methods", "ga", "nhl-kl", "--audit", "--seeds", "2", "--report", "--out", str(root / "bench"), *TINY,
                 "--probe-per-class", "5", "--relearn-steps", "4", "--relearn-images", "4"]) == 0
    assert main(["unlearn", "--method", "ga", "--zero-shot", "none", "--report", "--out", str(root / "unlearn"), *TINY]) == 0
    assert main(["audit", "--model", f"tiny-clip:{root / 'unlearn' / 'model.safetensors'}", "--original", "tiny-clip",
                 "--oracle", "tiny-clip", "--report", "--out", str(root / "audit"), *AUDIT_FAST]) == 0
    assert main(["perf", "--model", "tiny-clip", "--methods", "ga", "nhl-kl", "--steps", "1", "--repeats", "1", "--images", "64",
                 "--epochs", "1", "--json", str(root / "perf.json"), "--quiet"]) == 0
    return root


def _data_blocks(html: str) -> dict[str, object]:
    import re

    return {m.group(1): json.loads(m.group(2)) for m in re.finditer(r'<script type="application/json" class="ktmu-data" id="data-fig-\d+-([^"]+)">(.*?)</script>', html)}


@pytest.mark.parametrize("kind, slugs", [
    ("bench", ["tradeoff-1", "classes-bench", "probes-bench", "relearn-bench", "mass-bench", "siblings-bench", "training-bench"]),
    ("unlearn", ["tradeoff-1", "classes-unlearn", "training-unlearn"]),
    ("audit", ["probes-audit", "relearn-audit", "mass-audit", "siblings-audit"]),
    ("perf.json", ["perf"]),
])
def test_each_kind_of_run_folder_gets_its_figures(runs, kind, slugs):
    assert [f.slug for f in plan_figures(read_runs([runs / kind]))] == slugs


@pytest.fixture(scope="module")
def mixed_page(runs, tmp_path_factory):
    """One report of every kind of run, written once (the browser test opens it too)."""
    return write_report([runs / "bench", runs / "unlearn", runs / "audit", runs / "perf.json"],
                        tmp_path_factory.mktemp("page") / "all.html")


def test_mixed_report_embeds_the_records_own_numbers(runs, mixed_page):
    html = mixed_page.read_text()
    blocks = _data_blocks(html)
    assert len(blocks) == 7 + 2 + 4 + 1 == html.count('<img class="ktmu-figure"')  # bench and unlearn share one request: one trade-off plot
    results = json.loads((runs / "bench" / "results.json").read_text())
    points = {p["method"]: p for p in blocks["tradeoff-1"]["points"] if p["run"] == "bench"}
    for row in results["rows"]:
        assert points[row["method"]]["quality"] == row["mean"]["quality"]
        assert points[row["method"]]["qu_interval"] == [row["interval"]["qu"]["low"], row["interval"]["qu"]["high"]]
        assert points[row["method"]]["seeds"] == 2
    perf = json.loads((runs / "perf.json").read_text())
    assert blocks["perf"]["runs"][0]["ratios"] == perf["step_ratio"]
    probes = {m["model"]: m for m in blocks["probes-audit"]["models"]}
    audit = json.loads((runs / "audit" / "audit.json").read_text())
    assert list(probes) == ["original", "unlearned", "oracle"] and blocks["probes-audit"]["oracle"] is True
    assert probes["unlearned"]["values"]["probe_recall"]["value"] == audit["models"]["unlearned"]["linear_probe"]["forgotten_recall"]
    bench_curves = {m["model"]: m for m in blocks["relearn-bench"]["parts"]["forget"]["models"]}
    assert [m["seeds"] for m in bench_curves.values()] == [2, 2, 2]  # original, ga, nhl-kl: each seed's audit
    # every section, the provenance, the definitions, what is missing; nothing fetched from the network
    for text in ("Headline results", "ktmu bench --methods ga nhl-kl", "Q-U* (chance-aware Q-U)", "WC-Quality (worst-case Quality)",
                 "not audited: unlearn (run with --audit, or ktmu audit)"):
        assert text in html
    assert "http://" not in html and "https://" not in html
    assert mixed_page.stat().st_size < 3e6


def test_report_of_one_folder_defaults_to_report_html_and_figures_go_to_files(runs, tmp_path):
    run = tmp_path / "unlearn"
    shutil.copytree(runs / "unlearn", run, ignore=shutil.ignore_patterns("report.html"))  # the one --report wrote
    assert write_report(run, figures_dir=tmp_path / "figs", fmt="svg") == run / "report.html"
    files = sorted(p.name for p in (tmp_path / "figs").iterdir())
    assert files == ["01-tradeoff-1.svg", "02-classes-unlearn.svg", "03-training-unlearn.svg"]
    assert all((tmp_path / "figs" / f).read_text().startswith("<?xml") for f in files)
    before = (run / "report.html").read_bytes()
    with pytest.raises(ReportError, match="exists; pass --overwrite"):
        write_report(run)
    assert (run / "report.html").read_bytes() == before
    write_report(run, tmp_path / "p.html", figures_dir=tmp_path / "pdf", fmt="pdf")
    assert len(list((tmp_path / "pdf").iterdir())) == 3 and all(p.read_bytes().startswith(b"%PDF") for p in (tmp_path / "pdf").iterdir())
    with pytest.raises(ReportError, match="--figures .* is not empty"):
        write_report(run, tmp_path / "q.html", figures_dir=tmp_path / "pdf", fmt="pdf")
    with pytest.raises(ReportError, match="--format 'gif' is not a figure format"):
        write_report(run, tmp_path / "q.html", fmt="gif")
    assert not (tmp_path / "q.html").exists()


def test_a_half_finished_bench_reports_its_finished_methods_and_names_the_missing(runs, tmp_path):
    bench = tmp_path / "bench"
    shutil.copytree(runs / "bench", bench)
    for name in ("results.json", "table.md", "methods/nhl-kl.json"):
        (bench / name).unlink()
    (run,) = read_runs([bench])
    assert [r["method"] for r in run.rows] == ["ga"] and run.missing == ["nhl-kl"]
    assert run.notes == ["this bench has not finished: 1 of 2 methods have results; missing: nhl-kl"]
    assert "<td>nhl-kl</td><td>not finished</td>" in headline_table(run)
    assert [f.slug for f in plan_figures([run])][:2] == ["tradeoff-1", "classes-bench"]


def test_runs_of_different_requests_get_their_own_plots(runs, tmp_path):
    other = tmp_path / "coat"
    shutil.copytree(runs / "unlearn", other)
    record = json.loads((other / "results.json").read_text())
    record["request"] = {**record["request"], "concepts": ["coat"], "forget_fine": ["coat"]}
    (other / "results.json").write_text(json.dumps(record))
    report = build_report([runs / "unlearn", other])
    assert [f.slug for f in report.figures if f.section == "tradeoff"] == ["tradeoff-1", "tradeoff-2"]
    assert "answer 2 different requests; each has its own plot" in report.html
    assert "forget coat (fine goal)" in report.html and "forget shirt (fine goal)" in report.html


def test_records_missing_keys_still_make_a_page(runs, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    record = json.loads((runs / "unlearn" / "results.json").read_text())
    for key in ("config", "per_class_fine", "provenance", "versions", "original"):
        record.pop(key)
    (bare / "results.json").write_text(json.dumps(record))
    report = build_report([bare])
    assert [f.slug for f in report.figures] == ["tradeoff-1"] and "no results rows in this run" in report.html


def test_the_report_flag_of_unlearn_bench_and_audit_leaves_the_page_in_the_run_folder(runs):
    for kind, figures in (("bench", 7), ("unlearn", 3), ("audit", 4)):
        html = (runs / kind / "report.html").read_text()
        assert html.count('<img class="ktmu-figure"') == figures and "made by ktmu" in html


def _cli(argv: list[str]) -> int:
    return main(["report", *argv])


def test_bad_input_is_one_error_line_and_nothing_written(runs, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("mine")
    assert _cli([str(empty), "--out", str(tmp_path / "r.html")]) == 2
    assert capsys.readouterr().err.strip() == (f"ktmu: error: {empty} holds no ktmu results: expected results.json (ktmu unlearn, "
                                               "bench or sequence), bench.json with methods/*.json (a bench that has not finished), audit.json "
                                               "(ktmu audit) or a ktmu perf --json file.")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "results.json").write_text('{"method": "ga", ')
    assert _cli([str(broken), "--out", str(tmp_path / "r.html")]) == 2
    assert f"{broken / 'results.json'} is not valid JSON" in capsys.readouterr().err
    assert _cli([str(runs / "unlearn"), str(runs / "audit")]) == 2
    assert "--out FILE.html is needed for several runs" in capsys.readouterr().err
    assert _cli([str(tmp_path / "nowhere"), "--out", str(tmp_path / "r.html")]) == 2
    assert not (tmp_path / "r.html").exists()
    assert capsys.readouterr().err.count("ktmu: error:") == 1
    assert _cli([str(runs / "unlearn"), "--out", str(tmp_path / "ok.html")]) == 0 and (tmp_path / "ok.html").is_file()
    assert capsys.readouterr().out.startswith(f"wrote {tmp_path / 'ok.html'} (")


# ---- the page in a real browser ----------------------------------------------------------------------------
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _chromium(url: str, *options: str, profile) -> subprocess.CompletedProcess:
    """Headless Chromium on ``url`` with a throw-away profile; its console messages go to stderr (--enable-logging)."""
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars", "--no-first-run",
           "--disable-extensions", "--disable-background-networking", "--enable-logging=stderr", "--v=0",
           f"--user-data-dir={profile}", *options, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=True)


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (scripts/setup.sh test installs it when run as root)")
def test_the_page_renders_in_headless_chromium(mixed_page, tmp_path):
    from PIL import Image

    url = mixed_page.resolve().as_uri()
    shot = tmp_path / "page.png"
    _chromium(url, f"--screenshot={shot}", "--window-size=1280,2400", profile=tmp_path / "profile-1")
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.shape == (2400, 1280)
    assert pixels.std() > 20 and (pixels < 200).mean() > 0.02  # text, tables and figures, not a blank page
    dumped = _chromium(url, "--dump-dom", "--window-size=1280,2400", profile=tmp_path / "profile-2")
    check = re.search(r'<p id="ktmu-check"([^>]*)>', dumped.stdout)
    assert check, "the page's self-check did not run"
    found = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', check.group(1)))
    figures = mixed_page.read_text().count('<img class="ktmu-figure"')
    assert found["figures"] == found["rendered"] == found["data"] == str(figures) == "14"
    assert found["errors"] == "0", found["error-text"]
    assert dumped.stdout.count('data-rendered="1"') == figures
    assert int(found["width"]) <= 1280  # readable at 1280 px: nothing wider than the window
    console = [line for line in dumped.stderr.splitlines() if "CONSOLE" in line]
    assert console == []


def _sequence_record() -> dict:
    """A ktmu sequence's results.json, by hand: shirt then coat, then both at once (cumulative parts against the base)."""
    def step(label, concepts, utility, zero_shot):
        cumulative = {"concepts": {c: {"base": base, "unlearned": after} for c, (base, after) in concepts.items()},
                      "utility": utility, "unlearned": {"zero_shot": zero_shot}, "base": {"zero_shot": 98.8}}
        return {"label": label, "record": {"method": "nhl-kl", "request": {"world": "fashion", "goal": "fine", "concepts": list(concepts)},
                                           "unlearned": {}, "cumulative": cumulative}}
    rows = [step("1 shirt", {"shirt": (80.3, 3.2)}, 99.8, 97.8), step("2 +coat", {"shirt": (80.3, 6.1), "coat": (89.9, 0.1)}, 97.9, 95.0),
            step("at once", {"shirt": (80.3, 0.8), "coat": (89.9, 0.2)}, 99.7, 96.2)]
    head = ["after", "shirt", "coat", "Quality", "Utility", "Q-U", "Zero-shot", "ZS drop", "step Q-U"]
    return {"steps": [["shirt"], ["coat"]], "method": "nhl-kl", "rows": rows,
            "table": {"head": head, "rows": [["base", "80.30", "89.90", "-", "-", "-", "98.80", "-", "-"]]}}


def test_a_sequence_gets_its_table_and_its_course_not_per_method_figures(tmp_path):
    from ktmu.report.data import sequence_data

    (tmp_path / "seq").mkdir()
    (tmp_path / "seq" / "results.json").write_text(json.dumps(_sequence_record()))
    runs = read_runs([tmp_path / "seq"])
    assert [r.kind for r in runs] == ["sequence"] and [r["label"] for r in runs[0].rows] == ["1 shirt", "2 +coat", "at once"]
    assert [f.slug for f in plan_figures(runs)] == ["sequence-seq"]  # the steps answer different requests: no tradeoff plot
    data = sequence_data(runs[0])
    assert data["concepts"] == {"shirt": [3.2, 6.1, 0.8], "coat": [None, 0.1, 0.2]} and data["base"] == {"shirt": 80.3, "coat": 89.9}
    assert data["utility"] == [99.8, 97.9, 99.7] and data["zero_shot"] == [97.8, 95.0, 96.2] and data["base_zero_shot"] == 98.8
    html = build_report([tmp_path / "seq"]).html
    assert "Requests over time" in html and "<td>base</td>" in html.replace(' class="text"', "")


# ---- the K-curve (issue 13): removal against neighbour data -------------------------------------------------------
def _kcurve_row(method: str, k: int, probe: float, relearn: float, oracle_probe: float, request: dict = SHIRT) -> dict:
    audit = lambda p, r: {"linear_probe": {"forgotten_recall": p}, "relearn": {"forget": {"at_50": r}}}  # noqa: E731
    return {**_row(method, 90.0, 99.0, 98.0, request), "neighbours": {"k": k, "scope": "all"},
            "audit": {"models": {"original": audit(77.0, 72.0), "unlearned": audit(probe, relearn), "oracle": audit(oracle_probe, 20.0)}}}


def test_the_k_curve_gathers_each_methods_audit_by_k_with_the_oracle_of_each_draw():
    k0 = Run("k0", "bench", label="k0", original={"zero_shot": 98.8}, request=SHIRT, rows=[_kcurve_row("nhl-kl", 0, 72.0, 70.0, 57.0)])
    k16 = Run("k16", "bench", label="k16", original={"zero_shot": 98.8}, request=SHIRT,
              rows=[_kcurve_row("merge-mmd", 16, 62.0, 46.0, 59.0), _kcurve_row("scrub", 16, 67.0, 75.0, 59.0)])
    lonely = Run("coat", "bench", label="coat", original={"zero_shot": 98.8}, request=COAT, rows=[_kcurve_row("nhl-kl", 0, 1.0, 1.0, 1.0, COAT)])
    (g,) = D.kcurve_data([k0, k16, lonely])  # coat has one K only: no curve
    assert g["ks"] == [0, 16] and g["request"] == "forget shirt (fine goal) in world fashion"
    assert g["methods"]["merge-mmd"][16]["probe_recall"] == {"value": 62.0, "low": None, "high": None}
    assert g["methods"]["nhl-kl"][0]["relearn_at_50"]["value"] == 70.0 and set(g["methods"]) == {"nhl-kl", "merge-mmd", "scrub"}
    assert g["methods"]["scrub"][16]["qu"]["value"] == pytest.approx(2 * 90 * 99 / 189)
    assert {k: v["probe_recall"]["value"] for k, v in g["oracle"].items()} == {0: 57.0, 16: 59.0}
    assert D.kcurve_data([k0]) == []
    assert [f.slug for f in plan_figures([k0, k16]) if f.slug.startswith("kcurve")] == ["kcurve-1"]


def test_an_audited_bench_with_an_oracle_gets_its_headline_table():
    acc = lambda fine, zs: {"forget_coarse": 99.0, "forget_fine": fine, "retain_coarse": 90.0, "retain_fine": 85.0, "zero_shot": zs}  # noqa: E731
    run = Run("k16", "bench", label="k16", original=acc(80.0, 98.8), request=SHIRT, rows=[_kcurve_row("merge-mmd", 16, 62.0, 46.0, 59.0)])
    run.rows[0].update(unlearned=acc(1.0, 98.0), qu_ca=95.0)
    html = headline_table(run)
    assert ">oracle<" in html and "62.0" in html and "59.0" in html
