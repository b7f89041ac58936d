"""Dataset adapters reached through ``ktmu.data.load_dataset``."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from ktmu.concepts import Hierarchy
from ktmu.data import DatasetError, load_dataset
from ktmu.registry import RegistryError

FASHION_ROOT = Path("/usr/share/datasets/fashion-mnist")


# ---- helpers ------------------------------------------------------------------------------------


def _image(path: Path, seed: int, size=(8, 6)) -> Path:
    """Write a small random RGB image; the format follows the suffix (.png or .jpg)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def _write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


# (coarse, fine, file) per split; fine names are unique, coarse names group them.
TRAIN = [
    ("mammal", "dog", "imgs/dog0.png"),
    ("mammal", "cat", "imgs/cat0.jpg"),
    ("bird", "robin", "imgs/robin0.png"),
    ("mammal", "dog", "imgs/dog1.jpeg"),
    ("bird", "crow", "imgs/crow0.png"),
]
TEST = [
    ("bird", "crow", "imgs/crow_t.png"),
    ("mammal", "cat", "imgs/cat_t.png"),
    ("bird", "robin", "imgs/robin_t.jpg"),
]


@pytest.fixture
def jsonl_root(tmp_path: Path) -> Path:
    root = tmp_path / "zoo"
    root.mkdir()
    for split, rows in (("train", TRAIN), ("test", TEST)):
        recs = []
        for i, (c, f, rel) in enumerate(rows):
            _image(root / rel, seed=i + (100 if split == "test" else 0))
            recs.append({"img_path": rel, "coarse_label": c, "fine_label": f})
        _write_jsonl(root / f"{split}.jsonl", recs)
    return root


ZOO_WORLD = {
    "name": "zoo",
    "coarse": [
        {"name": "bird", "aliases": ["birds", "avian"]},
        {"name": "mammal", "aliases": ["mammals"]},
    ],
    "fine": [
        {"name": "robin", "parent": "bird", "aliases": ["redbreast"]},
        {"name": "crow", "parent": "bird", "aliases": ["raven"]},
        {"name": "cat", "parent": "mammal", "aliases": ["kitty"]},
        {"name": "dog", "parent": "mammal", "aliases": ["puppy", "hound"]},
    ],
}


def _check_items(ds, rows):
    """Every item is (PIL image, coarse, fine) and matches the expected names via ds.hierarchy."""
    h = ds.hierarchy
    assert len(ds) == len(rows)
    for i, (c, f, _) in enumerate(rows):
        img, ci, fi = ds[i]
        assert isinstance(img, Image.Image)
        assert img.size == (8, 6)
        assert isinstance(ci, int) and isinstance(fi, int)
        assert h.fine_names[fi] == h.find(f).name
        assert h.coarse_names[ci] == h.find(c).name
        assert h.fine_to_coarse()[fi] == ci
    assert list(ds.coarse_labels) == [h.fine_to_coarse()[f] for f in ds.fine_labels]


# ---- jsonl --------------------------------------------------------------------------------------


def test_jsonl_inferred_hierarchy(jsonl_root):
    train = load_dataset("jsonl", "train", root=jsonl_root)
    test = load_dataset("jsonl", "test", root=jsonl_root)
    h = train.hierarchy
    # Inferred from train.jsonl, names sorted.
    assert h.name == "zoo"
    assert h.coarse_names == ["bird", "mammal"]
    assert h.fine_names == ["cat", "crow", "dog", "robin"]
    assert h.fine_to_coarse() == [1, 0, 1, 0]
    assert test.hierarchy == h  # test split uses the train split's world
    _check_items(train, TRAIN)
    _check_items(test, TEST)
    assert list(train.fine_labels) == [2, 0, 3, 2, 1]
    assert list(train.coarse_labels) == [1, 1, 0, 1, 0]
    assert list(test.fine_labels) == [1, 0, 3]


def test_jsonl_images_match_files(jsonl_root):
    ds = load_dataset("jsonl", "train", root=jsonl_root)
    img, _, _ = ds[0]  # PNG: lossless, so pixels round-trip exactly
    expected = np.asarray(Image.open(jsonl_root / TRAIN[0][2]).convert("RGB"))
    assert np.array_equal(np.asarray(img), expected)
    assert img.mode == "RGB"


def test_jsonl_root_may_be_the_split_file(jsonl_root):
    ds = load_dataset("jsonl", "train", root=jsonl_root / "train.jsonl")
    _check_items(ds, TRAIN)
    assert ds.hierarchy.name == "train"


def test_jsonl_explicit_hierarchy_with_aliases(jsonl_root, tmp_path):
    world = tmp_path / "zoo.yaml"
    world.write_text(yaml.safe_dump(ZOO_WORLD))
    # Rewrite train.jsonl with labels given as aliases (in mixed case) and as integer indices.
    rows = [
        {"img_path": TRAIN[0][2], "coarse_label": "Mammals", "fine_label": "puppy"},
        {"img_path": TRAIN[1][2], "coarse_label": "mammal", "fine_label": "KITTY"},
        {"img_path": TRAIN[2][2], "coarse_label": "avian", "fine_label": "redbreast"},
        {"img_path": TRAIN[3][2], "coarse_label": 1, "fine_label": 3},
        {"img_path": TRAIN[4][2], "coarse_label": "bird", "fine_label": "raven"},
    ]
    _write_jsonl(jsonl_root / "train.jsonl", rows)
    ds = load_dataset("jsonl", "train", root=jsonl_root, hierarchy=world)
    assert ds.hierarchy == Hierarchy.load(world)
    assert ds.hierarchy.fine_names == ["robin", "crow", "cat", "dog"]
    assert list(ds.fine_labels) == [3, 2, 0, 3, 1]
    assert list(ds.coarse_labels) == [1, 1, 0, 1, 0]
    _check_items(ds, TRAIN)
    # A Hierarchy object is accepted as well as a path.
    ds2 = load_dataset("jsonl", "train", root=jsonl_root, hierarchy=Hierarchy.from_dict(ZOO_WORLD))
    assert list(ds2.fine_labels) == list(ds.fine_labels)


def test_jsonl_missing_image_names_file(jsonl_root):
    (jsonl_root / TRAIN[2][2]).unlink()
    with pytest.raises(DatasetError) as ei:
        load_dataset("jsonl", "train", root=jsonl_root)
    assert "robin0.png" in str(ei.value)
    assert "does not exist" in str(ei.value)


def test_jsonl_corrupt_image_names_file_on_load(jsonl_root):
    bad = jsonl_root / "imgs" / "x.png"
    bad.write_bytes(b"this is not a png at all \x00\x01\x02" * 4)
    recs = [json.loads(l) for l in (jsonl_root / "train.jsonl").read_text().splitlines()]
    recs.append({"img_path": "imgs/x.png", "coarse_label": "bird", "fine_label": "crow"})
    _write_jsonl(jsonl_root / "train.jsonl", recs)
    ds = load_dataset("jsonl", "train", root=jsonl_root)  # files are only opened on access
    assert len(ds) == len(TRAIN) + 1
    ds[0]  # the good ones still load
    with pytest.raises(DatasetError) as ei:
        ds[len(ds) - 1]
    assert str(bad) in str(ei.value)


def test_jsonl_record_missing_key_names_line(jsonl_root):
    path = jsonl_root / "train.jsonl"
    lines = path.read_text().splitlines()
    rec = json.loads(lines[2])
    del rec["fine_label"]
    lines[2] = json.dumps(rec)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError) as ei:
        load_dataset("jsonl", "train", root=jsonl_root)
    msg = str(ei.value)
    assert f"{path}:3" in msg
    assert "fine_label" in msg


def test_jsonl_invalid_json_names_line(jsonl_root):
    path = jsonl_root / "test.jsonl"
    path.write_text(path.read_text() + "{not json\n")
    with pytest.raises(DatasetError) as ei:
        load_dataset("jsonl", "test", root=jsonl_root)
    assert f"{path}:{len(TEST) + 1}" in str(ei.value)


@pytest.mark.parametrize("line, words", [
    ("5", ["line must be one JSON object", "got int '5'"]),          # found by the fuzz suite: a TypeError before
    ("null", ["line must be one JSON object", "got NoneType"]),
    ('["a.png", "bird", "crow"]', ["got list"]),
    ('{"img_path": null, "coarse_label": "bird", "fine_label": "crow"}', ["img_path must be a file path", "got None"]),
    ("[" * 100_000 + "]" * 100_000, ["nests too deeply"]),             # a RecursionError before
])
def test_jsonl_lines_that_are_no_record_name_the_line(jsonl_root, line, words):
    path = jsonl_root / "test.jsonl"
    path.write_text(path.read_text() + line + "\n")
    with pytest.raises(DatasetError) as ei:
        load_dataset("jsonl", "test", root=jsonl_root)
    assert f"{path}:{len(TEST) + 1}:" in str(ei.value) and all(w in str(ei.value) for w in words)


def test_jsonl_that_is_not_utf8_is_refused(jsonl_root):
    path = jsonl_root / "test.jsonl"
    path.write_bytes(path.read_bytes() + b"\xff\n")
    with pytest.raises(DatasetError, match="is not UTF-8 text"):
        load_dataset("jsonl", "test", root=jsonl_root)


def test_jsonl_fine_under_wrong_coarse_in_test(jsonl_root):
    path = jsonl_root / "test.jsonl"
    recs = [json.loads(l) for l in path.read_text().splitlines()]
    recs[1]["coarse_label"] = "bird"  # cat is a mammal
    _write_jsonl(path, recs)
    with pytest.raises(DatasetError) as ei:
        load_dataset("jsonl", "test", root=jsonl_root)
    msg = str(ei.value)
    assert f"{path}:2" in msg
    assert "'cat'" in msg and "'bird'" in msg


def test_jsonl_fine_under_two_coarse_in_train(jsonl_root):
    path = jsonl_root / "train.jsonl"
    recs = [json.loads(l) for l in path.read_text().splitlines()]
    recs[3]["coarse_label"] = "bird"  # the second dog is filed under bird
    _write_jsonl(path, recs)
    with pytest.raises(DatasetError) as ei:
        load_dataset("jsonl", "train", root=jsonl_root)
    assert "'dog'" in str(ei.value)


def test_jsonl_fine_under_wrong_coarse_explicit_hierarchy(jsonl_root):
    path = jsonl_root / "train.jsonl"
    recs = [json.loads(l) for l in path.read_text().splitlines()]
    recs[0]["coarse_label"] = "avian"  # dog under bird, by alias
    _write_jsonl(path, recs)
    with pytest.raises(DatasetError) as ei:
        load_dataset("jsonl", "train", root=jsonl_root, hierarchy=Hierarchy.from_dict(ZOO_WORLD))
    assert f"{path}:1" in str(ei.value)


def test_jsonl_unknown_label_in_test(jsonl_root):
    path = jsonl_root / "test.jsonl"
    recs = [json.loads(l) for l in path.read_text().splitlines()]
    recs[0]["fine_label"] = "crowe"
    _write_jsonl(path, recs)
    with pytest.raises(DatasetError) as ei:
        load_dataset("jsonl", "test", root=jsonl_root)
    msg = str(ei.value)
    assert f"{path}:1" in msg
    assert "Did you mean 'crow'" in msg


def test_jsonl_index_out_of_range(jsonl_root):
    path = jsonl_root / "train.jsonl"
    recs = [json.loads(l) for l in path.read_text().splitlines()]
    recs[0]["fine_label"] = 4
    _write_jsonl(path, recs)
    with pytest.raises(DatasetError) as ei:
        load_dataset("jsonl", "train", root=jsonl_root, hierarchy=Hierarchy.from_dict(ZOO_WORLD))
    assert "out of range" in str(ei.value)


def test_jsonl_missing_split_file(tmp_path):
    with pytest.raises(DatasetError) as ei:
        load_dataset("jsonl", "train", root=tmp_path)
    assert str(tmp_path / "train.jsonl") in str(ei.value)


@pytest.mark.parametrize(
    "coarse,fine",
    [
        ("bird", "mammal"),  # fine_label names a coarse concept; 'mammal' is coarse #1 -> read as fine #1 'crow'
        ("robin", "robin"),  # coarse_label names a fine concept; 'robin' is fine #0 -> read as coarse #0 'bird'
    ],
)
def test_jsonl_label_of_wrong_level_is_rejected(jsonl_root, coarse, fine):
    path = _write_jsonl(jsonl_root / "train.jsonl", [{"img_path": TRAIN[2][2], "coarse_label": coarse, "fine_label": fine}])
    with pytest.raises(DatasetError) as ei:
        load_dataset("jsonl", "train", root=jsonl_root, hierarchy=Hierarchy.from_dict(ZOO_WORLD))
    assert f"{path}:1" in str(ei.value)


def test_jsonl_integer_labels_without_hierarchy(tmp_path):
    recs = []
    for k in range(12):
        _image(tmp_path / f"{k}.png", seed=k)
        recs.append({"img_path": f"{k}.png", "coarse_label": "thing", "fine_label": k})
    _write_jsonl(tmp_path / "train.jsonl", recs)
    ds = load_dataset("jsonl", "train", root=tmp_path)
    names = [ds.hierarchy.fine_names[f] for f in ds.fine_labels]
    assert names == [str(k) for k in range(12)]


# ---- imagefolder --------------------------------------------------------------------------------

FOLDER_TRAIN = [
    ("footwear", "sandal", "a.png"),
    ("footwear", "sandal", "b.jpg"),
    ("footwear", "sneaker", "c.png"),
    ("top", "coat", "d.jpeg"),
    ("top", "shirt", "e.png"),
]
FOLDER_TEST = [
    ("footwear", "sneaker", "t1.png"),
    ("top", "coat", "t2.png"),
    ("top", "shirt", "t3.jpg"),
]


@pytest.fixture
def folder_root(tmp_path: Path) -> Path:
    root = tmp_path / "clothes"
    for split, rows in (("train", FOLDER_TRAIN), ("test", FOLDER_TEST)):
        for i, (c, f, name) in enumerate(rows):
            _image(root / split / c / f / name, seed=i)
    (root / "train" / "top" / "coat" / "notes.txt").write_text("not an image")  # ignored
    return root


def test_imagefolder_inferred_hierarchy_and_labels(folder_root):
    train = load_dataset("imagefolder", "train", root=folder_root)
    test = load_dataset("imagefolder", "test", root=folder_root)
    h = train.hierarchy
    assert h.name == "clothes"
    assert h.coarse_names == ["footwear", "top"]
    assert h.fine_names == ["coat", "sandal", "shirt", "sneaker"]
    assert h.fine_to_coarse() == [1, 0, 1, 0]
    assert test.hierarchy == h
    # Items come in sorted folder/file order, which FOLDER_TRAIN/FOLDER_TEST already follow.
    _check_items(train, FOLDER_TRAIN)
    _check_items(test, FOLDER_TEST)
    assert [p.name for p in train.paths] == [r[2] for r in FOLDER_TRAIN]
    assert list(train.fine_labels) == [1, 1, 3, 0, 2]
    assert list(test.coarse_labels) == [0, 1, 1]


def test_imagefolder_explicit_hierarchy(folder_root, tmp_path):
    world = tmp_path / "w.json"
    world.write_text(json.dumps({
        "name": "w",
        "coarse": ["top", "footwear"],
        "fine": [
            {"name": "shirt", "parent": "top"},
            {"name": "coat", "parent": "top"},
            {"name": "sneaker", "parent": "footwear"},
            {"name": "sandal", "parent": "footwear"},
        ],
    }))
    ds = load_dataset("imagefolder", "train", root=folder_root, hierarchy=world)
    assert ds.hierarchy.fine_names == ["shirt", "coat", "sneaker", "sandal"]
    assert list(ds.fine_labels) == [3, 3, 2, 1, 0]
    assert list(ds.coarse_labels) == [1, 1, 1, 0, 0]


def test_imagefolder_corrupt_file_names_it(folder_root):
    bad = folder_root / "test" / "top" / "coat" / "x.png"
    bad.write_bytes(b"\x89PNG garbage garbage garbage")
    ds = load_dataset("imagefolder", "test", root=folder_root)
    idx = [p.name for p in ds.paths].index("x.png")
    with pytest.raises(DatasetError) as ei:
        ds[idx]
    assert str(bad) in str(ei.value)


def test_imagefolder_missing_split_folder(folder_root):
    import shutil

    shutil.rmtree(folder_root / "test")
    with pytest.raises(DatasetError) as ei:
        load_dataset("imagefolder", "test", root=folder_root)
    assert str(folder_root / "test") in str(ei.value)
    assert "does not exist" in str(ei.value)


def test_imagefolder_empty_split(folder_root, tmp_path):
    (tmp_path / "empty" / "train" / "top" / "coat").mkdir(parents=True)
    with pytest.raises(DatasetError) as ei:
        load_dataset("imagefolder", "train", root=tmp_path / "empty")
    assert "no .jpg/.jpeg/.png images" in str(ei.value)


def test_imagefolder_fine_under_two_coarse(folder_root):
    _image(folder_root / "train" / "footwear" / "coat" / "z.png", seed=9)
    with pytest.raises(DatasetError) as ei:
        load_dataset("imagefolder", "train", root=folder_root)
    assert "'coat'" in str(ei.value)


def test_imagefolder_wrong_parent_in_test(folder_root):
    _image(folder_root / "test" / "footwear" / "coat" / "z.png", seed=9)
    with pytest.raises(DatasetError) as ei:
        load_dataset("imagefolder", "test", root=folder_root)
    assert "z.png" in str(ei.value)
    assert "footwear/coat" in str(ei.value)


def test_imagefolder_unknown_fine_folder_in_test(folder_root):
    bad = _image(folder_root / "test" / "top" / "scarf" / "z.png", seed=9)
    with pytest.raises(DatasetError) as ei:
        load_dataset("imagefolder", "test", root=folder_root)
    assert str(bad.parent) in str(ei.value) or "top/scarf" in str(ei.value)


# ---- fashion ------------------------------------------------------------------------------------

needs_fashion = pytest.mark.skipif(
    not (FASHION_ROOT / "train-images-idx3-ubyte.gz").is_file(), reason="dataset-fashion-mnist not installed"
)


@pytest.fixture(scope="module")
def fashion():
    return {split: load_dataset("fashion", split) for split in ("train", "test")}


@needs_fashion
def test_fashion_sizes_and_images(fashion):
    assert len(fashion["train"]) == 60000
    assert len(fashion["test"]) == 10000
    for split in ("train", "test"):
        ds = fashion[split]
        for i in (0, len(ds) - 1):
            img, c, f = ds[i]
            assert isinstance(img, Image.Image)
            assert img.size == (28, 28)
            assert img.mode == "L"
            assert 0 <= f < 10 and 0 <= c < 5


@needs_fashion
def test_fashion_labels(fashion):
    for split in ("train", "test"):
        ds = fashion[split]
        h = ds.hierarchy
        assert h.name == "fashion"
        assert set(np.unique(ds.fine_labels)) == set(range(10))
        assert set(np.unique(ds.coarse_labels)) == set(range(5))
        assert np.array_equal(ds.coarse_labels, np.asarray(h.fine_to_coarse())[ds.fine_labels])
        counts = np.bincount(ds.fine_labels, minlength=10)
        assert (counts == len(ds) // 10).all()  # Fashion-MNIST is balanced
        # Spot-check items against the label arrays.
        for i in (0, 1, 12345 % len(ds)):
            _, c, f = ds[i]
            assert f == ds.fine_labels[i]
            assert c == h.fine_to_coarse()[f]
            assert h.find(h.fine_names[f]).parent == h.coarse_names[c]


@needs_fashion
def test_fashion_first_train_label_is_ankle_boot(fashion):
    # The first Fashion-MNIST training image is famously an ankle boot (label 9).
    ds = fashion["train"]
    assert ds.hierarchy.fine_names[int(ds.fine_labels[0])] == "ankle boot"
    assert ds.hierarchy.coarse_names[ds[0][1]] == "footwear"


def test_fashion_missing_root_hint(tmp_path):
    with pytest.raises(DatasetError) as ei:
        load_dataset("fashion", "train", root=tmp_path)
    msg = str(ei.value)
    assert "apt-get install -y dataset-fashion-mnist" in msg
    assert str(tmp_path) in msg


# ---- digits -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits():
    return {split: load_dataset("digits", split) for split in ("train", "test")}


def test_digits_sizes(digits):
    assert len(digits["train"]) == 4000
    assert len(digits["test"]) == 1000
    assert (np.bincount(digits["test"].fine_labels, minlength=10) == 100).all()
    img, c, f = digits["test"][0]
    assert isinstance(img, Image.Image) and img.size == (28, 28) and img.mode == "L"
    assert c == 0 and 0 <= f < 10
    assert digits["test"].hierarchy.name == "digits"
    assert set(np.unique(digits["train"].coarse_labels)) == {0}


def test_digits_train_test_disjoint(digits):
    def hashes(ds):
        return {hashlib.sha1(np.ascontiguousarray(x).tobytes()).hexdigest() for x in ds.images}

    train, test = hashes(digits["train"]), hashes(digits["test"])
    assert len(train) == 4000 and len(test) == 1000
    assert not train & test


def test_digits_deterministic(digits):
    for split in ("train", "test"):
        again = load_dataset("digits", split)
        assert np.array_equal(again.images, digits[split].images)
        assert np.array_equal(again.fine_labels, digits[split].fine_labels)


# ---- registry and splits ------------------------------------------------------------------------


def test_unknown_dataset_did_you_mean():
    with pytest.raises(RegistryError) as ei:
        load_dataset("fashon", "train")
    assert "Did you mean 'fashion'" in str(ei.value)


@pytest.mark.parametrize("name,kw", [("digits", {}), ("fashion", {}), ("jsonl", {"root": "."}), ("imagefolder", {"root": "."})])
def test_unknown_split(name, kw):
    with pytest.raises(DatasetError) as ei:
        load_dataset(name, "validation", **kw)
    assert "unknown split 'validation'" in str(ei.value)
