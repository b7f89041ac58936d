"""Shared fixtures: a tiny random open_clip backbone and a small synthetic concept world."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ktmu.concepts import Hierarchy
from ktmu.data import ArrayDataset

TOY_WORLD = {
    "name": "toy",
    "coarse": [{"name": "top", "aliases": ["upper garment"]}, {"name": "footwear", "aliases": ["shoe"]}],
    "fine": [
        {"name": "shirt", "parent": "top", "aliases": ["blouse"]},
        {"name": "coat", "parent": "top"},
        {"name": "sneaker", "parent": "footwear", "aliases": ["trainer"]},
        {"name": "sandal", "parent": "footwear"},
    ],
    "levels": {"difficult": ["shirt"]},
}


@pytest.fixture(scope="session")
def toy_world() -> Hierarchy:
    return Hierarchy.from_dict(TOY_WORLD)


@pytest.fixture(scope="session")
def toy_train(toy_world) -> ArrayDataset:
    """40 grey 28x28 images, 10 per fine concept, each concept a different brightness pattern."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 10)
    images = (rng.random((40, 28, 28)) * 60 + labels[:, None, None] * 50).astype(np.uint8)
    return ArrayDataset(toy_world, "train", images, labels)


@pytest.fixture()
def tiny_backbone():
    from ktmu.backbones import load_backbone

    torch.manual_seed(0)
    return load_backbone("tiny-clip")
