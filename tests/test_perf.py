"""`ktmu perf` smoke run and the GPU check's refusal on a machine without CUDA."""
import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

from ktmu.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_perf_reports_every_ratio(tmp_path, capsys):
    out = tmp_path / "perf.json"
    assert main(["perf", "--model", "tiny-clip", "--methods", "ga", "nhl-kl", "salun", "--steps", "2", "--epochs", "1",
                 "--repeats", "1", "--images", "64", "--device", "cpu", "--quiet", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert {"model", "device", "precision", "step_ratio", "epoch_overhead_ratio", "eval_ratio", "peak_mem_mb"} <= set(r)
    assert set(r["step_ratio"]) == {"ga", "nhl-kl", "salun"} and all(x > 0 for x in r["step_ratio"].values())
    assert r["eval_ratio"] > 0 and r["epoch_overhead_ratio"] >= 0 and r["peak_mem_mb"] > 0
    assert r["mfu"] is None  # no known accelerator peak on CPU
    assert "step_ratio" in capsys.readouterr().out


def test_perf_on_a_synthetic_world_for_other_backbones(tmp_path):
    """Backbones other than the embedded ones are measured on random images of --image-size pixels."""
    import open_clip

    (tmp_path / "ktmu-perf-tiny.json").write_text(json.dumps({
        "embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }))
    open_clip.add_model_config(tmp_path)
    out = tmp_path / "perf.json"
    assert main(["perf", "--model", "open_clip:ktmu-perf-tiny", "--methods", "nhl-kl", "--classes", "14", "--steps", "1",
                 "--epochs", "1", "--repeats", "1", "--images", "32", "--device", "cpu", "--quiet", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["model"] == "open_clip:ktmu-perf-tiny"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_gpu_check_refuses_without_cuda():
    env = {**os.environ, "PYTHON": str(Path(os.sys.executable))}
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh")], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2 and "no CUDA device" in proc.stderr


# ---- the study's loop as a baseline, --compile, the record's keys, bad input ----------------------------------

@pytest.fixture(scope="module")
def tiny():
    """tiny-clip on the embedded difficult request: backbone, world, a 16-image forget set and its frozen reference."""
    from ktmu.backbones import load_backbone
    from ktmu.data import load_dataset
    from ktmu.engine.forget_set import ForgetSet
    from ktmu.engine.reference import compute_reference
    from ktmu.engine.request import UnlearningRequest

    torch.manual_seed(0)
    backbone = load_backbone("tiny-clip", device="cpu")
    train = load_dataset("fashion", "train")
    world = train.hierarchy
    forget = ForgetSet.from_request(UnlearningRequest.parse(world, list(world.levels["difficult"])), train, backbone.preprocess,
                                    max_per_concept=16)
    return backbone, world, forget, compute_reference(backbone, forget, world)


def _perturb(backbone, seed: int) -> None:
    """Move every trainable weight by seeded noise: the trainable model is no longer the original, the reference stays frozen."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in backbone.named_trainable_parameters():
            p.add_(1e-2 * torch.randn(p.shape, generator=g))


@pytest.mark.parametrize("name", ["nhl-kl", "ga-kl", "feat-orth"])
def test_study_loop_loss_equals_ktmus_where_the_designs_agree(tiny, name):
    """One template on both sides and the frozen original as reference: the study's per-step batch gives ktmu's loss.

    The study's own reference (the template ensemble) gives another loss: the comparison can tell them apart.
    """
    from ktmu.backbones.encode import class_text_features
    from ktmu.engine.trainer import StepInputs
    from ktmu.methods import build_method
    from ktmu.workflows.study_loop import StudyLoop, frozen_copy

    backbone, world, forget, reference = tiny
    saved = backbone.copy_trainable()
    method = build_method(name)
    loop = StudyLoop(backbone, frozen_copy(backbone), method, forget, world, lr=1e-3, batch_size=8)
    inputs = StepInputs.build(backbone, method, forget, world, reference, torch.Generator().manual_seed(0))
    try:
        _perturb(backbone, seed=1)
        pos = torch.tensor([0, 3, 5, 6, 9, 12, 14, 15])
        images = forget.source.images(pos)
        k = 2
        template = loop.templates[k]
        ensemble = method.loss(loop.batch(images, pos, template))["loss"].item()
        loop.ref_fine_text = class_text_features(loop.original, world.fine_names, [template])
        loop.ref_coarse_text = class_text_features(loop.original, world.coarse_names, [template])
        study = method.loss(loop.batch(images, pos, template))["loss"].item()
        ktmu = method.loss(inputs.batch(images, pos, k))["loss"].item()
    finally:
        backbone.load_trainable(saved)
    assert study == pytest.approx(ktmu, rel=1e-4, abs=1e-5)
    if method.needs_reference:  # ensemble and single-template references differ by far more than rounding
        assert abs(ensemble - ktmu) > 1e-3


def test_study_loop_epoch_keeps_and_copies_like_the_study(tiny):
    """A study epoch runs every batch in fp32, reads its accuracy back and keeps its first epoch (best starts at +inf)."""
    from ktmu.methods import build_method
    from ktmu.workflows.study_loop import StudyLoop, frozen_copy, study_tests_per_run

    backbone, world, forget, _ = tiny
    saved = backbone.copy_trainable()
    loop = StudyLoop(backbone, frozen_copy(backbone), build_method("nhl-kl"), forget, world, lr=1e-7, batch_size=8)
    try:
        epoch = loop.epoch()
    finally:
        backbone.load_trainable(saved)
    assert epoch.kept and len(epoch.step_seconds) == 2 and 0 <= epoch.fine_acc <= 100
    assert backbone.precision == "fp32"
    assert study_tests_per_run(8, 47) == 8 * 47 // 8 + 8  # every 8th iteration of the run, plus one per epoch


def test_compiled_loss_equals_eager_on_tiny_clip(tiny):
    """--compile changes how the encoders run, not what they compute: the same loss as eager on tiny-clip (torch's inductor).

    Forward only (inference mode), so that the test compiles two small graphs, not their backward too.
    """
    from ktmu.backbones.speed import compile_unavailable
    from ktmu.engine.trainer import StepInputs
    from ktmu.methods import build_method

    backbone, world, forget, reference = tiny
    if compile_unavailable(backbone.device):
        pytest.skip(f"torch cannot compile here: {compile_unavailable(backbone.device)}")
    method = build_method("nhl-kl")
    pos = torch.arange(8)
    images = forget.source.images(pos)
    saved = backbone.copy_trainable()

    def loss() -> float:
        with torch.no_grad():
            inputs = StepInputs.build(backbone, method, forget, world, reference, torch.Generator().manual_seed(0))
            return method.loss(inputs.batch(images, pos, 1))["loss"].item()

    try:
        _perturb(backbone, seed=2)  # away from the original, where nhl-kl's loss is 0
        eager = loss()
        backbone.compile("default")
        assert backbone.compiled == "default"
        compiled = loss()
    finally:
        backbone.uncompile()
        backbone.load_trainable(saved)
    assert abs(eager) > 1e-3
    assert compiled == pytest.approx(eager, rel=1e-4, abs=1e-6)


STUDY_KEYS = {"vs_study", "vs_study_spread", "vs_study_by_variant", "study_step_seconds", "study_flop_method", "study_flop_ratio",
              "vs_study_of_flop_ratio", "run", "ktmu_run_seconds", "study_run_seconds", "vs_study_run", "vs_study_run_with_tests",
              "study_test_seconds", "study_tests_per_run", "study_copy_seconds"}
OVERHEAD_KEYS = {"epoch_overhead_ratio", "epoch_overhead_ratio_study_selection", "epoch_overhead_ratio_shared_reference",
                 "scoring_floor", "scoring_ratio", "overhead_seconds", "overhead_run", "overhead_per_epoch"}


def _strict_json(path: Path) -> dict:
    def refuse(constant: str):
        raise ValueError(f"not strict JSON: {constant}")
    return json.loads(path.read_text(), parse_constant=refuse)


def test_perf_json_carries_every_new_key(tmp_path, capsys):
    """--baseline study, --variants and --precisions: every key of the side-by-side is in the strict-JSON record."""
    out = tmp_path / "perf.json"
    assert main(["perf", "--model", "tiny-clip", "--methods", "nhl-kl", "ga", "scrub", "--steps", "1", "--epochs", "1", "--repeats", "1",
                 "--images", "32", "--device", "cpu", "--baseline", "study", "--variants", "adamw-foreach", "channels-last",
                 "--precisions", "bf16", "--quiet", "--json", str(out)]) == 0
    r = _strict_json(out)
    assert STUDY_KEYS | OVERHEAD_KEYS | {"step_ratio", "step_ratio_spread", "step_ratio_yardstick", "step_ratio_per_gradient", "step_seconds", "variants",
                                         "step_tflops", "mfu", "attention_ops", "host_syncs_per_step", "timing", "notes"} <= set(r)
    assert set(r["vs_study"]) == {"nhl-kl", "ga"}  # scrub reads neighbour images, which the study's loop has none of
    assert any("scrub" in n for n in r["notes"])
    assert r["step_ratio_yardstick"] == {"nhl-kl": "plain-ce", "ga": "plain-ce", "scrub": "plain-ce+neighbours"}
    assert set(r["variants"]) == {"bf16", "adamw-foreach", "channels-last"}
    for name, v in r["variants"].items():
        assert {"precision", "compile", "adamw", "channels_last", "plain_step_seconds", "nhl-kl_step_seconds", "speedup", "mfu"} <= set(v)
        assert set(v["speedup"]) == {"ratio", "spread"} and v["speedup"]["ratio"] > 0
    assert r["variants"]["bf16"]["precision"] == "bf16" and r["variants"]["adamw-foreach"]["adamw"] == "foreach"
    assert set(r["vs_study_by_variant"]) == {"base", "bf16", "adamw-foreach", "channels-last"}
    assert r["run"] == {"epochs": 8, "steps_per_epoch": 47, "forget_images": 47 * 32, "study_test_images": 500}
    assert r["scoring_floor"] > 0 and r["study_flop_ratio"] > 1  # the study's step does more: full-context prompts, the original's images
    assert r["host_syncs_per_step"] is None  # counted on CUDA only
    printed = capsys.readouterr().out
    assert "vs_study" in printed and "scoring" in printed and "variant bf16" in printed


def test_perf_compile_variant_reports_its_compile_time(tmp_path, monkeypatch):
    """--compile is timed as its own variant, with its compile time apart from the step (the compiler itself stubbed out: the
    record's plumbing is under test here, the compiled loss above)."""
    import ktmu.backbones.speed as speed

    calls = []
    monkeypatch.setattr(speed, "compile_unavailable", lambda device: None)
    monkeypatch.setattr(speed, "compile_modules", lambda modules, mode: calls.append(mode))
    monkeypatch.setattr(speed, "uncompile_modules", lambda modules: calls.append(None))
    out = tmp_path / "perf.json"
    assert main(["perf", "--model", "tiny-clip", "--methods", "ga", "--steps", "1", "--epochs", "1", "--repeats", "1", "--images", "32",
                 "--device", "cpu", "--compile", "--quiet", "--json", str(out)]) == 0
    r = _strict_json(out)
    v = r["variants"]["compile-default"]
    assert v["compile"] == "default" and isinstance(v["compile_seconds"], float) and v["plain_step_seconds"] > 0
    assert "default" in calls and calls[-1] is None  # compiled for the variant's cells only, eager again after
    assert r["step_ratio"]["ga"] > 0  # the run's own (eager) cells


def test_perf_compile_where_torch_cannot_compile_is_one_error_line(monkeypatch, capsys):
    import ktmu.backbones.speed as speed

    monkeypatch.setattr(speed, "compile_unavailable", lambda device: "no C++ compiler was found")
    assert main(["perf", "--model", "tiny-clip", "--methods", "ga", "--steps", "1", "--device", "cpu", "--compile", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ktmu: error: --compile") and "no C++ compiler" in err[0] and "without --compile" in err[0]


@pytest.mark.parametrize("argv, words", [(["--precisions", "tf32"], "CUDA"), (["--baseline", "nope"], "invalid choice")])
def test_perf_refuses_what_cannot_run(argv, words, capsys):
    code = None
    try:
        code = main(["perf", "--model", "tiny-clip", "--methods", "ga", "--steps", "1", "--device", "cpu", "--quiet", *argv])
    except SystemExit as e:  # argparse's own refusal of a choice
        code = e.code
    assert code == 2 and words in capsys.readouterr().err


def test_baseline_study_on_a_frozen_text_tower_says_so_and_times_the_rest(tmp_path):
    """mini-clip's MiniLM never trains (only its projection does): the output says so, and the study's loop is timed as it applies."""
    out = tmp_path / "perf.json"
    assert main(["perf", "--model", "mini-clip", "--methods", "nhl-kl", "--steps", "1", "--epochs", "1", "--repeats", "1",
                 "--images", "32", "--device", "cpu", "--baseline", "study", "--quiet", "--json", str(out)]) == 0
    r = _strict_json(out)
    assert any("trains only" in n and "frozen" in n for n in r["notes"])
    assert r["vs_study"]["nhl-kl"] > 0 and r["study_step_seconds"]["nhl-kl"] > 0 and r["vs_study_run"]["nhl-kl"] > 0


def test_baseline_study_without_any_trainable_text_says_so(tmp_path):
    out = tmp_path / "perf.json"
    assert main(["perf", "--model", "tiny-clip", "--train", "image", "--methods", "ga", "--steps", "1", "--epochs", "1", "--repeats", "1",
                 "--images", "32", "--device", "cpu", "--baseline", "study", "--quiet", "--json", str(out)]) == 0
    r = _strict_json(out)
    assert any("trains no text weight" in n for n in r["notes"]) and r["vs_study"]["ga"] > 0
