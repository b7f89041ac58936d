"""The study's zero-shot suite: each registered domain read from a tiny fake copy of torchvision's layout."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import yaml
from fakes import (
    make_caltech101,
    make_cifar100,
    make_flowers102,
    make_food101,
    make_oxford_pet,
    make_stanford_cars,
)
from PIL import Image

from ktmu.data import DatasetError
from ktmu.data.domains import DOMAINS, parse_zero_shot
from ktmu.data.zero_shot import SUITE

TEMPLATES = yaml.safe_load((Path(__file__).parents[1] / "src" / "ktmu" / "data" / "zero_shot" / "templates.yaml").read_text())

# name -> (fake maker, folder inside root, class count, expected (class name per item) in order)
CASES = {
    "food101": (make_food101, "food-101", 101,
                ["apple pie", "apple pie", "baby back ribs", "baby back ribs", "baklava", "baklava"]),
    "flowers102": (make_flowers102, "flowers-102", 102, ["english marigold", "blackberry lily", "pink primrose"]),
    "oxford_pet": (make_oxford_pet, "oxford-iiit-pet", 37,
                   ["Abyssinian", "Egyptian Mau", "american pit bull terrier", "yorkshire terrier"]),
    "cifar100": (make_cifar100, "cifar-100-python", 100, ["apple", "worm", "leopard", "beetle", "apple"]),
    "stanford_cars": (make_stanford_cars, "stanford_cars", 196,
                      ["AM General Hummer SUV 2000", "smart fortwo Convertible 2012", "Audi TTS Coupe 2012",
                       "AM General Hummer SUV 2000"]),
}


def test_the_study_suites_are_registered():
    # study.yaml's zero_shot lists for imgnetdogs and compcars-s
    study = {"stanford_cars", "food101", "flowers102", "caltech101", "cifar100", "oxford_pet"}
    assert set(SUITE) == study and study <= set(DOMAINS.names())
    assert all(DOMAINS.get(n).needs_root for n in SUITE)


@pytest.mark.parametrize("name", sorted(CASES))
def test_reader_on_a_fake_copy(name, tmp_path):
    make, folder, n_classes, expected = CASES[name]
    root = make(tmp_path)
    domain = DOMAINS.get(name)
    assert domain.templates == tuple(TEMPLATES[name])
    for given in (root, root / folder):  # the folder holding the dataset, or the dataset's folder itself
        ds = domain.open(given)
        h = ds.hierarchy
        assert (h.name, len(h.coarse), len(h.fine), ds.split) == (name, 1, n_classes, "test")
        assert [h.fine_names[int(i)] for i in ds.fine_labels] == expected
        image, coarse, fine = ds[len(ds) - 1]
        assert isinstance(image, Image.Image) and image.mode == "RGB" and coarse == 0
        assert h.fine_names[fine] == expected[-1]


def test_caltech101_keeps_every_folder_and_background(tmp_path):
    ds = DOMAINS.get("caltech101").open(make_caltech101(tmp_path, per_class=2))
    assert len(ds.hierarchy.fine) == 102 and len(ds) == 204
    assert ds.hierarchy.fine_names[:3] == ["background", "off-center face", "centered face"]
    assert ds.fine_labels.tolist() == np.repeat(np.arange(102), 2).tolist()
    assert DOMAINS.get("caltech101").templates == ("a photo of a {}.",)


def test_caltech101_without_background_is_refused(tmp_path):
    with pytest.raises(DatasetError, match="lacks 1 of the 102 category folders: BACKGROUND_Google"):
        DOMAINS.get("caltech101").open(make_caltech101(tmp_path, skip=["BACKGROUND_Google"]))


def test_cifar100_images_are_the_pickled_pixels(tmp_path):
    ds = DOMAINS.get("cifar100").open(make_cifar100(tmp_path))
    with (tmp_path / "cifar-100-python" / "test").open("rb") as f:
        row = pickle.load(f)["data"][1]
    assert np.array_equal(np.asarray(ds.load_image(1)), row.reshape(3, 32, 32).transpose(1, 2, 0))


@pytest.mark.parametrize(("name", "missing"), [
    ("food101", "food-101/ holding images, meta"),
    ("flowers102", "flowers-102/ holding jpg, imagelabels.mat, setid.mat"),
    ("caltech101", "caltech101/ holding 101_ObjectCategories"),
    ("oxford_pet", "oxford-iiit-pet/ holding images, annotations/test.txt"),
    ("cifar100", "cifar-100-python/ holding test"),
    ("stanford_cars", "stanford_cars/ holding cars_test, cars_test_annos_withlabels.mat"),
])
def test_a_folder_without_the_layout_names_what_is_missing(name, missing, tmp_path):
    with pytest.raises(DatasetError, match=f"{name}: .* lacks .*DIR/{missing}"):
        DOMAINS.get(name).open(tmp_path)


def test_a_listed_image_that_is_gone_is_named(tmp_path):
    make_food101(tmp_path)
    (tmp_path / "food-101" / "images" / "baklava" / "101.jpg").unlink()
    with pytest.raises(DatasetError, match="baklava/101.jpg does not exist"):
        DOMAINS.get("food101").open(tmp_path)


def test_parse_zero_shot_accepts_the_suite(tmp_path):
    make_food101(tmp_path)
    choices, note = parse_zero_shot([f"food101={tmp_path}"], "open_clip:ViT-B-32", "imgnetdogs")
    assert note is None and choices[0].domain.name == "food101" and choices[0].root == tmp_path
