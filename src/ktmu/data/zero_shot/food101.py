"""Food-101's test split (25,250 images of 101 dishes) read from ``food-101/images`` and ``food-101/meta/test.json|txt``."""
from __future__ import annotations

import json
from pathlib import Path

from ktmu.data import DatasetError, FileDataset
from ktmu.data.domains import ZeroShotDomain
from ktmu.data.zero_shot.common import dataset_folder, name_index, templates, zero_shot_world

NAME = "food101"


def _test_ids(meta: Path) -> list[str]:
    """Image ids ``<class>/<number>`` of the test split, from test.json (torchvision reads it) or test.txt."""
    if (meta / "test.json").is_file():
        try:
            by_class = json.loads((meta / "test.json").read_text())
        except json.JSONDecodeError as e:
            raise DatasetError(f"{NAME}: {meta / 'test.json'} is not valid JSON ({e.msg}).") from e
        return [image_id for ids in by_class.values() for image_id in ids]
    if (meta / "test.txt").is_file():
        return [line.strip() for line in (meta / "test.txt").read_text().splitlines() if line.strip()]
    raise DatasetError(f"{NAME}: {meta} has neither test.json nor test.txt (the list of test images).")


def load_food101(root: Path | None) -> FileDataset:
    """Food-101's test split; class names are CLIP's (the folder name with spaces: ``apple_pie`` -> "apple pie")."""
    base = dataset_folder(root, NAME, "food-101", ("images", "meta"))
    world = zero_shot_world(NAME, "food")
    index = name_index(world)
    paths, labels = [], []
    for image_id in _test_ids(base / "meta"):
        folder = image_id.split("/")[0]
        label = index.get(folder.replace("_", " ").lower())
        if label is None:
            raise DatasetError(f"{NAME}: test image {image_id!r} is in class {folder!r}, which is not one of Food-101's 101 classes.")
        paths.append(base / "images" / f"{image_id}.jpg")
        labels.append(label)
    return FileDataset(world, "test", paths, labels)


DOMAIN = ZeroShotDomain(NAME, load_food101, templates(NAME))
