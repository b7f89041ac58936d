"""D_f / D_r bookkeeping of the evaluation protocol, checked against direct computation, and the zero-shot numbers by hand."""
import numpy as np
import pytest
import torch

from ktmu.concepts import Hierarchy
from ktmu.data import ArrayDataset
from ktmu.evaluation.zero_shot import WorldEval, ZeroShotEvaluator, accuracy, expected_calibration_error
from ktmu.evaluation.protocol import UnlearningEvaluator
from ktmu.engine.request import UnlearningRequest


def test_fine_request_splits_d_f_and_d_r(tiny_backbone, toy_world, toy_train):
    req = UnlearningRequest.parse(toy_world, ["shirt"])
    ev = UnlearningEvaluator(req, toy_train, [toy_train], tiny_backbone.preprocess)
    out = ev.evaluate(tiny_backbone)
    full = ZeroShotEvaluator(toy_train, tiny_backbone.preprocess).evaluate(tiny_backbone)
    d_f = torch.as_tensor(toy_train.fine_labels == 0)
    assert out["forget_fine"] == pytest.approx(accuracy(full.fine_pred[d_f], full.fine_labels[d_f]))
    assert out["retain_fine"] == pytest.approx(accuracy(full.fine_pred[~d_f], full.fine_labels[~d_f]))
    assert out["retain_coarse"] == pytest.approx(accuracy(full.coarse_pred[~d_f], full.coarse_labels[~d_f]))
    assert "forget_kept_coarse" not in out


def test_hybrid_request_scores_coarse_only_where_forgotten(tiny_backbone, toy_world, toy_train):
    req = UnlearningRequest.parse(toy_world, ["shirt", "footwear"], "hybrid")
    out = UnlearningEvaluator(req, toy_train, [], tiny_backbone.preprocess).evaluate(tiny_backbone)
    full = ZeroShotEvaluator(toy_train, tiny_backbone.preprocess).evaluate(tiny_backbone)
    shoes = torch.as_tensor(np.isin(toy_train.fine_labels, [2, 3]))
    shirts = torch.as_tensor(toy_train.fine_labels == 0)
    assert out["forget_coarse"] == pytest.approx(accuracy(full.coarse_pred[shoes], full.coarse_labels[shoes]))
    assert out["forget_kept_coarse"] == pytest.approx(accuracy(full.coarse_pred[shirts], full.coarse_labels[shirts]))
    d_f = shoes | shirts
    assert out["forget_fine"] == pytest.approx(accuracy(full.fine_pred[d_f], full.fine_labels[d_f]))


def test_zero_shot_is_the_mean_over_the_other_domains_of_their_fine_accuracy(tiny_backbone, toy_world, toy_train):
    pets = Hierarchy.from_dict({"name": "pets", "coarse": [{"name": "animal"}],
                                "fine": [{"name": "cat", "parent": "animal"}, {"name": "dog", "parent": "animal"}, {"name": "fish", "parent": "animal"}]})
    rng = np.random.default_rng(1)
    other = ArrayDataset(pets, "test", (rng.random((12, 28, 28)) * 255).astype(np.uint8), np.array([0] * 3 + [1] * 3 + [2] * 6))
    req = UnlearningRequest.parse(toy_world, ["shirt"])
    out = UnlearningEvaluator(req, toy_train, [toy_train, other], tiny_backbone.preprocess).evaluate(tiny_backbone)
    each = {d.hierarchy.name: ZeroShotEvaluator(d, tiny_backbone.preprocess).evaluate(tiny_backbone).fine_acc for d in (toy_train, other)}
    assert each["toy"] != each["pets"]  # so that the mean is neither one
    assert out["zero_shot_domains"] == pytest.approx(each)
    assert out["zero_shot"] == pytest.approx((each["toy"] + each["pets"]) / 2)
    assert set(out["domains"]) == {"toy", "pets"} and "coarse_acc" not in out["domains"]["pets"]  # one coarse concept: no coarse score


def test_expected_calibration_error_by_hand():
    # Top-1 confidences 0.95, 0.95, 0.85 and 0.75 fall in three of the 15 equal-width bins: (14/15, 1], (12/15, 13/15], (11/15, 12/15].
    # (14/15, 1]: two images, one right: |0.5 - 0.95| = 0.45, weight 2/4 -> 0.225
    # (12/15, 13/15]: one image, right: |1 - 0.85| = 0.15, weight 1/4 -> 0.0375
    # (11/15, 12/15]: one image, wrong: |0 - 0.75| = 0.75, weight 1/4 -> 0.1875
    probs = torch.tensor([[0.95, 0.05], [0.05, 0.95], [0.85, 0.15], [0.25, 0.75]])
    labels = torch.tensor([0, 0, 0, 0])
    assert expected_calibration_error(probs, labels) == pytest.approx(0.45)
    assert expected_calibration_error(torch.eye(3), torch.arange(3)) == 0.0  # sure and right: calibrated
    assert expected_calibration_error(torch.eye(3), torch.tensor([1, 2, 0])) == pytest.approx(1.0)  # sure and wrong
    # the zero-shot summary reports the ECE of the fine probabilities
    pred = probs.argmax(1)
    ev = WorldEval(pred, torch.zeros(4, dtype=torch.long), labels, torch.zeros(4, dtype=torch.long), probs, ["a", "b"])
    assert ev.summary()["ece"] == pytest.approx(0.45) and ev.summary()["fine_acc"] == 50.0
