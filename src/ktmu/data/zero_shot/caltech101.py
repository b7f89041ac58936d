"""Caltech-101 as the study used it: every image of all 102 folders of ``caltech101/101_ObjectCategories``, BACKGROUND_Google kept."""
from __future__ import annotations

from pathlib import Path

from ktmu.data import DatasetError, FileDataset
from ktmu.data.domains import ZeroShotDomain
from ktmu.data.zero_shot.common import IMAGE_SUFFIXES, caltech_folders, dataset_folder, templates, zero_shot_world

NAME = "caltech101"


def load_caltech101(root: Path | None) -> FileDataset:
    """All Caltech-101 images (no split exists); class names are CLIP's ("background", "off-center face", ...)."""
    categories = dataset_folder(root, NAME, "caltech101", ("101_ObjectCategories",)) / "101_ObjectCategories"
    world = zero_shot_world(NAME, "object")
    folders = caltech_folders()
    absent = [f for f in folders if not (categories / f).is_dir()]
    if absent:
        raise DatasetError(
            f"{NAME}: {categories} lacks {len(absent)} of the 102 category folders: {', '.join(absent[:5])}"
            f"{' ...' if len(absent) > 5 else ''}. The study keeps BACKGROUND_Google (torchvision's reader drops it)."
        )
    paths, labels = [], []
    for label, folder in enumerate(folders):
        images = sorted(p for p in (categories / folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        paths.extend(images)
        labels.extend([label] * len(images))
    return FileDataset(world, "test", paths, labels)


DOMAIN = ZeroShotDomain(NAME, load_caltech101, templates(NAME))
