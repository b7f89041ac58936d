"""CIFAR-100's test split (10,000 32x32 images of 100 classes) read from the pickled ``cifar-100-python/test`` batch."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from ktmu.data import ArrayDataset, DatasetError
from ktmu.data.domains import ZeroShotDomain
from ktmu.data.zero_shot.common import dataset_folder, templates, zero_shot_world

NAME = "cifar100"


def _entry(batch: dict, key: str, path: Path):
    # The batch was pickled by Python 2: read with latin1 its keys are str, read otherwise they may be bytes.
    for k in (key, key.encode()):
        if k in batch:
            return batch[k]
    raise DatasetError(f"{NAME}: {path} has no {key!r} entry; use the 'CIFAR-100 python version' archive's test file.")


def load_cifar100(root: Path | None) -> ArrayDataset:
    """CIFAR-100's test split held in memory (30 MB); fine label k is CLIP's k-th name. The file is a pickle: open only trusted copies."""
    base = dataset_folder(root, NAME, "cifar-100-python", ("test",))
    path = base / "test"
    if not path.is_file():
        raise DatasetError(f"{NAME}: {path} is not a file; expected the pickled test batch of the python version.")
    try:
        with path.open("rb") as f:
            batch = pickle.load(f, encoding="latin1")
    except (pickle.UnpicklingError, EOFError, ValueError) as e:
        raise DatasetError(f"{NAME}: cannot unpickle {path}: {e}") from e
    if not isinstance(batch, dict):
        raise DatasetError(f"{NAME}: {path} does not hold a CIFAR batch (a dict with data and fine_labels).")
    data = np.asarray(_entry(batch, "data", path), dtype=np.uint8)
    labels = np.asarray(_entry(batch, "fine_labels", path), dtype=np.int64)
    world = zero_shot_world(NAME, "object")
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise DatasetError(f"{NAME}: {path} holds data of shape {data.shape} for {len(labels)} labels; expected (N, 3072).")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(world.fine)):
        raise DatasetError(f"{NAME}: {path} has fine labels outside 0..{len(world.fine) - 1}.")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # channel planes -> HWC, as PIL wants
    return ArrayDataset(world, "test", np.ascontiguousarray(images), labels)


DOMAIN = ZeroShotDomain(NAME, load_cifar100, templates(NAME))
