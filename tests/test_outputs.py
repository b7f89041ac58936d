"""The --out folder: refused when it cannot hold a run, cleaned only of what ktmu wrote."""
from __future__ import annotations

import os
import tempfile

import pytest

from ktmu.outputs import OutputError, foreign_entries, prepare_out_dir, write_json_atomic


def _ktmu_run(folder):
    """A folder as ``ktmu unlearn``/``bench`` leave it, plus a temporary file of a killed run."""
    write_json_atomic(folder / "results.json", {"rows": []})
    (folder / "table.md").write_text("| method |\n")
    (folder / "model.safetensors").write_bytes(b"\0" * 8)
    (folder / "methods" / "nhl-kl").mkdir(parents=True)
    (folder / "methods" / "nhl-kl" / "results.json").write_text("{}")
    (folder / ".results.json.abc123.tmp").write_text("")
    (folder / "bench.json").write_text("{}")  # the bench store's manifest and per-method records
    (folder / "methods" / "ga.json").write_text("{}")
    (folder / "methods" / ".ga.json.x1y2.tmp").write_text("")


def test_new_folder_is_created_with_parents(tmp_path):
    out = prepare_out_dir(tmp_path / "runs" / "a")
    assert out.is_dir() and list(out.iterdir()) == []  # the probe file is gone


def test_empty_existing_folder_is_used_as_is(tmp_path):
    assert prepare_out_dir(tmp_path) == tmp_path


def test_a_file_is_refused(tmp_path):
    f = tmp_path / "results"
    f.write_text("x")
    with pytest.raises(OutputError, match="is a file, not a folder"):
        prepare_out_dir(f)
    assert f.read_text() == "x"


def test_a_folder_under_a_file_cannot_be_created(tmp_path):
    """Works as root too: no permission can make a path under a file a folder."""
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="cannot create the --out folder.*choose a folder you can write to"):
        prepare_out_dir(tmp_path / "file" / "out")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes into read-only folders; see the probe test below")
def test_a_read_only_folder_is_refused(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(OutputError, match="cannot write in the --out folder"):
            prepare_out_dir(ro)
    finally:
        ro.chmod(0o755)


def test_a_failing_probe_write_is_refused(tmp_path, monkeypatch):
    """The probe's refusal (what a read-only folder or a full disk gives), simulated so it runs as root."""
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(OutputError, match=r"cannot write in the --out folder .* \(Permission denied\)"):
        prepare_out_dir(tmp_path)


def test_non_empty_folder_needs_a_flag_and_names_both(tmp_path):
    _ktmu_run(tmp_path)
    with pytest.raises(OutputError) as ei:
        prepare_out_dir(tmp_path)
    assert "--overwrite" in str(ei.value) and "--resume" in str(ei.value)
    assert (tmp_path / "results.json").exists()


def test_resume_keeps_everything(tmp_path):
    _ktmu_run(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert prepare_out_dir(tmp_path, resume=True) == tmp_path
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_overwrite_removes_only_ktmu_outputs(tmp_path):
    _ktmu_run(tmp_path)
    assert foreign_entries(tmp_path) == []
    prepare_out_dir(tmp_path, overwrite=True)
    assert list(tmp_path.iterdir()) == []


def test_overwrite_refuses_a_folder_with_user_files_and_touches_nothing(tmp_path):
    _ktmu_run(tmp_path)
    (tmp_path / "thesis.tex").write_text("mine")
    (tmp_path / "config.json").write_text("{}")  # *.json is ktmu's only inside methods/
    (tmp_path / ".thesis.tex.x1.tmp").write_text("")  # a temporary file, but not of a ktmu output
    (tmp_path / "methods" / "nhl-kl" / "notes.txt").write_text("mine too")
    (tmp_path / "data").mkdir()
    with pytest.raises(OutputError) as ei:
        prepare_out_dir(tmp_path, overwrite=True)
    msg = str(ei.value)
    assert "thesis.tex" in msg and "data" in msg and "config.json" in msg
    assert {str(p) for p in foreign_entries(tmp_path)} == {
        ".thesis.tex.x1.tmp", "config.json", "data", "thesis.tex", os.path.join("methods", "nhl-kl", "notes.txt")}
    assert (tmp_path / "results.json").exists() and (tmp_path / "model.safetensors").exists()


def test_overwrite_never_follows_a_linked_folder(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "results.json").write_text("keep me")
    out = tmp_path / "out"
    out.mkdir()
    (out / "methods").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(OutputError, match="methods"):
        prepare_out_dir(out, overwrite=True)
    assert (elsewhere / "results.json").read_text() == "keep me"


def test_overwrite_and_resume_together_are_refused(tmp_path):
    with pytest.raises(OutputError, match="pass one of them"):
        prepare_out_dir(tmp_path, overwrite=True, resume=True)


def test_output_error_is_a_value_error():
    assert issubclass(OutputError, ValueError)
