"""Stanford Cars' test split (8,041 images of 196 models) read from torchvision's ``stanford_cars`` layout."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ktmu.data import DatasetError, FileDataset
from ktmu.data.domains import ZeroShotDomain
from ktmu.data.zero_shot.common import dataset_folder, load_mat, templates, zero_shot_world

NAME = "stanford_cars"
ANNOTATIONS = "cars_test_annos_withlabels.mat"  # torchvision keeps it beside cars_test/, not in devkit/


def load_stanford_cars(root: Path | None) -> FileDataset:
    """Stanford Cars' test split; class k of the annotations is CLIP's k-th name (the devkit's cars_meta.mat order)."""
    base = dataset_folder(root, NAME, "stanford_cars", ("cars_test", ANNOTATIONS))
    world = zero_shot_world(NAME, "car")
    try:
        annotations = np.atleast_1d(load_mat(base / ANNOTATIONS, NAME)["annotations"])
        items = [(str(a["fname"]), int(a["class"])) for a in annotations]
    except (KeyError, ValueError, IndexError) as e:
        raise DatasetError(f"{NAME}: {base / ANNOTATIONS} lacks per-image 'fname' and 'class' annotations ({e}).") from e
    bad = [c for _, c in items if not 1 <= c <= len(world.fine)]
    if bad:
        raise DatasetError(f"{NAME}: {base / ANNOTATIONS} has classes outside 1..{len(world.fine)} (e.g. {bad[0]}).")
    paths = [base / "cars_test" / fname for fname, _ in items]
    return FileDataset(world, "test", paths, [c - 1 for _, c in items])


DOMAIN = ZeroShotDomain(NAME, load_stanford_cars, templates(NAME))
