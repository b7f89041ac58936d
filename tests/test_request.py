"""Unlearning requests: names, aliases, goals, refusals and the proxy forget set."""
import numpy as np
import pytest

from ktmu.engine.request import RequestError, UnlearningRequest, forget_set_indices


def test_aliases_resolve_to_canonical_names(toy_world):
    req = UnlearningRequest.parse(toy_world, ["Blouse", "trainer"])
    assert req.concepts == ("shirt", "sneaker") and req.forget_fine == [0, 2] and req.forget_coarse == []


def test_unknown_name_suggests(toy_world):
    with pytest.raises(RequestError, match="Did you mean 'sneaker'"):
        UnlearningRequest.parse(toy_world, ["sneakr"])


def test_goal_level_mismatch_is_explained(toy_world):
    with pytest.raises(RequestError, match="coarse concept; use --goal coarse"):
        UnlearningRequest.parse(toy_world, ["footwear"], "fine")
    with pytest.raises(RequestError, match="fine concept"):
        UnlearningRequest.parse(toy_world, ["shirt"], "coarse")
    with pytest.raises(RequestError, match="hybrid request names at least one fine and one coarse"):
        UnlearningRequest.parse(toy_world, ["shirt"], "hybrid")
    with pytest.raises(RequestError, match="unknown goal"):
        UnlearningRequest.parse(toy_world, ["shirt"], "both")
    with pytest.raises(RequestError, match="at least one concept"):
        UnlearningRequest.parse(toy_world, [], "fine")


def test_forgetting_everything_is_refused(toy_world):
    with pytest.raises(RequestError, match="every fine concept"):
        UnlearningRequest.parse(toy_world, ["shirt", "coat", "sneaker", "sandal"])
    with pytest.raises(RequestError, match="every fine concept"):
        UnlearningRequest.parse(toy_world, ["top", "shoe"], "coarse")


def test_coarse_and_hybrid_expand_children(toy_world):
    assert UnlearningRequest.parse(toy_world, ["shoe"], "coarse").forget_fine == [2, 3]
    req = UnlearningRequest.parse(toy_world, ["shirt", "footwear"], "hybrid")
    assert req.forget_fine == [0, 2, 3] and req.forget_coarse == [1]


def test_forget_set_uses_only_named_concepts_and_caps(toy_world, toy_train):
    req = UnlearningRequest.parse(toy_world, ["shirt", "sandal"])
    idx = forget_set_indices(req, toy_train, max_per_concept=4, seed=1)
    assert len(idx) == 8
    assert set(toy_train.fine_labels[idx]) == {0, 3}
    assert np.array_equal(idx, forget_set_indices(req, toy_train, max_per_concept=4, seed=1))
    assert len(forget_set_indices(req, toy_train)) == 20  # 10 each, under the 150 cap


def test_empty_forget_set_is_refused(toy_world, toy_train):
    from ktmu.data import ArrayDataset

    only_coats = ArrayDataset(toy_world, "train", toy_train.images[10:20], toy_train.fine_labels[10:20])
    with pytest.raises(RequestError, match="forget set is empty"):
        forget_set_indices(UnlearningRequest.parse(toy_world, ["shirt"]), only_coats)
    with pytest.raises(RequestError, match="at least one image"):
        forget_set_indices(UnlearningRequest.parse(toy_world, ["shirt"]), toy_train, max_per_concept=0)
