"""Every user mistake of issue 7 ends in exit code 2, one ``ktmu: error:`` line, no traceback and nothing in --out.

Most cases run ``main()`` in this process with the model loader replaced by one that fails the
test, which proves the mistake is reported before any model loads; a few run the real command in
a subprocess, where stderr holds everything the user would see (library logging included).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import ktmu.backbones
import ktmu.workflows.session
from ktmu.cli import main

TINY = ["--model", "tiny-clip", "--force", "--quiet", "--max-per-concept", "10"]
DOGS = [("terrier", "border terrier"), ("terrier", "cairn terrier"), ("retriever", "golden retriever"), ("retriever", "labrador retriever")]
WORLD_YAML = ("name: dogs\ncoarse: [terrier, retriever]\nfine:\n"
              "  - {name: border terrier, parent: terrier, aliases: [border]}\n  - {name: cairn terrier, parent: terrier}\n"
              "  - {name: golden retriever, parent: retriever, aliases: [golden]}\n  - {name: labrador retriever, parent: retriever}\n"
              "levels: {difficult: [golden retriever]}\n")


def make_jsonl_world(root: Path, test_fine: list[str] | None = None) -> tuple[Path, Path]:
    """A four-concept jsonl world (4 train, 2 test images per concept); ``test_fine``: the concepts the test split holds."""
    rng = np.random.default_rng(0)
    (root / "img").mkdir(parents=True)
    for split, n in (("train", 4), ("test", 2)):
        lines = []
        for k, (coarse, fine) in enumerate(DOGS):
            if split == "test" and test_fine is not None and fine not in test_fine:
                continue
            for i in range(n):
                name = f"{split}_{k}_{i}.png"
                Image.fromarray((rng.random((16, 16, 3)) * 255).astype("uint8")).save(root / "img" / name)
                lines.append(json.dumps({"img_path": f"img/{name}", "coarse_label": coarse, "fine_label": fine}))
        (root / f"{split}.jsonl").write_text("".join(line + "\n" for line in lines))
    hierarchy = root / "world.yaml"
    hierarchy.write_text(WORLD_YAML)
    return root, hierarchy


@pytest.fixture()
def no_model(monkeypatch):
    """Fail the test if anything loads a model: the error must come first."""
    def refuse(*args, **kw):
        raise AssertionError("the model was loaded before the mistake was reported")

    monkeypatch.setattr(ktmu.backbones, "load_backbone", refuse)
    monkeypatch.setattr(ktmu.workflows.session, "load_backbone", refuse)


def nothing_written(out: Path) -> bool:
    """--out absent, or the empty folder prepare_out_dir made to check it can be written."""
    return not out.exists() or (out.is_dir() and not any(out.iterdir()))


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ktmu: error: "), err
    assert "Traceback" not in err
    return lines[0]


def refused(capsys, argv: list[str], out: Path | None = None) -> str:
    """Run main(argv) in-process; assert exit 2, one error line, nothing in ``out``; return the line."""
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    line = one_error_line(err)
    if out is not None:
        assert nothing_written(out), sorted(out.rglob("*"))
    return line


def run_cli(args: list[str], timeout: float = 120, **env) -> subprocess.CompletedProcess:
    """The real command in a subprocess (stderr as the user sees it)."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", **env}
    return subprocess.run([sys.executable, "-m", "ktmu", *args], capture_output=True, text=True, timeout=timeout, env=full_env)


# ---- settings: refused before the model loads ------------------------------------------------------
SETTINGS_CASES = [
    (["--lr", "0"], "lr must be > 0"),
    (["--lr", "-1"], "lr must be > 0"),
    (["--lr", "nan"], "lr must be a finite number"),
    (["--lr", "inf"], "lr must be a finite number"),
    (["--epochs", "0"], "epochs must be >= 1"),
    (["--batch-size", "0"], "batch_size must be >= 1"),
    (["--max-per-concept", "0"], "--max-per-concept must be at least 1"),
    (["--set", "kl_weight=abc"], "kl_weight expects a number, got 'abc'"),
    (["--method", "salun", "--set", "saliency_fraction=0"], "saliency_fraction must be in (0, 1]"),
    (["--set", "nosuchkey=1"], "has no setting 'nosuchkey'"),
    (["--set", "kl_weight"], "--set expects KEY=VALUE"),
]


@pytest.mark.parametrize("args, message", SETTINGS_CASES, ids=[" ".join(a) for a, _ in SETTINGS_CASES])
def test_bad_settings_are_refused_before_the_model_loads(tmp_path, capsys, no_model, args, message):
    out = tmp_path / "out"
    line = refused(capsys, ["unlearn", *TINY, "--out", str(out), *args], out)
    assert message in line


@pytest.mark.parametrize("args, message", [
    (["--lr", "0"], "lr must be > 0"),
    (["--set", "nosuchkey=1"], "none of the benched methods (ga, nhl-kl) has this setting"),
    (["--set", "kl_wieght=1"], "Did you mean 'kl_weight'"),
    (["--methods", "ga", "nhl", "--epochs", "1"], "unknown method"),
])
def test_bench_refuses_bad_settings_before_the_model_loads(tmp_path, capsys, no_model, args, message):
    out = tmp_path / "out"
    argv = ["bench", *TINY, "--out", str(out), *(["--methods", "ga", "nhl-kl"] if "--methods" not in args else []), *args]
    assert message in refused(capsys, argv, out)


def test_bench_set_applies_to_the_methods_that_have_the_key(tmp_path):
    """--set kl_weight=7 on a bench of ga + nhl-kl: nhl-kl gets it, ga (which has no kl_weight) runs as it is."""
    out = tmp_path / "bench"
    assert main(["bench", *TINY, "--methods", "ga", "nhl-kl", "--set", "kl_weight=7", "--epochs", "1", "--out", str(out)]) == 0
    rows = {r["method"]: r for r in json.loads((out / "results.json").read_text())["rows"]}
    assert rows["nhl-kl"]["config"]["method"]["kl_weight"] == 7.0
    assert "kl_weight" not in rows["ga"]["config"]["method"]


def test_settings_errors_print_no_traceback_in_a_real_process(tmp_path):
    out = tmp_path / "out"
    r = run_cli(["unlearn", *TINY, "--out", str(out), "--lr", "nan"])
    assert r.returncode == 2
    assert "lr must be a finite number" in one_error_line(r.stderr)
    assert nothing_written(out)


# ---- a learning rate that wrecks the model ------------------------------------------------------------
def test_a_huge_learning_rate_stops_the_run_and_writes_no_model(tmp_path, capsys):
    """--lr 1e9 on the seeded tiny-clip run: nhl-kl's loss becomes nan in epoch 2; the run stops with one line, nothing written."""
    out = tmp_path / "out"
    rc = main(["unlearn", *TINY, "--lr", "1e9", "--epochs", "2", "--out", str(out)])
    io = capsys.readouterr()
    assert rc == 2
    line = one_error_line(io.err)
    assert "the nhl-kl loss became nan at epoch 2; no model was written" in line and "Lower the learning rate (now 1e+09)" in line
    assert not (out / "model.safetensors").exists() and not (out / "results.json").exists()


# ---- other commands' options: refused before anything loads ----------------------------------------
AUDIT = ["audit", "--model", "tiny-clip", "--original", "tiny-clip", "--quiet", "--out", "OUT"]
OTHER_COMMAND_CASES = [
    (["unlearn", *TINY, "--out", "OUT", "--seeds", "0"], "--seeds must be at least 1, got 0"),
    (["unlearn", *TINY, "--out", "OUT", "--eval-batch-size", "0"], "--eval-batch-size must be at least 1"),
    (["tune", *TINY, "--lrs", "1e-4", "0"], "--lrs must be positive finite learning rates"),
    (["tune", *TINY, "--lrs", "nan"], "--lrs must be positive finite learning rates"),
    (["levels", "--model", "tiny-clip", "--quiet", "--world", "jsonl"], "--world jsonl reads your own images: add --data-root DIR"),
    ([*AUDIT, "--relearn-steps", "0"], "--relearn-steps must be at least 1, got 0"),
    ([*AUDIT, "--relearn-images", "0"], "--relearn-images must be at least 1, got 0"),
    ([*AUDIT, "--relearn-lr", "0"], "--relearn-lr must be a positive finite learning rate such as 1e-4, got 0.0"),
    ([*AUDIT, "--probe-per-class", "0"], "at least 1 train image per class, got 0"),
    ([*AUDIT, "--seeds", "0"], "--seeds must be at least 1, got 0"),
    (["pretrain", "--out", "OUT/m.safetensors", "--lr", "-1"], "--lr must be a positive finite learning rate, got -1.0"),
    (["pretrain", "--out", "OUT/m.safetensors", "--batch-size", "0"], "--batch-size must be at least 1, got 0"),
    (["pretrain", "--out", "OUT/m.safetensors", "--limit", "0"], "--limit must be at least 1 image per world"),
    (["perf", "--model", "tiny-clip", "--repeats", "0"], "--repeats must be at least 1, got 0"),
    (["perf", "--model", "tiny-clip", "--images", "0"], "--images must be at least 1, got 0"),
    (["prepare", "imgnetdogs", "--out", "OUT"], "ktmu prepare imgnetdogs needs --imagenet-root DIR"),
    (["prepare", "compcars-s", "--out", "OUT"], "ktmu prepare compcars-s needs --root DIR"),
    (["world", "fashon"], "no built-in world 'fashon'. Did you mean 'fashion'"),
]


@pytest.mark.parametrize("argv, message", OTHER_COMMAND_CASES, ids=[" ".join(a[:1] + a[-2:]) for a, _ in OTHER_COMMAND_CASES])
def test_other_commands_refuse_bad_options_in_one_line(tmp_path, capsys, no_model, argv, message):
    out = tmp_path / "out"
    argv = [a.replace("OUT", str(out)) for a in argv]
    assert message in refused(capsys, argv, out)


# ---- an internal error is a bug: it keeps its traceback ----------------------------------------------
def _broadcast(*args, **kw):
    return np.ones(3) + np.ones(2)  # numpy: operands could not be broadcast together (a ValueError, not the user's)


def test_an_internal_error_propagates_out_of_main(monkeypatch, tmp_path):
    import ktmu.report.world
    import ktmu.workflows.session

    monkeypatch.setattr(ktmu.report.world, "format_world", _broadcast)
    with pytest.raises(ValueError, match="could not be broadcast"):
        main(["world", "fashion"])
    monkeypatch.setattr(ktmu.workflows.session, "run_summary", _broadcast)  # inside the run, after training
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="could not be broadcast"):
        main(["unlearn", *TINY, "--epochs", "1", "--out", str(out)])
    assert not (out / "results.json").exists()


def test_an_internal_error_prints_its_traceback_and_exits_1_in_a_real_process():
    code = ("import sys, numpy as np, ktmu.report.world as w\n"
            "w.format_world = lambda *a, **k: np.ones(3) + np.ones(2)\n"
            "from ktmu.cli import main\n"
            "sys.exit(main(['world', 'fashion']))\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 1, r.stderr
    assert "Traceback (most recent call last)" in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("ValueError: operands could not be broadcast together")
    assert "ktmu: error:" not in r.stderr and "cli/world.py" in r.stderr


# ---- data: worlds, levels, concepts, splits -----------------------------------------------------------
@pytest.mark.parametrize("args, message", [
    (["--world", "fashon"], "unknown dataset 'fashon'. Did you mean 'fashion'"),
    (["--level", "dificult"], "has no level 'dificult'. Did you mean 'difficult'"),
    (["--forget", "shrit"], "no concept 'shrit' in world 'fashion'. Did you mean 'shirt'"),
    (["--world", "jsonl"], "--world jsonl reads your own images: add --data-root DIR"),
    (["--world", "imagefolder"], "--world imagefolder reads your own images: add --data-root DIR"),
])
@pytest.mark.parametrize("command", ["unlearn", "bench"])
def test_unknown_names_are_reported_before_the_model_loads(tmp_path, capsys, no_model, command, args, message):
    out = tmp_path / "out"
    assert message in refused(capsys, [command, *TINY, "--out", str(out), *args], out)


def test_an_empty_test_split_is_a_clear_error(tmp_path, capsys, no_model):
    root, hierarchy = make_jsonl_world(tmp_path / "w")
    (root / "test.jsonl").write_text("")
    out = tmp_path / "out"
    line = refused(capsys, ["unlearn", *TINY, "--world", "jsonl", "--data-root", str(root), "--hierarchy", str(hierarchy),
                            "--forget", "golden", "--out", str(out)], out)
    assert f"{root / 'test.jsonl'} holds no records" in line
    line = refused(capsys, ["eval", "--model", "tiny-clip", "--quiet", "--world", "jsonl", "--data-root", str(root), "--hierarchy", str(hierarchy)])
    assert "holds no records" in line


def test_a_test_split_without_the_forgotten_concept_is_refused_before_training(tmp_path, capsys, no_model):
    root, hierarchy = make_jsonl_world(tmp_path / "w", test_fine=["border terrier", "cairn terrier", "labrador retriever"])
    out = tmp_path / "out"
    line = refused(capsys, ["unlearn", *TINY, "--world", "jsonl", "--data-root", str(root), "--hierarchy", str(hierarchy),
                            "--forget", "golden", "--out", str(out)], out)
    assert "the test split has no images of 'golden retriever'" in line


def test_eval_on_a_users_jsonl_world(tmp_path, capsys):
    root, hierarchy = make_jsonl_world(tmp_path / "w")
    assert main(["eval", "--model", "tiny-clip", "--quiet", "--world", "jsonl", "--data-root", str(root), "--hierarchy", str(hierarchy),
                 "--zero-shot", "none", "--json", str(tmp_path / "eval.json")]) == 0
    assert "dogs" in json.loads((tmp_path / "eval.json").read_text())["domains"]
    capsys.readouterr()
    line = refused(capsys, ["eval", "--model", "tiny-clip", "--quiet", "--world", "jsonl", "--hierarchy", str(hierarchy)])
    assert "add --data-root DIR" in line


# ---- the --out folder -----------------------------------------------------------------------------
def test_out_that_is_a_file(tmp_path, capsys, no_model):
    f = tmp_path / "results"
    f.write_text("mine")
    assert "is a file, not a folder" in refused(capsys, ["unlearn", *TINY, "--out", str(f)])
    assert f.read_text() == "mine"


def test_out_under_a_file_cannot_be_created(tmp_path, capsys, no_model):
    (tmp_path / "file").write_text("mine")
    line = refused(capsys, ["unlearn", *TINY, "--out", str(tmp_path / "file" / "out")])
    assert "cannot create the --out folder" in line


@pytest.mark.parametrize("command", ["unlearn", "bench"])
def test_a_non_empty_out_needs_overwrite(tmp_path, capsys, command):
    out = tmp_path / "out"
    run = [command, *TINY, "--epochs", "1", "--out", str(out)] + (["--methods", "ga"] if command == "bench" else ["--method", "ga"])
    (out).mkdir()
    (out / "results.json").write_text("{}")
    assert main(run) == 2
    assert "is not empty; pass --overwrite" in one_error_line(capsys.readouterr().err)
    assert [p.name for p in out.iterdir()] == ["results.json"] and (out / "results.json").read_text() == "{}"
    assert main([*run, "--overwrite"]) == 0
    assert json.loads((out / "results.json").read_text()) != {}


def test_overwrite_keeps_files_ktmu_did_not_write(tmp_path, capsys, no_model):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    line = refused(capsys, ["unlearn", *TINY, "--out", str(out), "--overwrite"])
    assert "also holds notes.txt" in line and (out / "notes.txt").read_text() == "mine"


# ---- runtime and model specs ----------------------------------------------------------------------
@pytest.mark.parametrize("args, message", [
    (["--precision", "bf16x"], "unknown precision 'bf16x'"),
    (["--zero-shot", "nosuchdomain"], "unknown zero-shot domain 'nosuchdomain'"),
    (["--zero-shot", "food101"], "pass --zero-shot food101=DIR"),
    (["--zero-shot", "food101=/does/not/exist"], "/does/not/exist for 'food101' does not exist"),
    (["--workers", "-1"], "workers must be"),
])
def test_bad_runtime_options_are_refused_before_the_model_loads(tmp_path, capsys, no_model, args, message):
    out = tmp_path / "out"
    assert message in refused(capsys, ["unlearn", *TINY, "--out", str(out), *args], out)


def test_cuda_without_cuda(tmp_path, capsys, no_model):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    out = tmp_path / "out"
    assert "CUDA is not available" in refused(capsys, ["unlearn", *TINY, "--out", str(out), "--device", "cuda"], out)


def test_hf_folder_without_config(tmp_path, capsys):
    folder = tmp_path / "not-a-model"
    folder.mkdir()
    out = tmp_path / "out"
    line = refused(capsys, ["unlearn", "--model", f"hf:{folder}", "--quiet", "--zero-shot", "none", "--out", str(out)], out)
    assert "has no config.json" in line


def test_a_pretrained_tag_without_network(tmp_path):
    """open_clip:RN50:openai cannot be downloaded here: one line saying so and how to pass a local file."""
    out = tmp_path / "out"
    r = run_cli(["unlearn", "--model", "open_clip:RN50:openai", "--quiet", "--zero-shot", "none", "--out", str(out)], timeout=120)
    assert r.returncode == 2, r.stderr
    line = one_error_line(r.stderr)
    assert "could not download the weights of open_clip:RN50:openai" in line
    assert "pass the local file instead: --model open_clip:RN50:/path/to/weights.bin" in line
    assert nothing_written(out)
