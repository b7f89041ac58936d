"""Numbers that cannot lie: the same command gives the same bytes, results say where they came from, and bad runs are flagged."""
from __future__ import annotations

import hashlib
import json
import math
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from ktmu.cli import main

SMALL = ["--model", "tiny-clip", "--force", "--quiet", "--epochs", "2", "--max-per-concept", "10"]
TIMING_KEYS = {"train_seconds", "seconds", "git_commit"}


def ktmu(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    """The real command (so that results.json records the real command line)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "ktmu", *args], capture_output=True, text=True, timeout=timeout, env=env)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def comparable(obj, out: Path):
    """``obj`` without timing keys, with the --out path replaced and NaN comparable."""
    if isinstance(obj, dict):
        return {k: comparable(v, out) for k, v in obj.items() if k not in TIMING_KEYS}
    if isinstance(obj, list):
        return [comparable(v, out) for v in obj]
    if isinstance(obj, str):
        return obj.replace(str(out), "OUT")
    if isinstance(obj, float) and math.isnan(obj):
        return "nan"
    return obj


def test_the_same_command_gives_the_same_results_and_weights(tmp_path):
    runs = [tmp_path / "a", tmp_path / "b"]
    for out in runs:
        r = ktmu(["unlearn", *SMALL, "--method", "nhl-kl", "--out", str(out)])
        assert r.returncode == 0, r.stderr
    a, b = (json.loads((out / "results.json").read_text()) for out in runs)
    assert a["provenance"]["command"].replace(str(runs[0]), "OUT") == b["provenance"]["command"].replace(str(runs[1]), "OUT")
    assert comparable(a, runs[0]) == comparable(b, runs[1])
    assert a["config"]["train_seconds"] > 0 and "total" in a["config"]["seconds"]  # the keys left out exist
    assert sha256(runs[0] / "model.safetensors") == sha256(runs[1] / "model.safetensors")


def _jsonl_world(root: Path) -> Path:
    rng = np.random.default_rng(0)
    pairs = [("terrier", "border terrier"), ("terrier", "cairn terrier"), ("retriever", "golden retriever"), ("retriever", "labrador retriever")]
    (root / "img").mkdir(parents=True)
    for split, n in (("train", 4), ("test", 2)):
        lines = []
        for k, (coarse, fine) in enumerate(pairs):
            for i in range(n):
                Image.fromarray((rng.random((16, 16, 3)) * 255).astype("uint8")).save(root / "img" / f"{split}_{k}_{i}.png")
                lines.append(json.dumps({"img_path": f"img/{split}_{k}_{i}.png", "coarse_label": coarse, "fine_label": fine}))
        (root / f"{split}.jsonl").write_text("".join(line + "\n" for line in lines))
    hierarchy = root.parent / "dogs.yaml"
    hierarchy.write_text("name: dogs\ncoarse: [terrier, retriever]\nfine:\n  - {name: border terrier, parent: terrier}\n"
                         "  - {name: cairn terrier, parent: terrier}\n  - {name: golden retriever, parent: retriever, aliases: [golden]}\n"
                         "  - {name: labrador retriever, parent: retriever}\n")
    return hierarchy


def test_results_record_the_command_data_root_and_hierarchy(tmp_path):
    from ktmu.runs.provenance import file_record

    root = tmp_path / "dogs"
    hierarchy = _jsonl_world(root)
    out = tmp_path / "run"
    args = ["unlearn", "--model", "tiny-clip", "--force", "--quiet", "--world", "jsonl", "--data-root", str(root),
            "--hierarchy", str(hierarchy), "--forget", "golden", "--method", "ga", "--epochs", "1", "--zero-shot", "none", "--out", str(out)]
    r = ktmu(args)
    assert r.returncode == 0, r.stderr
    prov = json.loads((out / "results.json").read_text())["provenance"]
    assert prov["command"] == "ktmu " + " ".join(shlex.quote(a) for a in args)
    import hashlib

    assert prov["hierarchy"]["sha256"] == hashlib.sha256(hierarchy.read_bytes()).hexdigest()  # as `sha256sum` prints it
    assert prov["hierarchy"] == file_record(hierarchy) and prov["hierarchy"]["path"] == str(hierarchy.resolve())
    assert len(prov["hierarchy"]["sha256"]) == 64
    assert prov["data_root"]["path"] == str(root.resolve())
    assert prov["data_root"]["sha256"] == file_record(root)["sha256"] != "missing"
    (root / "test.jsonl").write_text((root / "test.jsonl").read_text().replace("img/test_0_0", "img/test_0_1"))
    assert file_record(root)["sha256"] != prov["data_root"]["sha256"]  # the hash follows the image lists


# ---- the three cases of the issue, end to end ---------------------------------------------------------
@pytest.mark.parametrize("lr", [1e-300, 1e-12])
def test_a_tiny_learning_rate_is_flagged_unchanged_only_when_no_weight_moved(tmp_path, capsys, lr):
    """1e-300 rounds every step to zero in float32 (bit-identical weights); 1e-12 moves a few of them, which is not 'unchanged'."""
    from ktmu.backbones import load_backbone

    out = tmp_path / "run"
    assert main(["unlearn", *SMALL, "--lr", repr(lr), "--method", "ga", "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    original = load_backbone("tiny-clip").trainable_state_dict()
    saved = load_file(str(out / "model.safetensors"))
    assert set(saved) == set(original)
    identical = all(torch.equal(saved[k], original[k]) for k in original)
    assert res["flags"]["unchanged"] is identical
    assert identical is (lr == 1e-300)
    assert ("UNCHANGED" in capsys.readouterr().out) is identical


def test_a_model_that_does_not_know_the_concept_is_refused_unless_forced(tmp_path, capsys):
    out = tmp_path / "run"
    base = ["unlearn", "--model", "tiny-clip", "--quiet", "--epochs", "1", "--max-per-concept", "10", "--method", "ga", "--out", str(out)]
    assert main(base) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ktmu: error: ") and len(err.splitlines()) == 1
    assert "does not know the forgotten fine concept" in err and "add --force" in err
    assert not out.exists() or not any(out.iterdir())

    assert main([*base, "--force"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["flags"]["original_knows_concept"] is False
    assert res["qu_ca"] is None  # undefined (NaN): strict JSON writes it as null
    assert "UNKNOWN-CONCEPT" in capsys.readouterr().out


def test_a_collapsed_run_is_flagged(tmp_path, capsys):
    """The shipped mini-CLIP knows 'shirt'; --lr 1e9 wrecks it, and the results say so."""
    out = tmp_path / "run"
    assert main(["unlearn", "--quiet", "--lr", "1e9", "--epochs", "1", "--max-per-concept", "10", "--zero-shot", "none", "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["flags"]["original_knows_concept"] is True and res["flags"]["collapsed"] is True and res["collapsed"] is True
    assert any(r.startswith("the unlearned model collapsed") for r in res["flags"]["reasons"])
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("nhl-kl"))
    assert row.rstrip().endswith("COLLAPSED")
