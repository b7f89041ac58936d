"""Shared fixtures (a tiny random open_clip backbone, a small synthetic concept world) and the Hypothesis profiles.

Hypothesis profiles: ``ci`` (loaded by default) draws the same examples on every run, so that the
suite passes or fails by the code, never by luck; ``explore`` (``make fuzz``, or
``pytest tests/test_fuzz.py --hypothesis-profile=explore``) draws new, more examples each run to
hunt for bugs. A failure there prints the example and a ``@reproduce_failure`` blob; add the
example to the test (``@example``) once fixed, so that ``ci`` keeps checking it.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from hypothesis import settings

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

# 100 examples per property keeps tests/test_fuzz.py near 6 s on one CPU core; the same 100 every run.
settings.register_profile("ci", derandomize=True, max_examples=100, deadline=None, print_blob=True, database=None)
# 2,000 fresh examples per property (KTMU_FUZZ_EXAMPLES to change): a few minutes' hunt. Found examples
# are kept in .hypothesis/ and replayed first on the next explore run.
settings.register_profile("explore", derandomize=False, max_examples=int(os.environ.get("KTMU_FUZZ_EXAMPLES", "2000")),
                          deadline=None, print_blob=True)
settings.load_profile("ci")  # pytest's --hypothesis-profile=NAME, applied after this file loads, overrides it


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
