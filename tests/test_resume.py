"""Runs that cannot be lost: a bench killed with SIGKILL resumes where it stopped and ends with the same table."""
from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest

from fakes import comparable, kill_when, nothing_written, start_ktmu
from ktmu.cli import main

METHODS = ["ga", "ga-kl", "nhl-kl", "task-vector", "relabel"]
THIRD = METHODS[2]


def bench_args(out: Path, *extra: str, methods: list[str] = METHODS, epochs: int = 1) -> list[str]:
    return ["bench", "--model", "tiny-clip", "--force", "--quiet", "--epochs", str(epochs), "--max-per-concept", "10",
            "--methods", *methods, "--out", str(out), *extra]


def finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def table_rows(out: Path) -> list[str]:
    """table.md without its first line (which holds the bench time)."""
    return (out / "table.md").read_text().splitlines()[1:]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bench") / "whole"
    rc, _, err = finish(start_ktmu(bench_args(out)))
    assert rc == 0, err
    return out


def test_a_killed_bench_resumes_without_rerunning_finished_methods(tmp_path, uninterrupted):
    out = tmp_path / "killed"
    proc = start_ktmu(bench_args(out))
    third = out / "methods" / f"{THIRD}.json"
    kill_when(proc, third, "the bench finished its third method")
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "results.json").exists() and not (out / "table.md").exists(), "the bench finished before it was killed"
    finished = sorted(p.stem for p in (out / "methods").glob("*.json"))
    assert set(METHODS[:3]) <= set(finished)
    stamps = {m: (out / "methods" / f"{m}.json").stat().st_mtime_ns for m in finished}

    rc, stdout, err = finish(start_ktmu(bench_args(out)))
    assert rc == 0, err
    assert "resuming the bench" in stdout and all(m in stdout.split("resuming the bench")[1].splitlines()[0] for m in METHODS[:3])
    assert {m: (out / "methods" / f"{m}.json").stat().st_mtime_ns for m in finished} == stamps, "a finished method was re-run"
    assert sorted(p.stem for p in (out / "methods").glob("*.json")) == sorted(METHODS)
    assert not [p for p in out.rglob("*.tmp")], "a temporary file of the killed run was left behind"

    resumed = json.loads((out / "results.json").read_text())
    whole = json.loads((uninterrupted / "results.json").read_text())
    assert [r["method"] for r in resumed["rows"]] == METHODS
    assert comparable(resumed, out) == comparable(whole, uninterrupted)
    assert table_rows(out) == table_rows(uninterrupted)


def test_a_bench_with_other_settings_is_refused_and_overwrite_replaces_it(tmp_path, uninterrupted, capsys):
    import shutil

    out = tmp_path / "bench"
    shutil.copytree(uninterrupted, out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    for args, differs in ((bench_args(out, "--seed", "1"), "seed"), (bench_args(out, epochs=2), "epochs"),
                          (bench_args(out, "--forget", "coat"), "request"), (bench_args(out, "--set", "kl_weight=5"), "set")):
        assert main(args) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("ktmu: error: ") and len(err.splitlines()) == 1, err
        assert "holds a bench with other settings" in err and f"({differs} differ)" in err and "--overwrite" in err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before

    assert main(bench_args(out, "--seed", "1", "--overwrite", methods=["ga"])) == 0
    res = json.loads((out / "results.json").read_text())
    assert [r["method"] for r in res["rows"]] == ["ga"] and res["rows"][0]["seed"] == 1
    assert sorted(p.stem for p in (out / "methods").glob("*.json")) == ["ga"]
    assert json.loads((out / "bench.json").read_text())["run_key"]["seed"] == 1


def test_resume_needs_an_interrupted_bench(tmp_path, capsys):
    out = tmp_path / "new"
    assert main([*bench_args(out), "--resume"]) == 2
    assert "holds no interrupted bench" in capsys.readouterr().err


def test_a_bench_that_fails_before_any_method_finishes_leaves_no_manifest(tmp_path, capsys):
    """A bench whose model cannot load must not pin --out to its settings: the corrected command then just runs."""
    folder = tmp_path / "not-a-model"
    folder.mkdir()
    out = tmp_path / "bench"
    assert main(["bench", "--model", f"hf:{folder}", "--quiet", "--zero-shot", "none", "--methods", "ga", "--out", str(out)]) == 2
    assert "has no config.json" in capsys.readouterr().err
    assert nothing_written(out)
    assert main(bench_args(out, methods=["ga"])) == 0
