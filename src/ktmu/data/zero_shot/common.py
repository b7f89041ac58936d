"""Pieces every zero-shot reader shares: shipped class names and templates, the one-coarse world, folder lookup."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Sequence

import yaml

from ktmu.concepts import Hierarchy
from ktmu.data import DatasetError

HERE = Path(__file__).parent
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


@functools.cache
def _shipped(file: str) -> dict[str, Any]:
    return yaml.safe_load((HERE / file).read_text(encoding="utf-8"))


def class_names(dataset: str) -> tuple[str, ...]:
    """CLIP's published class names of ``dataset`` in its label order (what the text encoder reads)."""
    return tuple(e["name"] if isinstance(e, dict) else str(e) for e in _shipped("classnames.yaml")[dataset])


def caltech_folders() -> tuple[str, ...]:
    """Caltech101's 102 category folder names, in the order of ``class_names("caltech101")``."""
    return tuple(e["folder"] for e in _shipped("classnames.yaml")["caltech101"])


def templates(dataset: str) -> tuple[str, ...]:
    """The prompt templates the study used for ``dataset``."""
    return tuple(_shipped("templates.yaml")[dataset])


@functools.cache
def zero_shot_world(dataset: str, coarse: str) -> Hierarchy:
    """A world with one coarse concept and the dataset's classes as fine concepts: only fine accuracy is measured."""
    fine = [{"name": n, "parent": coarse} for n in class_names(dataset)]
    return Hierarchy.from_dict({"name": dataset, "coarse": [{"name": coarse}], "fine": fine}, source=f"{dataset} class names")


def name_index(world: Hierarchy) -> dict[str, int]:
    """Label index by lower-cased class name, for datasets whose files are named by class (``apple_pie``)."""
    return {name.lower(): i for i, name in enumerate(world.fine_names)}


def dataset_folder(root: Path | None, dataset: str, folder: str, required: Sequence[str]) -> Path:
    """The dataset's own folder: ``root/folder`` (torchvision's layout) or ``root`` itself, whichever holds ``required``."""
    if root is None:
        raise DatasetError(f"zero-shot domain {dataset!r} is read from disk: pass --zero-shot {dataset}=DIR.")
    root = Path(root)
    for base in (root / folder, root):
        if all((base / r).exists() for r in required):
            return base
    base = root / folder if (root / folder).is_dir() else root
    missing = [r for r in required if not (base / r).exists()]
    raise DatasetError(
        f"{dataset}: {base} lacks {', '.join(missing)}. Expected torchvision's layout: DIR/{folder}/ holding "
        f"{', '.join(required)} (pass DIR or DIR/{folder})."
    )


def load_mat(path: Path, dataset: str) -> dict[str, Any]:
    """A MATLAB file read with scipy (squeezed), or a ``DatasetError`` naming it."""
    from scipy.io import loadmat  # only the .mat datasets need scipy

    try:
        return loadmat(str(path), squeeze_me=True)
    except (ValueError, OSError, TypeError) as e:
        raise DatasetError(f"{dataset}: cannot read {path} as a MATLAB .mat file: {e}") from e
