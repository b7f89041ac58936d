"""D_f / D_r bookkeeping of the evaluation protocol, checked against direct computation."""
import numpy as np
import pytest
import torch

from ktmu.evaluation.zero_shot import ZeroShotEvaluator, accuracy
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
    assert out["zero_shot"] == pytest.approx(full.fine_acc)  # the "other domain" here is the same toy set
    assert set(out["domains"]) == {"toy"} and "forget_kept_coarse" not in out


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
