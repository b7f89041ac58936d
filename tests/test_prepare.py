"""``ktmu.study.prepare``: the study's exact image lists written for fake ImageNet / CompCars roots built on disk."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from fakes import make_compcars_root, make_imagenet_root, write_val_ground_truth

from ktmu.data import DatasetError, load_dataset
from ktmu.study.prepare import PrepareError, prepare_compcars_s, prepare_imgnetdogs, read_val_labels, study_list


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory) -> Path:
    """Every file of the study's lists, val in class folders (24,750 hard links: about half a second)."""
    return make_imagenet_root(tmp_path_factory.mktemp("imagenet"))


@pytest.fixture(scope="module")
def imagenet_flat(tmp_path_factory) -> Path:
    """The same with a flat val/ folder and Kaggle's LOC_val_solution.csv."""
    return make_imagenet_root(tmp_path_factory.mktemp("imagenet_flat"), val_layout="flat", ground_truth="csv")


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_prepare_imgnetdogs_writes_the_exact_lists_with_absolute_paths(imagenet, tmp_path):
    out = tmp_path / "dogs"
    summary = prepare_imgnetdogs(imagenet, out)
    assert summary["counts"] == {"train": 19800, "test": 4950} and summary["missing"] == 0
    assert summary["val_layout"] == "class folders"
    assert json.loads((out / "prepared.json").read_text()) == summary
    for split in ("train", "test"):
        written, listed = _lines(out / f"{split}.jsonl"), study_list("imgnetdogs", split)
        assert [Path(r["img_path"]) for r in written] == [imagenet / r["img_path"] for r in listed]
        assert [r["fine_label"] for r in written] == [r["fine_label"] for r in listed]
    assert sorted(os.listdir(out)) == ["prepared.json", "test.jsonl", "train.jsonl"]  # no temporary files left
    test = load_dataset("imgnetdogs", "test", root=out)
    image, coarse, fine = test[0]
    assert len(test) == 4950 and image.size == (8, 8)
    assert test.hierarchy.fine_names[fine] == "Chihuahua" and test.hierarchy.coarse_names[coarse] == "toy dog"


def test_prepare_imgnetdogs_flat_val_checked_against_the_csv(imagenet_flat, tmp_path):
    summary = prepare_imgnetdogs(imagenet_flat, tmp_path / "out", val_labels=imagenet_flat / "LOC_val_solution.csv")
    assert summary["val_layout"] == "flat" and any("checked against LOC_val_solution.csv" in n for n in summary["notes"])
    first = _lines(tmp_path / "out" / "test.jsonl")[0]
    assert first == {"img_path": str(imagenet_flat / "val" / "ILSVRC2012_val_00001049.JPEG"),
                     "coarse_label": "toy dog", "fine_label": "Chihuahua"}
    unchecked = prepare_imgnetdogs(imagenet_flat, tmp_path / "out2")
    assert any("not checked" in n for n in unchecked["notes"])


def test_wrong_val_label_is_refused(imagenet_flat, tmp_path):
    truth = read_val_labels(imagenet_flat / "LOC_val_solution.csv")
    truth["ILSVRC2012_val_00001049"] = "n02099601"  # a Chihuahua that the file calls a golden retriever
    gt = tmp_path / "gt"
    gt.mkdir()
    with pytest.raises(PrepareError, match=r"1 of 4950 test images disagree(.|\n)*ILSVRC2012_val_00001049"):
        prepare_imgnetdogs(imagenet_flat, tmp_path / "out", val_labels=write_val_ground_truth(gt, truth, "csv"))
    assert not (tmp_path / "out").exists()


def test_devkit_ground_truth_reads_like_the_csv(imagenet_flat, tmp_path):
    truth = read_val_labels(imagenet_flat / "LOC_val_solution.csv")
    devkit = read_val_labels(write_val_ground_truth(tmp_path, truth, "devkit"))
    assert {k: devkit[k] for k in truth} == truth


def test_missing_files_are_counted_named_and_nothing_is_written(tmp_path):
    # Only three breeds present: every other listed file is missing.
    root = make_imagenet_root(tmp_path / "partial", wnids=["n02085620", "n02085782", "n02085936"])
    out = tmp_path / "out"
    out.mkdir()
    (out / "train.jsonl").write_text("old\n")
    with pytest.raises(PrepareError) as err:
        prepare_imgnetdogs(root, out)
    message = str(err.value)
    assert "24000 of 24750 imgnetdogs images are missing; nothing was written" in message
    first_missing = next(r["img_path"] for r in study_list("imgnetdogs", "train") if "n02085620" not in r["img_path"]
                         and "n02085782" not in r["img_path"] and "n02085936" not in r["img_path"])
    assert str(root / first_missing) in message and "... and 23995 more" in message
    assert isinstance(err.value, DatasetError)
    assert sorted(os.listdir(out)) == ["train.jsonl"] and (out / "train.jsonl").read_text() == "old\n"


def test_a_root_without_the_imagenet_layout_says_what_is_expected(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(PrepareError, match=r"has no val/ folder; an ImageNet-1k \(ILSVRC2012\) root holds train/<wnid>"):
        prepare_imgnetdogs(tmp_path, tmp_path / "out")
    (tmp_path / "val" / "n99999999").mkdir(parents=True)
    with pytest.raises(PrepareError, match="neither <wnid>/ folders of the dog breeds nor ILSVRC2012_val_"):
        prepare_imgnetdogs(tmp_path, tmp_path / "out")
    with pytest.raises(PrepareError, match="does not exist"):
        prepare_imgnetdogs(tmp_path / "nowhere", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_prepare_compcars_keeps_the_test_list_and_rebuilds_train(tmp_path):
    root = make_compcars_root(tmp_path / "compcars", train_per_model=2)
    summary = prepare_compcars_s(root, tmp_path / "out")
    assert summary["counts"] == {"train": 2 * 292, "test": 8943} and summary["models_without_train_images"] == []
    assert any("not public" in n for n in summary["notes"])
    train, test = _lines(tmp_path / "out" / "train.jsonl"), _lines(tmp_path / "out" / "test.jsonl")
    assert not {r["img_path"] for r in train} & {r["img_path"] for r in test}
    assert all(Path(r["img_path"]).name.startswith("train_") for r in train)  # the extra make and seed image are ignored
    cars = load_dataset("compcars-s", "train", root=tmp_path / "out")
    assert len(cars) == 584 and cars.hierarchy.fine_names[int(cars.fine_labels[0])] == "Geely TX4"


def test_compcars_missing_test_images_and_bad_layout(tmp_path):
    root = make_compcars_root(tmp_path / "compcars", train_per_model=0)
    gone = root / study_list("compcars-s", "test")[5]["img_path"]
    gone.unlink()
    with pytest.raises(PrepareError, match="1 of 8943 compcars-s test images are missing") as err:
        prepare_compcars_s(root, tmp_path / "out")
    assert str(gone) in str(err.value) and not (tmp_path / "out").exists()
    gone.parent.joinpath(gone.name).write_bytes((root / "seed.jpg").read_bytes())
    with pytest.raises(PrepareError, match="holds only the study's test images"):
        prepare_compcars_s(root, tmp_path / "out")
    with pytest.raises(PrepareError, match=r"none of the world's 48 make folders(.|\n)*<make>/<model>/<year>/<file>.jpg"):
        prepare_compcars_s(tmp_path, tmp_path / "out")
