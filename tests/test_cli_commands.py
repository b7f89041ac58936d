"""The command line's shape: one module per command, shared option groups, ``--version``, ``ls`` and ``validate``."""
from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

import ktmu
import ktmu.cli
import ktmu.data
import ktmu.workflows.session
from ktmu.cli import COMMANDS, build_parser, main
from ktmu.methods import METHODS

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SHIPPED = sorted(CONFIGS.rglob("*.yaml"))
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return dict(next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices)


def _option(sp: argparse.ArgumentParser, flag: str) -> argparse.Action | None:
    return next((a for a in sp._actions if flag in a.option_strings), None)


@pytest.fixture()
def nothing_loads(monkeypatch):
    """Fail the test if a model or a dataset is loaded."""
    def refuse(*args, **kw):
        raise AssertionError("a model or a dataset was loaded")

    for module, name in ((ktmu.workflows.session, "load_backbone"), (ktmu.workflows.session, "load_dataset"), (ktmu.data, "load_dataset")):
        monkeypatch.setattr(module, name, refuse)


# ---- one module per command ----------------------------------------------------------------------
def test_the_parser_has_exactly_the_commands_in_order():
    assert list(_subcommands(build_parser())) == list(COMMANDS)
    assert {"eval", "pretrain", "unlearn", "sequence", "bench", "tune", "levels", "demo", "world", "prepare", "audit", "perf", "report",
            "export", "ls", "validate"} == set(COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_module_is_small_and_has_add_parser_and_run(name):
    module = importlib.import_module(f"ktmu.cli.{name}")
    assert callable(module.add_parser) and callable(module.run)
    assert len(Path(module.__file__).read_text().splitlines()) <= 120, f"ktmu/cli/{name}.py: keep a command module under 120 lines"


def test_a_new_command_is_one_module_and_one_entry_in_commands(monkeypatch, capsys):
    hello = types.ModuleType("ktmu.cli.hello")
    hello.add_parser = lambda sub: sub.add_parser("hello", help="say hello")
    hello.run = lambda args: print("hello from a plug-in command") or 0
    monkeypatch.setitem(sys.modules, "ktmu.cli.hello", hello)
    monkeypatch.setattr(ktmu.cli, "COMMANDS", (*COMMANDS, "hello"))
    assert main(["hello"]) == 0
    assert capsys.readouterr().out == "hello from a plug-in command\n"


def test_shared_options_are_the_same_option_everywhere():
    """--goal, --forget and the world options are declared once: every command that takes them takes the same option."""
    subs = _subcommands(build_parser())
    for flag in ("--goal", "--forget", "--world", "--data-root", "--hierarchy", "--zero-shot", "--level", "--device", "--quiet"):
        seen = {name: _option(sp, flag) for name, sp in subs.items() if _option(sp, flag) is not None}
        assert len(seen) >= 2, flag
        shapes = {(a.default, tuple(a.choices or ()), a.help, a.nargs, type(a).__name__) for a in seen.values()}
        assert len(shapes) == 1, (flag, sorted(seen))
    assert {n for n, sp in subs.items() if _option(sp, "--goal")} == {"unlearn", "sequence", "bench", "tune", "audit"}
    assert _option(subs["levels"], "--world") is not None and _option(subs["levels"], "--zero-shot") is None
    assert _option(subs["audit"], "--model").required and not _option(subs["eval"], "--model").required


# ---- --version and ls ----------------------------------------------------------------------------
def test_version_in_a_real_process():
    r = subprocess.run([sys.executable, "-m", "ktmu", "--version"], capture_output=True, text=True, timeout=120, env=ENV)
    assert (r.returncode, r.stdout) == (0, f"ktmu {ktmu.__version__}\n"), r.stderr


def test_ls_one_kind_lists_each_name_with_its_first_docstring_line(capsys):
    assert main(["ls", "methods"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == METHODS.names()
    nhl = next(line for line in lines if line.startswith("nhl-kl "))
    assert nhl.split(None, 1)[1] == Path(importlib.import_module("ktmu.methods.nhl_kl").__file__).read_text().splitlines()[0].strip('"')


def test_ls_recipes_shows_each_shipped_file_with_the_command_that_runs_it(capsys):
    assert main(["ls", "recipes"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(SHIPPED)
    for path, line in zip(SHIPPED, lines):
        rel = path.relative_to(CONFIGS.parent).as_posix()
        name, command = line.split(None, 1)
        assert name == rel and command.startswith("ktmu ") and f"--config {rel}" in command and not command.endswith("\\")


def test_ls_everything_has_one_heading_per_kind_and_imports_no_backend():
    code = "import sys\nfrom ktmu.cli import main\nmain(['ls'])\nprint('open_clip' in sys.modules)\n"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=ENV)
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert [line.split()[0] for line in out if line and not line.startswith(" ")][:-1] == \
        ["methods", "backbones", "worlds", "domains", "recipes"]
    assert out[-1] == "False"  # listing the open_clip backbone read its docstring without importing open_clip
    assert "  food101" in r.stdout and "  tiny-clip" in r.stdout and "  jsonl" in r.stdout


# ---- validate ------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_recipe_validates_without_loading_anything(path, capsys, nothing_loads):
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith(f"{path}: a valid recipe (sha256 ")
    assert f"methods ({len(ktmu.load_recipe(path).methods)}):" in out and "runs with: ktmu " in out


@pytest.mark.parametrize("text, message", [
    ("level: dificult\n", "level: world 'fashion' has no level 'dificult'. Did you mean 'difficult'?"),
    ("world: imgnetdogs\nlevel: hardest\n", "level: world 'imgnetdogs' has no level 'hardest'."),
    ("model: open-clip:ViT-B-32\n", "model: unknown backbone kind 'open-clip'. Did you mean 'open_clip'"),
    ("precision: fp16\n", "precision must be one of fp32, bf16, amp-fp16, got 'fp16'."),
    ("goal: fin\n", "goal must be one of fine, coarse, hybrid, got 'fin'. Did you mean 'fine'?"),
    ("trainer: {epohcs: 2}\n", "trainer: the trainer has no setting 'epohcs'. Did you mean 'epochs'?"),
])
def test_validate_reports_a_bad_recipe_in_one_line(tmp_path, capsys, nothing_loads, text, message):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"ktmu: error: {path}: ") and message in err, err


def test_validate_leaves_the_level_of_a_world_of_your_own_to_its_hierarchy(tmp_path, capsys, nothing_loads):
    path = tmp_path / "mine.yaml"
    path.write_text("world: jsonl\nlevel: anything\nzero_shot: [food101]\nmethods: {ga: {}}\n")
    assert main(["validate", str(path)]) == 0
    assert "zero-shot: food101 (folders from --zero-shot NAME=DIR)" in capsys.readouterr().out
