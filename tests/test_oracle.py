"""The shipped oracle: a mini-CLIP pretrained like the default but never told the word 'shirt'."""
import json

import numpy as np
import pytest

from ktmu.backbones import BackboneError, load_backbone
from ktmu.backbones.mini_clip import WEIGHTS_DIR, sha256
from ktmu.data import ArrayDataset, load_dataset
from ktmu.evaluation.zero_shot import ZeroShotEvaluator

ORACLE = WEIGHTS_DIR / "mini_clip_without_shirt.safetensors"


def test_oracle_file_matches_its_manifest():
    manifest = json.loads(ORACLE.with_suffix(".json").read_text())
    assert manifest["sha256"] == sha256(ORACLE) and manifest["config"]["without"] == ["shirt"]
    assert "--without shirt" in manifest["command"]


def test_oracle_never_knew_shirts_but_knows_tops_and_the_rest():
    oracle = load_backbone("mini-clip:without-shirt")
    test = load_dataset("fashion", "test")
    keep = np.concatenate([np.flatnonzero(test.fine_labels == f)[:100] for f in range(10)])  # 100 images per class
    ev = ZeroShotEvaluator(ArrayDataset(test.hierarchy, "test", test.images[keep], test.fine_labels[keep]), oracle.preprocess).evaluate(oracle)
    shirt = ev.fine_labels == test.hierarchy.index("shirt")
    assert ev.subset(shirt).fine_acc <= 5  # the oracle does not call shirts shirts
    assert ev.subset(shirt).coarse_acc >= 85  # but still knows they are tops
    assert ev.subset(~shirt).fine_acc >= 85  # and knows every other concept


def test_unknown_oracle_names_the_shipped_ones():
    with pytest.raises(BackboneError, match="mini-clip:without-shirt"):
        load_backbone("mini-clip:without-coat")
