"""The audit's knowledge probes on hand-built inputs whose answers are known: erasure, KS, steps to half, the curve's points,
the MLP and kNN probes, the soft-prompt attack, the weight distance and the loss barrier."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_audit_probes import FORGOTTEN, _clusters

from ktmu.audit import HalfWay, erasure, fit_mlp_probe, knn_probe, ks_test, margins, steps_to_half
from ktmu.audit.erasure import erasure_replicates
from ktmu.audit.feature_probes import knn_predict
from ktmu.audit.relearn import curve_points
from ktmu.audit.soft_prompt import SoftPromptConfig, soft_prompt_attack, soft_prompt_run, zero_shot_hits
from ktmu.audit.weights import line_points, loss_barrier, relative_distance

# ---- erasure ------------------------------------------------------------------------------------


def test_erasure_on_hand_computed_numbers():
    assert erasure(70, 75, 55).value == pytest.approx(0.25)  # 1 - (70 - 55) / (75 - 55)
    assert erasure(55, 75, 55).value == 1.0 and erasure(75, 75, 55).value == 0.0
    assert erasure(40, 75, 55).value == 1.0 and erasure(90, 75, 55).value == 0.0  # clipped at both ends
    assert erasure(20, 0, 40).value == pytest.approx(0.5)  # a reading the oracle is higher at: the same rule, sign and all
    none = erasure(70, 75, None)
    assert math.isnan(none.value) and "--oracle" in none.reason
    same = erasure(70, 75, 74.5)
    assert math.isnan(same.value) and "0.50 points apart" in same.reason
    assert "unlearned" in erasure(math.nan, 75, 55).reason


def test_erasure_replicates_match_the_scalar_rule_and_are_nan_without_a_gap():
    u, g, o = np.array([70.0, 55.0, 90.0, 70.0]), np.array([75.0, 75.0, 75.0, 75.0]), np.array([55.0, 55.0, 55.0, 74.5])
    got = erasure_replicates(u, g, o)
    assert got[:3].tolist() == [pytest.approx(0.25), 1.0, 0.0] and math.isnan(got[3])


# ---- indistinguishability ---------------------------------------------------------------------------


def test_margins_and_ks_statistic_on_hand_computed_numbers():
    logits = np.array([[2.0, 1.0, 0.5], [0.0, 3.0, 1.0], [1.0, 1.0, 0.0]])
    assert margins(logits, [0, 0, 1]).tolist() == [1.0, -3.0, 0.0]
    ks = ks_test([1, 2, 3], [4, 5, 6])
    assert ks.statistic == 1.0 and ks.p_value == pytest.approx(0.1)  # exact: 2 / C(6, 3)
    assert ks_test([1, 2, 3], [1, 2, 3]).statistic == 0.0 and ks_test([1, 2, 3], [1, 2, 3]).p_value == 1.0
    half = ks_test([1, 2, 3, 4], [3, 4, 5, 6])  # the CDFs differ by at most 2 of 4 (at 2: 2/4 against 0)
    assert half.statistic == 0.5 and half.n == half.n_oracle == 4
    with pytest.raises(ValueError, match="labels"):
        margins(logits, [0, 3, 1])
    with pytest.raises(ValueError, match="non-empty"):
        ks_test([], [1.0])


# ---- relearning curve -------------------------------------------------------------------------------


def test_steps_to_half_and_the_curve_points():
    assert steps_to_half((0, 10, 25, 50), (3, 20, 41, 60), 80) == HalfWay(25, True)  # 41 >= 80 / 2
    assert steps_to_half((0, 10, 25, 50), (3, 5, 8, 12), 80) == HalfWay(50, False)  # never: capped at the budget
    assert steps_to_half((0, 10), (50, 60), 80).step == 0  # already there: the original itself
    with pytest.raises(ValueError, match="one accuracy per measured step"):
        steps_to_half((0, 10), (1,), 80)
    assert curve_points(200) == (0, 10, 25, 50, 100, 200)
    assert curve_points(50) == (0, 10, 25, 50) and curve_points(75) == (0, 10, 25, 50, 75)
    assert curve_points(400) == (0, 10, 25, 50, 100, 200, 400)
    assert curve_points(5) == (0, 1, 2, 5) and curve_points(1) == (0, 1)


# ---- MLP and kNN probes ------------------------------------------------------------------------------

def test_knn_on_the_hand_worked_case():
    train = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    labels = np.array([0, 1, 1])
    assert knn_predict(train, labels, np.array([[0.9, 0.1]]), k=1, num_classes=2).tolist() == [0]  # nearest: (1, 0)
    assert knn_predict(train, labels, np.array([[0.9, 0.1]]), k=3, num_classes=2).tolist() == [1]  # two votes for class 1
    # a tie in votes (k = 2: one each) goes to the more similar neighbour's class
    assert knn_predict(train, labels, np.array([[0.9, 0.1]]), k=2, num_classes=2).tolist() == [0]
    assert knn_predict(train, labels, np.array([[0.1, 0.9]]), k=2, num_classes=2).tolist() == [1]


@pytest.mark.parametrize("probe", [fit_mlp_probe, knn_probe], ids=["mlp", "knn"])
def test_feature_probes_find_intact_features_and_not_collapsed_ones(probe):
    x_train, y_train = _clusters(60, seed=0)
    x_test, y_test = _clusters(30, seed=1)
    intact = probe(x_train, y_train, x_test, y_test, [FORGOTTEN], per_class=50, seed=0)
    assert intact.forgotten_recall >= 95 and intact.kept_accuracy >= 95 and intact.train_size == 200
    xc_train, yc_train = _clusters(60, seed=0, collapse=True)
    xc_test, yc_test = _clusters(30, seed=1, collapse=True)
    collapsed = probe(xc_train, yc_train, xc_test, yc_test, [FORGOTTEN], per_class=50, seed=0)
    assert collapsed.forgotten_recall < 75 and collapsed.recall[0] >= 95 and collapsed.recall[3] >= 95
    again = probe(xc_train, yc_train, xc_test, yc_test, [FORGOTTEN], per_class=50, seed=0)
    assert np.array_equal(again.predictions, collapsed.predictions)  # deterministic given the seed


# ---- the soft-prompt attack ----------------------------------------------------------------------------


def _one_hot_world(n_per_class=6, collapse=False):
    """Image features: class k's unit vector (the forgotten class 2 on class 1's with ``collapse``); text: each class's own axis."""
    labels = np.repeat(np.arange(4), n_per_class)
    feats = np.eye(4)[labels]
    if collapse:
        feats[labels == FORGOTTEN] = np.eye(4)[1]
    return feats.astype(np.float32), labels


def test_soft_prompt_recovers_a_concept_whose_name_was_moved_away():
    feats, labels = _one_hot_world()
    text = np.eye(4, dtype=np.float32)
    text[FORGOTTEN] = -text[FORGOTTEN]  # the "unlearned" name points away from its images
    before = zero_shot_hits(feats, labels, text)[labels == FORGOTTEN].mean()
    res = soft_prompt_attack(feats, labels, text, [FORGOTTEN], scale=10.0, cfg=SoftPromptConfig(steps=200, lr=0.05))
    after = zero_shot_hits(feats, labels, res.text)
    assert before == 0 and after[labels == FORGOTTEN].mean() == 1.0 and after.mean() == 1.0
    assert res.loss[1] < res.loss[0] and res.train_accuracy == (75.0, 100.0)
    assert torch.allclose(res.text[[0, 1, 3]], torch.eye(4)[[0, 1, 3]])  # the other classes' text is untouched
    assert torch.allclose(res.text.norm(dim=1), torch.ones(4))


def test_soft_prompt_finds_nothing_when_the_images_collapsed_onto_a_sibling():
    feats, labels = _one_hot_world(collapse=True)
    keep = ~((labels == FORGOTTEN) & (np.arange(len(labels)) % 2 == 1))  # 3 forgotten images share class 1's 6 images' feature
    feats, labels = feats[keep], labels[keep]
    d_f = labels == FORGOTTEN
    run = soft_prompt_run(feats, labels, np.eye(4), [FORGOTTEN], 10.0, feats, labels, d_f, SoftPromptConfig(steps=200, lr=0.05))
    assert run.d_f_fine == 0.0 and run.d_r_fine == 100.0  # the sibling's larger share wins every image of that feature
    assert run.hits.shape == (3,) and run.images == len(labels)
    with pytest.raises(ValueError, match="forgotten classes"):
        soft_prompt_attack(feats, labels, np.eye(4), [7], 10.0)


# ---- weight diagnostics --------------------------------------------------------------------------------


def test_relative_distance_and_the_loss_barrier_by_hand():
    ref = {"w": torch.tensor([3.0, 4.0]), "b": torch.tensor([0.0])}
    assert relative_distance(ref, {"w": torch.tensor([3.0, 4.5]), "b": torch.tensor([0.0])}) == pytest.approx(0.1)  # 0.5 / 5
    assert relative_distance(ref, ref) == 0.0
    with pytest.raises(ValueError, match="lack"):
        relative_distance(ref, {"w": torch.zeros(2)})
    bump = loss_barrier([0, 0.5, 1], [1, 4, 3])
    assert bump.value == 2.0 and bump.t == 0.5  # 4 - (1 + 3) / 2
    assert loss_barrier([0, 0.5, 1], [1, 1.5, 3]).value == 0.0  # below the chord: no barrier
    assert line_points(11) == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    with pytest.raises(ValueError, match="t = 0 to t = 1"):
        loss_barrier([0, 0.5], [1, 2])
