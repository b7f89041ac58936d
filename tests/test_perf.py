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
