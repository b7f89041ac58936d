"""Fashion-MNIST from the Debian package ``dataset-fashion-mnist`` under the built-in fashion world."""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from ktmu.concepts import builtin_world
from ktmu.data.base import ArrayDataset, DatasetError, check_split

DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")
INSTALL_HINT = "sudo apt-get update && sudo apt-get install -y dataset-fashion-mnist"
_FILES = {"train": "train", "test": "t10k"}


def _read_idx(path: Path) -> np.ndarray:
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise DatasetError(f"cannot read {path}: {e}") from e
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if array.size != int(np.prod(shape)):
        raise DatasetError(f"{path} is truncated: header says {shape}, found {array.size} values.")
    return array.reshape(shape)


def load_fashion(split: str = "train", root: str | Path | None = None) -> ArrayDataset:
    """Load a Fashion-MNIST split (60,000 train / 10,000 test images of 28x28 grey pixels)."""
    check_split(split)
    base = Path(root or os.environ.get("KTMU_FASHION_DIR", DEFAULT_ROOT))
    images = base / f"{_FILES[split]}-images-idx3-ubyte.gz"
    labels = base / f"{_FILES[split]}-labels-idx1-ubyte.gz"
    for p in (images, labels):
        if not p.is_file():
            raise DatasetError(f"Fashion-MNIST file {p} is missing. Install it with: {INSTALL_HINT}")
    # Fine concepts in fashion.yaml are listed in Fashion-MNIST label order, so raw labels are fine indices.
    return ArrayDataset(builtin_world("fashion"), split, _read_idx(images), _read_idx(labels).astype(np.int64))
