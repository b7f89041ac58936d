"""One process and two processes under ``accelerate launch`` give the same run (CPU, gloo).

The embedded difficult request with nhl-kl at its defaults, on a small copy of Fashion-MNIST (40
train and 20 test images per class, so that the test times training, not a 10,000-image evaluation):
the forget batches (32 and 8 shirts) are split across the processes with the same effective batch,
gradients summed, evaluation sharded and gathered.
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from fakes import ktmu_env, make_fashion_jsonl

ARGS = ["unlearn", "--method", "nhl-kl", "--model", "mini-clip", "--zero-shot", "none", "--quiet", "--device", "cpu", "--world", "jsonl"]
KEYS = ("forget_coarse", "forget_fine", "retain_coarse", "retain_fine")


def _run(cmd):
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ktmu_env(), timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    root, hierarchy = make_fashion_jsonl(tmp_path / "fashion", train=40, test=20)
    args = [*ARGS, "--data-root", str(root), "--hierarchy", str(hierarchy)]
    one, two = tmp_path / "one", tmp_path / "two"
    _run([sys.executable, "-m", "ktmu", *args, "--out", str(one)])
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--num_machines", "1", "--cpu",
              "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "ktmu", *args, "--out", str(two)]
    _run(launch)
    a, b = (json.loads((d / "results.json").read_text()) for d in (one, two))
    assert a["request"]["forget_set_size"] == 40 and a["original"]["forget_fine"] > 50  # the model knows these shirts
    assert a["config"]["selected_epoch"] == b["config"]["selected_epoch"]
    for part in ("original", "unlearned"):
        for k in KEYS:
            assert abs(a[part][k] - b[part][k]) <= 0.1, (part, k, a[part][k], b[part][k])
    for k in ("quality", "utility", "qu"):
        assert abs(a[k] - b[k]) <= 0.1, (k, a[k], b[k])
    assert not list(Path(two).glob("*.tmp"))


def test_more_processes_than_images_per_batch_is_refused(tiny_backbone, toy_world, toy_train, monkeypatch):
    from ktmu.runtime.dist import Dist, DistError
    from ktmu.methods import build_method
    from ktmu.engine.request import UnlearningRequest
    from ktmu.engine.trainer import ForgetSet, TrainConfig, unlearn
    import ktmu.engine.trainer as train_mod

    monkeypatch.setattr(train_mod, "get_dist", lambda: Dist(rank=0, world=4))
    forget = ForgetSet.from_request(UnlearningRequest.parse(toy_world, ["shirt"]), toy_train, tiny_backbone.preprocess)
    with pytest.raises(DistError, match="Launch at most 2 processes"):
        unlearn(tiny_backbone, build_method("ga"), forget, toy_world, TrainConfig(lr=1e-3, epochs=1, batch_size=4), progress=False)


def test_dist_shards_cover_everything_once():
    from ktmu.runtime.dist import Dist

    shards = [Dist(r, 3).shard(10).tolist() for r in range(3)]
    assert sum(shards, []) == list(range(10)) and [len(s) for s in shards] == [4, 3, 3]
