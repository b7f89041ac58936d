"""Hand-built cases with known answers for the audit's probes (linear probe, mass, similarity, worst case, recovery)."""
import math

import numpy as np
import pytest
import torch

from ktmu.audit import (
    curve_gap,
    fit_linear_probe,
    forgotten_mass,
    probe_train_indices,
    relearning_recovery,
    sibling_damage,
    worst_case_quality,
)
from ktmu.evaluation.metrics import relative_drop

# ---- linear probe -------------------------------------------------------------------------------

CENTRES = 3.0 * np.eye(4) + 1.0  # four well-separated class clusters, all scores positive as CLIP's cosines mostly are
FORGOTTEN = 2


def _clusters(n_per_class, seed, collapse=False):
    """Standard-deviation-0.3 clusters around CENTRES; with ``collapse`` the forgotten class sits on class 1's cluster."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(4), n_per_class)
    centres = CENTRES.copy()
    if collapse:
        centres[FORGOTTEN] = centres[1]
    return centres[labels] + 0.3 * rng.standard_normal((len(labels), 4)), labels


def test_probe_train_indices_fixed_budget_seeded():
    labels = np.array([0] * 10 + [1] * 3 + [2] * 7)
    idx = probe_train_indices(labels, per_class=5, seed=0)
    assert np.bincount(labels[idx]).tolist() == [5, 3, 5]  # a smaller class gives all it has
    assert idx.tolist() == sorted(idx.tolist()) and len(set(idx.tolist())) == 13
    assert np.array_equal(idx, probe_train_indices(labels, 5, seed=0))
    assert not np.array_equal(idx, probe_train_indices(labels, 5, seed=1))
    with pytest.raises(ValueError, match="at least 1"):
        probe_train_indices(labels, 0)


def test_probe_finds_a_concept_whose_name_head_was_zeroed():
    """Zero-shot with the forgotten class's text feature zeroed recalls nothing; the probe on the same features recalls it fully."""
    x_train, y_train = _clusters(200, seed=0)
    x_test, y_test = _clusters(100, seed=1)
    heads = np.eye(4)  # each class's zero-shot head: its own axis
    heads[FORGOTTEN] = 0.0  # the "unlearned" model: the name's head is gone, the features are untouched
    zero_shot = (x_test @ heads.T).argmax(1)
    assert (zero_shot[y_test == FORGOTTEN] == FORGOTTEN).mean() == 0.0
    res = fit_linear_probe(x_train, y_train, x_test, y_test, forgotten=[FORGOTTEN], per_class=50)
    assert res.forgotten_recall >= 98.0 and res.recall[FORGOTTEN] == res.forgotten_recall
    assert res.kept_accuracy >= 98.0 and res.train_size == 200
    assert res.predictions.shape == (400,)


def test_probe_recall_is_low_when_the_features_collapsed_onto_a_sibling():
    x_train, y_train = _clusters(200, seed=0, collapse=True)
    x_test, y_test = _clusters(100, seed=1, collapse=True)
    res = fit_linear_probe(x_train, y_train, x_test, y_test, forgotten=torch.tensor([False, False, True, False]), per_class=100)
    assert res.forgotten_recall < 75.0  # indistinguishable from class 1: a coin flip at best
    assert res.recall[0] >= 98.0 and res.recall[3] >= 98.0  # the untouched classes are still read out
    # what is "lost" from class 2 went to its sibling: classes 1 and 2 share their combined images
    both = np.isin(y_test, [1, 2])
    assert np.isin(res.predictions[both], [1, 2]).mean() >= 0.98


def test_probe_is_deterministic_and_accepts_torch_features():
    x_train, y_train = _clusters(60, seed=3)
    x_test, y_test = _clusters(20, seed=4)
    a = fit_linear_probe(torch.tensor(x_train), torch.tensor(y_train), torch.tensor(x_test), torch.tensor(y_test), [FORGOTTEN], per_class=30, seed=7)
    b = fit_linear_probe(x_train, y_train, x_test, y_test, np.array([FORGOTTEN]), per_class=30, seed=7)
    assert np.array_equal(a.predictions, b.predictions) and np.allclose(a.recall, b.recall)


def test_probe_class_missing_from_test_has_nan_recall_and_bad_input_is_named():
    x_train, y_train = _clusters(30, seed=0)
    x_test, y_test = _clusters(10, seed=1)
    keep = y_test != 3
    res = fit_linear_probe(x_train, y_train, x_test[keep], y_test[keep], [FORGOTTEN], num_classes=4)
    assert math.isnan(res.recall[3]) and res.recall[0] == 100.0
    with pytest.raises(ValueError, match="test features are 3-d"):
        fit_linear_probe(x_train, y_train, x_test[:, :3], y_test, [FORGOTTEN])
    with pytest.raises(ValueError, match="at least two classes"):
        fit_linear_probe(x_train[y_train == 0], y_train[y_train == 0], x_test, y_test, [FORGOTTEN])
    with pytest.raises(ValueError, match="outside 0..3"):
        fit_linear_probe(x_train, y_train, x_test, y_test, [7])


# ---- mass ---------------------------------------------------------------------------------------

PARENTS = [0, 0, 0, 1, 1]  # fine 0, 1, 2 under coarse 0; fine 3, 4 under coarse 1


def test_mass_by_hand():
    # ten images of forgotten class 2: 2 still called "2", 6 called its siblings 0 or 1, 2 called 3 or 4
    pred = [2, 0, 1, 3, 2, 0, 4, 1, 1, 0]
    m = forgotten_mass(pred, [2] * 10, PARENTS, forgotten=[2])
    assert (m.forgotten, m.sibling, m.other, m.n) == (0.2, 0.6, 0.2, 10)


def test_mass_judges_siblings_against_each_images_own_parent():
    # forgotten 2 (parent 0) and 3 (parent 1): a "2" called 3 stays forgotten; a "3" called 4 is a sibling;
    # a "3" called 0 is another coarse concept; a "2" called 1 is a sibling
    m = forgotten_mass(np.array([3, 4, 0, 1]), np.array([2, 3, 3, 2]), PARENTS, forgotten=np.array([False, False, True, True, False]))
    assert (m.forgotten, m.sibling, m.other) == (0.25, 0.5, 0.25)


def test_mass_refuses_kept_images_and_empty_input():
    with pytest.raises(ValueError, match="only D_f test images"):
        forgotten_mass([0, 1], [2, 1], PARENTS, [2])
    with pytest.raises(ValueError, match="no D_f test images"):
        forgotten_mass([], [], PARENTS, [2])
    with pytest.raises(ValueError, match="0..4"):
        forgotten_mass([9], [2], PARENTS, [2])


# ---- similarity ---------------------------------------------------------------------------------


def _text(similarities):
    """2-d unit text features: class 0 is (1, 0); class k has cosine ``similarities[k-1]`` to it."""
    return np.array([[1.0, 0.0]] + [[s, math.sqrt(1 - s * s)] for s in similarities])


def test_sibling_damage_by_hand():
    # kept classes 1..4 have cosine 0.9, 0.5, 0.1, -0.3 to forgotten class 0 and changed by -10, -4, -4, +2 points.
    # ranks of similarity: 4, 3, 2, 1; of change (tie averaged): 1, 2.5, 2.5, 4.
    # centred: (1.5, .5, -.5, -1.5) and (-1.5, 0, 0, 1.5): sum of products -4.5, sums of squares 5 and 4.5
    # rho = -4.5 / sqrt(5 * 4.5) = -sqrt(0.9)
    orig = np.array([80.0, 90.0, 90.0, 90.0, 90.0])
    new = np.array([1.0, 80.0, 86.0, 86.0, 92.0])
    parents = [0, 0, 0, 1, 1]
    res = sibling_damage(orig, new, _text([0.9, 0.5, 0.1, -0.3]) * 5.0, [0], parents, names=list("abcde"))
    assert res.spearman == pytest.approx(-math.sqrt(0.9)) and res.reason == ""
    assert [r.name for r in res.rows] == ["b", "c", "d", "e"]
    assert [r.change for r in res.rows] == [-10.0, -4.0, -4.0, 2.0]
    assert [round(r.similarity, 6) for r in res.rows] == [0.9, 0.5, 0.1, -0.3]  # features normalised first
    assert [r.same_parent for r in res.rows] == [True, True, False, False]


def test_sibling_damage_takes_the_max_over_forgotten_concepts():
    text = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.6, 0.8, 0.0], [0.8, 0.0, 0.6], [0.0, 0.0, 1.0]])
    res = sibling_damage(np.full(5, 90.0), np.array([0, 0, 70, 80, 90.0]), text, [0, 1], [0, 0, 0, 1, 1])
    assert [(r.index, round(r.similarity, 6)) for r in res.rows] == [(2, 0.8), (3, 0.8), (4, 0.0)]


def test_sibling_damage_nan_with_a_reason():
    text = _text([0.9, 0.5, 0.1])
    few = sibling_damage(np.full(4, 90.0), np.array([0, 80, np.nan, 70]), text, [0], [0, 0, 1, 1])
    assert math.isnan(few.spearman) and "only 2 kept concept(s)" in few.reason
    flat = sibling_damage(np.full(4, 90.0), np.array([0, 85, 85, 85.0]), text, [0], [0, 0, 1, 1])
    assert math.isnan(flat.spearman) and "same amount" in flat.reason
    same = sibling_damage(np.full(4, 90.0), np.array([0, 80, 85, 89.0]), _text([0.5, 0.5, 0.5]), [0], [0, 0, 1, 1])
    assert math.isnan(same.spearman) and "equally similar" in same.reason
    with pytest.raises(ValueError, match="at least one forgotten"):
        sibling_damage(np.full(4, 90.0), np.full(4, 90.0), text, [], [0, 0, 1, 1])


# ---- worst-case quality -------------------------------------------------------------------------


def test_worst_case_quality_by_hand():
    original = {"name": 80.0, "held_out_alias": 75.0, "held_out_template": 78.0, "linear_probe": 97.0}
    unlearned = {"name": 2.0, "held_out_alias": 30.0, "held_out_template": 3.9, "linear_probe": 95.06}
    # drops: 100*78/80 = 97.5; 100*45/75 = 60; 100*74.1/78 = 95; 100*1.94/97 = 2
    wc = worst_case_quality(original, unlearned)
    assert wc.probe == "linear_probe" and wc.quality == pytest.approx(2.0)
    assert wc.per_probe["name"] == pytest.approx(97.5) and wc.per_probe["held_out_alias"] == pytest.approx(60.0)
    assert wc.per_probe["held_out_template"] == pytest.approx(95.0)
    assert wc.per_probe["name"] == relative_drop(80.0, 2.0)  # each probe is the study's Quality against its own original


def test_worst_case_quality_single_probe_is_the_studys_quality_and_ties_keep_the_first():
    assert worst_case_quality({"name": 80.3}, {"name": 3.2}).quality == relative_drop(80.3, 3.2)
    tie = worst_case_quality({"a": 50.0, "b": 80.0}, {"a": 25.0, "b": 40.0})
    assert tie.probe == "a" and tie.quality == 50.0
    # an accuracy that rose after unlearning clips at 0: nothing was forgotten through that probe
    assert worst_case_quality({"name": 80.0, "alias": 60.0}, {"name": 0.0, "alias": 70.0}).quality == 0.0


def test_worst_case_quality_refuses_mismatched_or_missing_probes():
    with pytest.raises(ValueError, match="only in original: \\['alias'\\]"):
        worst_case_quality({"name": 80.0, "alias": 70.0}, {"name": 1.0})
    with pytest.raises(ValueError, match="leave out a probe"):
        worst_case_quality({"name": 80.0, "alias": float("nan")}, {"name": 1.0, "alias": 2.0})
    with pytest.raises(ValueError, match="no probes"):
        worst_case_quality({}, {})


# ---- recovery -----------------------------------------------------------------------------------


def test_relearning_recovery_by_hand():
    assert relearning_recovery(80.0, 2.0, 41.0).value == pytest.approx(0.5)
    assert relearning_recovery(80.0, 2.0, 2.0).value == 0.0
    assert relearning_recovery(80.0, 2.0, 80.0).value == 1.0
    assert relearning_recovery(80.0, 2.0, 90.0).value == pytest.approx(88 / 78)  # beyond the original: not clipped
    assert relearning_recovery(80.0, 2.0, 41.0).reason == ""


def test_relearning_recovery_guard_when_nothing_was_removed():
    r = relearning_recovery(50.0, 49.5, 60.0)
    assert math.isnan(r.value) and "0.50 points" in r.reason and "nothing was removed" in r.reason
    assert math.isnan(relearning_recovery(50.0, 55.0, 60.0).value)  # unlearning raised the accuracy
    assert relearning_recovery(50.0, 49.5, 60.0, min_gap=0.1).value == pytest.approx(21.0)
    with pytest.raises(ValueError, match="must be numbers"):
        relearning_recovery(float("nan"), 1.0, 2.0)


def test_curve_gap_by_hand():
    assert curve_gap([10, 40, 60], [10, 20, 30]) == pytest.approx(50 / 3)
    assert curve_gap([5.0], [5.0]) == 0.0
    with pytest.raises(ValueError, match="same steps"):
        curve_gap([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="missing"):
        curve_gap([1, float("nan")], [1, 2])
