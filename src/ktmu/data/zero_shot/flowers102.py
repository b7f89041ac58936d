"""Oxford Flowers-102's test split (6,149 images of 102 flowers) read from ``flowers-102/jpg`` and its two .mat files."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ktmu.data import DatasetError, FileDataset
from ktmu.data.domains import ZeroShotDomain
from ktmu.data.zero_shot.common import dataset_folder, load_mat, templates, zero_shot_world

NAME = "flowers102"


def load_flowers102(root: Path | None) -> FileDataset:
    """Flowers-102's test split (``setid.mat`` ``tstid``); label k of ``imagelabels.mat`` is CLIP's k-th flower name."""
    base = dataset_folder(root, NAME, "flowers-102", ("jpg", "imagelabels.mat", "setid.mat"))
    world = zero_shot_world(NAME, "flower")
    try:
        test_ids = np.atleast_1d(load_mat(base / "setid.mat", NAME)["tstid"]).astype(int)
        all_labels = np.atleast_1d(load_mat(base / "imagelabels.mat", NAME)["labels"]).astype(int)
    except KeyError as e:
        raise DatasetError(f"{NAME}: {base} has setid.mat/imagelabels.mat without the {e} entry; use the files from the official release.") from e
    if test_ids.min() < 1 or test_ids.max() > len(all_labels):
        raise DatasetError(f"{NAME}: setid.mat names images outside 1..{len(all_labels)}, the images imagelabels.mat labels.")
    labels = all_labels[test_ids - 1] - 1  # both files count from 1
    if labels.min() < 0 or labels.max() >= len(world.fine):
        raise DatasetError(f"{NAME}: imagelabels.mat has labels outside 1..{len(world.fine)}.")
    paths = [base / "jpg" / f"image_{i:05d}.jpg" for i in test_ids]
    return FileDataset(world, "test", paths, labels)


DOMAIN = ZeroShotDomain(NAME, load_flowers102, templates(NAME))
