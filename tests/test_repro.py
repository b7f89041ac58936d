"""Numbers that cannot lie: the same command gives the same bytes, results say where they came from, and bad runs are flagged."""
from __future__ import annotations

import hashlib
import json
import math
import shlex
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fakes import comparable, make_fashion_jsonl, make_jsonl_world, nothing_written, run_ktmu
from ktmu.cli import main

SMALL = ["--model", "tiny-clip", "--force", "--quiet", "--epochs", "2", "--max-per-concept", "10"]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_same_command_gives_the_same_results_and_weights(tmp_path):
    runs = [tmp_path / "a", tmp_path / "b"]
    for out in runs:
        r = run_ktmu(["unlearn", *SMALL, "--method", "nhl-kl", "--out", str(out)])
        assert r.returncode == 0, r.stderr
    a, b = (json.loads((out / "results.json").read_text()) for out in runs)
    assert a["provenance"]["command"].replace(str(runs[0]), "OUT") == b["provenance"]["command"].replace(str(runs[1]), "OUT")
    assert comparable(a, runs[0]) == comparable(b, runs[1])
    assert a["config"]["train_seconds"] > 0 and "total" in a["config"]["seconds"]  # the keys left out exist
    assert sha256(runs[0] / "model.safetensors") == sha256(runs[1] / "model.safetensors")


def test_results_record_the_command_data_root_and_hierarchy(tmp_path):
    from ktmu.workflows.provenance import file_record

    root, hierarchy = make_jsonl_world(tmp_path / "dogs")
    out = tmp_path / "run"
    args = ["unlearn", "--model", "tiny-clip", "--force", "--quiet", "--world", "jsonl", "--data-root", str(root),
            "--hierarchy", str(hierarchy), "--forget", "golden", "--method", "ga", "--epochs", "1", "--zero-shot", "none", "--out", str(out)]
    r = run_ktmu(args)
    assert r.returncode == 0, r.stderr
    prov = json.loads((out / "results.json").read_text())["provenance"]
    assert prov["command"] == "ktmu " + " ".join(shlex.quote(a) for a in args)
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
    assert nothing_written(out)

    assert main([*base, "--force"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["flags"]["original_knows_concept"] is False
    assert res["qu_ca"] is None  # undefined (NaN): strict JSON writes it as null
    assert "UNKNOWN-CONCEPT" in capsys.readouterr().out


def test_a_collapsed_run_is_flagged(tmp_path, capsys):
    """The shipped mini-CLIP knows 'shirt' (here on 20 Fashion-MNIST test images a class); --lr 1e9 wrecks it, and the results say so."""
    root, hierarchy = make_fashion_jsonl(tmp_path / "fashion", train=10, test=20)
    out = tmp_path / "run"
    assert main(["unlearn", "--quiet", "--lr", "1e9", "--epochs", "1", "--zero-shot", "none", "--world", "jsonl", "--data-root", str(root),
                 "--hierarchy", str(hierarchy), "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["flags"]["original_knows_concept"] is True and res["flags"]["collapsed"] is True and res["collapsed"] is True
    assert any(r.startswith("the unlearned model collapsed") for r in res["flags"]["reasons"])
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("nhl-kl"))
    assert row.rstrip().endswith("COLLAPSED")
