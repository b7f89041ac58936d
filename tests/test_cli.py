"""End-to-end runs of the ``ktmu`` command line."""
import json
from pathlib import Path

import pytest

import ktmu
from ktmu.cli import main

MANIFEST = Path(ktmu.__file__).parent / "weights" / "mini_clip.json"
FASHION = {"t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"}


def test_eval_reproduces_the_shipped_models_recorded_numbers(tmp_path, capsys):
    """ktmu eval of the embedded model gives exactly the zero-shot numbers its pretraining manifest recorded."""
    out = tmp_path / "eval.json"
    assert main(["eval", "--json", str(out), "--quiet"]) == 0
    data = json.loads(out.read_text())
    recorded = json.loads(MANIFEST.read_text())["zero_shot"]
    assert data["model"] == "mini-clip" and set(data["domains"]) == {"fashion", "digits"}
    for domain, numbers in recorded.items():
        got = data["domains"][domain]
        assert set(got) == set(numbers) | {"per_class"}, domain  # digits has one coarse concept: no coarse_acc
        for key, value in numbers.items():
            assert got[key] == pytest.approx(value, abs=1e-4), (domain, key)
        # both test splits hold as many images of every class: fine accuracy is the mean of the per-class ones
        assert got["fine_acc"] == pytest.approx(sum(got["per_class"].values()) / len(got["per_class"]), abs=1e-3), domain
    assert set(data["domains"]["fashion"]["per_class"]) == FASHION
    assert data["domains"]["fashion"]["fine_acc"] == pytest.approx(93.07, abs=1e-3)  # the README's number
    printed = capsys.readouterr().out
    assert "93.07" in printed and "98.33" in printed and "98.80" in printed


def test_unlearn_on_tiny_model_records_numbers_that_agree(tmp_path, capsys):
    """A seeded tiny-clip run: its recorded scores follow from its own accuracies, and the saved weights reproduce them."""
    out = tmp_path / "run"
    rc = main(["unlearn", "--model", "tiny-clip", "--force", "--method", "nhl-kl", "--forget", "dress shirt", "--out", str(out),
               "--epochs", "2", "--max-per-concept", "20", "--quiet"])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert res["method"] == "nhl-kl" and res["request"]["concepts"] == ["shirt"] and res["request"]["forget_set_size"] == 20
    o, u = res["original"], res["unlearned"]
    # Fashion-MNIST's test split: 1,000 images per class; D_f is the shirts, D_r the nine other classes
    assert (u["d_f_test_images"], u["d_r_test_images"], u["n_fine"], u["n_coarse"]) == (1000, 9000, 10, 5)
    for part, scores in (("original", o), ("unlearned", u)):
        per = res["per_class_fine"][part]
        assert scores["forget_fine"] == pytest.approx(per["shirt"], abs=1e-4)
        assert scores["retain_fine"] == pytest.approx(sum(v for k, v in per.items() if k != "shirt") / 9, abs=1e-4)
        assert scores["zero_shot"] == pytest.approx(scores["zero_shot_domains"]["digits"])  # tiny-clip's one other world
    # the study's Quality, Utility and Q-U from the recorded accuracies, by hand (fine goal)
    drop = 100.0 if o["forget_fine"] <= 0 else min(100.0, max(0.0, 100 * (o["forget_fine"] - u["forget_fine"]) / o["forget_fine"]))
    kept = [100.0 if o[k] <= 0 else min(100.0, 100 * u[k] / o[k]) for k in ("forget_coarse", "retain_coarse", "retain_fine")]
    quality, utility = drop, sum(kept) / 3
    assert res["quality"] == pytest.approx(quality) and res["utility"] == pytest.approx(utility)
    assert res["qu"] == pytest.approx(2 * quality * utility / (quality + utility))
    # random tiny-clip never knew the shirt: the run is flagged and its chance-aware scores are undefined (null, not NaN)
    assert res["flags"]["original_knows_concept"] is False and res["quality_ca"] is None and res["qu_ca"] is None
    assert res["config"]["method"]["kl_weight"] == 20.0 and len(res["config"]["epochs"]) == 2 and res["config"]["selected_epoch"] in (1, 2)
    assert {"config", "seed", "git_commit", "versions", "provenance", "recipe", "weights"} <= set(res)
    assert not {"seeds", "mean", "interval"} & set(res)  # one seed: no intervals
    printed = capsys.readouterr().out
    assert "Q-U" in printed and "UNKNOWN-CONCEPT" in printed and "±" not in printed

    # the saved weights are the evaluated ones: ktmu eval of model.safetensors gives the recorded per-class accuracies
    assert res["weights"] == str(out / "model.safetensors")
    assert main(["eval", "--model", f"tiny-clip:{out / 'model.safetensors'}", "--json", str(tmp_path / "eval.json"), "--quiet"]) == 0
    again = json.loads((tmp_path / "eval.json").read_text())["domains"]
    assert again["fashion"]["per_class"] == pytest.approx(res["per_class_fine"]["unlearned"], abs=1e-4)
    assert again["digits"]["fine_acc"] == pytest.approx(u["zero_shot_domains"]["digits"], abs=1e-4)


def test_bench_on_tiny_model(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["bench", "--model", "tiny-clip", "--force", "--methods", "ga", "task-vector", "--epochs", "1",
                 "--max-per-concept", "10", "--out", str(out), "--quiet"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert [r["method"] for r in res["rows"]] == ["ga", "task-vector"]
    table = (out / "table.md").read_text()
    assert "| original |" in table and "| task-vector |" in table and "Q-U" in table
    assert res["level"] == "difficult" and res["request"]["concepts"] == ["shirt"]


def test_bench_on_a_named_request(tmp_path):
    out = tmp_path / "bench"
    assert main(["bench", "--model", "tiny-clip", "--force", "--methods", "nhl-kl", "--forget", "running shoe", "--forget", "sandal",
                 "--epochs", "1", "--max-per-concept", "10", "--out", str(out), "--quiet"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["level"] is None and res["request"]["concepts"] == ["sneaker", "sandal"]
    assert res["rows"][0]["request"]["forget_set_size"] == 20


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


def test_unlearn_on_a_users_jsonl_world(tmp_path, capsys):
    """The study's jsonl format works unchanged: hierarchy with aliases from a file, forget by alias."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    world = tmp_path / "world.yaml"
    world.write_text(
        "name: dogs\ncoarse: [terrier, retriever]\nfine:\n"
        "  - {name: border terrier, parent: terrier, aliases: [border]}\n"
        "  - {name: cairn terrier, parent: terrier}\n"
        "  - {name: golden retriever, parent: retriever, aliases: [golden]}\n"
        "  - {name: labrador retriever, parent: retriever}\n"
    )
    names = [("terrier", "border terrier"), ("terrier", "cairn terrier"), ("retriever", "golden retriever"), ("retriever", "labrador retriever")]
    for split, n in (("train", 6), ("test", 3)):
        lines = []
        for k, (coarse, fine) in enumerate(names):
            for i in range(n):
                path = tmp_path / "img" / f"{split}_{k}_{i}.png"
                path.parent.mkdir(exist_ok=True)
                Image.fromarray((rng.random((32, 32, 3)) * 255).astype("uint8")).save(path)
                lines.append(json.dumps({"img_path": f"img/{path.name}", "coarse_label": coarse, "fine_label": fine}))
        (tmp_path / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    out = tmp_path / "run"
    rc = main(["unlearn", "--model", "tiny-clip", "--force", "--world", "jsonl", "--data-root", str(tmp_path), "--hierarchy", str(world),
               "--forget", "golden", "--method", "ga", "--epochs", "1", "--out", str(out), "--quiet"])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert res["request"]["world"] == "dogs" and res["request"]["concepts"] == ["golden retriever"]
    assert res["request"]["forget_set_size"] == 6
    assert set(res["unlearned"]["zero_shot_domains"]) == {"fashion", "digits"}
