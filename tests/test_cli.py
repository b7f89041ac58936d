"""End-to-end runs of the ``ktmu`` command line."""
import json

import pytest

from ktmu.cli import main


def test_eval_json_schema_and_ranges(tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert main(["eval", "--json", str(out), "--quiet"]) == 0
    data = json.loads(out.read_text())
    assert data["model"] == "mini-clip"
    fashion, digits = data["domains"]["fashion"], data["domains"]["digits"]
    for r in (fashion, digits):
        assert 0 <= r["fine_acc"] <= 100 and 0 <= r["ece"] <= 1
        assert all(0 <= v <= 100 for v in r["per_class"].values())
    assert set(fashion["per_class"]) == {"t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"}
    assert 0 <= fashion["coarse_acc"] <= 100 and "coarse_acc" not in digits
    # the shipped model really knows the worlds (issue targets: 88 / 93 / 90)
    assert fashion["fine_acc"] >= 88 and fashion["coarse_acc"] >= 93 and digits["fine_acc"] >= 90
    assert "fashion" in capsys.readouterr().out


def test_unlearn_smoke_on_tiny_model(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["unlearn", "--model", "tiny-clip", "--method", "nhl-kl", "--forget", "blouse", "--out", str(out),
               "--epochs", "2", "--max-per-concept", "20", "--quiet"])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert res["method"] == "nhl-kl" and res["request"]["concepts"] == ["shirt"] and res["request"]["forget_set_size"] == 20
    for part in ("original", "unlearned"):
        assert set(res[part]) >= {"forget_coarse", "forget_fine", "retain_coarse", "retain_fine", "zero_shot"}
        assert all(0 <= res[part][k] <= 100 for k in ("forget_coarse", "forget_fine", "retain_coarse", "retain_fine", "zero_shot"))
    assert 0 <= res["quality"] <= 100 and 0 <= res["utility"] <= 100 and 0 <= res["qu"] <= 100
    assert {"config", "seed", "git_commit", "versions"} <= set(res)
    assert res["config"]["method"]["kl_weight"] == 20.0
    assert (out / "model.safetensors").stat().st_size > 0
    assert "Q-U" in capsys.readouterr().out


def test_bench_on_tiny_model(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["bench", "--model", "tiny-clip", "--methods", "ga", "task-vector", "--epochs", "1",
                 "--max-per-concept", "10", "--out", str(out), "--quiet"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert [r["method"] for r in res["rows"]] == ["ga", "task-vector"]
    table = (out / "table.md").read_text()
    assert "| original |" in table and "| task-vector |" in table and "Q-U" in table


@pytest.mark.parametrize(
    "args, message",
    [
        (["--forget", "shrit"], "Did you mean 'shirt'"),
        (["--forget", "footwear"], "coarse concept"),
        (["--forget", "top", "--forget", "bottom", "--forget", "one-piece garment", "--forget", "footwear", "--forget", "accessory", "--goal", "coarse"], "every fine concept"),
        (["--method", "nhl"], "unknown method"),
    ],
)
def test_bad_requests_exit_with_a_message(tmp_path, capsys, args, message):
    rc = main(["unlearn", "--model", "tiny-clip", "--out", str(tmp_path), "--quiet", *args])
    assert rc == 2
    assert message in capsys.readouterr().err
