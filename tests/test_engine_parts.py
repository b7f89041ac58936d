"""The engine's shared parts: the goal table and its readers, per-template text features, the trainer core, checkpoint selection."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ktmu.backbones.encode import TemplateTextFeatures
from ktmu.engine.core import TrainerCore
from ktmu.engine.forget_set import ForgetSet
from ktmu.engine.goals import GOAL_TABLE, GOALS, goal_spec
from ktmu.engine.request import RequestError, UnlearningRequest
from ktmu.engine.selection import forget_scores, selection_rule
from ktmu.engine.trainer import TrainConfig, unlearn
from ktmu.evaluation.flags import flags_for, unknown_concept_reasons
from ktmu.evaluation.metrics import chance_aware_parts, summarize
from ktmu.evaluation.seeds import Groups, Hits, paired_replicates
from ktmu.methods import build_method
from ktmu.runtime.dist import Dist


# ---- the goal table ------------------------------------------------------------------------------
def test_the_goal_table_names_the_request_goals_and_refuses_others():
    assert GOALS == ("fine", "coarse", "hybrid") == tuple(GOAL_TABLE)
    with pytest.raises(ValueError, match="unknown goal 'medium'; use fine, coarse or hybrid"):
        goal_spec("medium")
    for spec in GOAL_TABLE.values():  # every key Quality or Utility reads is one the goal measures
        assert {*spec.forgotten, *spec.kept} <= {a.key for a in spec.accuracies}


def test_request_levels_follow_the_table(toy_world):
    assert UnlearningRequest.parse(toy_world, ["shirt", "footwear"], "hybrid").goal == "hybrid"
    with pytest.raises(RequestError, match="'top' is a coarse concept; use --goal coarse or hybrid, or name fine concepts"):
        UnlearningRequest.parse(toy_world, ["shirt", "top"], "fine")
    with pytest.raises(RequestError, match="'shirt' is a fine concept; use --goal fine or hybrid, or name coarse concepts"):
        UnlearningRequest.parse(toy_world, ["shirt", "top"], "coarse")
    with pytest.raises(RequestError, match="a hybrid request names at least one fine and one coarse concept"):
        UnlearningRequest.parse(toy_world, ["shirt"], "hybrid")


def test_quality_and_utility_read_the_tables_keys_by_hand():
    orig = {"forget_coarse": 90.0, "forget_fine": 80.0, "retain_coarse": 95.0, "retain_fine": 90.0, "forget_kept_coarse": 100.0}
    new = {"forget_coarse": 45.0, "forget_fine": 20.0, "retain_coarse": 95.0, "retain_fine": 45.0, "forget_kept_coarse": 50.0}
    # fine: drop (80-20)/80 = 75; kept 45/90 = 50, 100, 45/90 = 50 -> 66.67
    assert summarize(orig, new, "fine")["quality"] == pytest.approx(75) and summarize(orig, new, "fine")["utility"] == pytest.approx(200 / 3)
    # coarse: drop (90-45)/90 = 50; kept 100, 50 -> 75 (forget_kept_coarse is no coarse-goal key)
    assert summarize(orig, new, "coarse")["quality"] == pytest.approx(50) and summarize(orig, new, "coarse")["utility"] == pytest.approx(75)
    # hybrid: (75 + 50) / 2; kept 50, 100, 50 -> 66.67; without forget_kept_coarse in one dict: 100, 50 -> 75
    assert summarize(orig, new, "hybrid")["quality"] == pytest.approx(62.5) and summarize(orig, new, "hybrid")["utility"] == pytest.approx(200 / 3)
    no_kept = {k: v for k, v in new.items() if k != "forget_kept_coarse"}
    assert summarize(orig, no_kept, "hybrid")["utility"] == pytest.approx(75)
    assert list(chance_aware_parts(orig, new, "hybrid", 10, 5)["kept"]) == ["forget_kept_coarse", "retain_coarse", "retain_fine"]


def test_bootstrap_accuracies_use_the_tables_strata():
    """One image per stratum: every resample is the full sample, so each replicate is the hand-worked accuracy."""
    groups = Groups(d_r=np.array([True, False, False]), d_f_forgotten_coarse=np.array([False, True, False]),
                    d_f_kept_coarse=np.array([False, False, True]))
    orig = Hits(fine=np.array([True, True, True]), coarse=np.array([True, True, True]))
    new = Hits(fine=np.array([True, False, True]), coarse=np.array([True, False, True]))  # the forgotten-coarse image forgot both
    reps = paired_replicates(orig, new, groups, "hybrid", 4, 2, resamples=5, seed=0)
    assert np.all(reps["forget_fine"] == 50) and np.all(reps["forget_coarse"] == 0) and np.all(reps["forget_kept_coarse"] == 100)
    fine = paired_replicates(orig, new, groups, "fine", 4, 2, resamples=5, seed=0)
    assert np.all(fine["forget_coarse"] == 50) and "forget_kept_coarse" not in fine  # a fine goal's D_f coarse: all of D_f


def _record(forget_coarse: float, d_f: int, d_f_forgotten_coarse: int) -> dict:
    return {"forget_fine": 95.0, "forget_coarse": forget_coarse, "retain_fine": 95.0, "retain_coarse": 95.0, "n_fine": 4,
            "n_coarse": 2, "d_f_test_images": d_f, "d_f_forgotten_coarse_images": d_f_forgotten_coarse,
            "retain_fine_top_share": 0.3, "d_r_fine_classes": 3}


def test_knowing_the_concept_is_one_test_on_the_tables_forgotten_accuracies():
    # D_f coarse 80 % on 2 classes: of 20 images p = 0.0059 (known), of 10 images p = 56/1024 = 0.055 (not known).
    # A coarse goal measures D_f coarse on all 20 D_f images; a hybrid goal on the 10 under forgotten coarse concepts.
    scores = _record(80.0, d_f=20, d_f_forgotten_coarse=10)
    assert unknown_concept_reasons(scores, "coarse") == []
    (reason,) = unknown_concept_reasons(scores, "hybrid")
    assert reason.startswith("original model does not know the forgotten coarse concept") and "on 10 images" in reason
    flags = flags_for(scores, scores, "hybrid", weight_change=1.0)
    assert not flags.original_knows_concept and flags.reasons == [reason]
    assert flags_for(scores, scores, "coarse", weight_change=1.0).ok


# ---- per-template text features -----------------------------------------------------------------
def test_template_text_features_are_computed_once_when_the_text_is_frozen(tiny_backbone, monkeypatch):
    calls = []
    real = type(tiny_backbone).encode_text
    monkeypatch.setattr(type(tiny_backbone), "encode_text", lambda self, tok, **k: calls.append(1) or real(self, tok, **k))
    templates = ("a photo of a {}.", "a {}.")
    tiny_backbone.set_trainable("image")
    frozen = TemplateTextFeatures(tiny_backbone, ["shirt", "coat", "sneaker"], templates)
    assert len(calls) == 2 and frozen(1) is frozen(1) and len(calls) == 2  # once per template, then reused
    assert frozen.stacked().shape == (2, 3, frozen(0).shape[1]) and not frozen(0).requires_grad
    tiny_backbone.set_trainable("both")
    trained = TemplateTextFeatures(tiny_backbone, ["shirt", "coat", "sneaker"], templates)
    calls.clear()
    first = trained(0)
    assert len(calls) == 1 and first.requires_grad and torch.allclose(first.detach(), frozen(0), atol=1e-6)  # encoded again, with gradients (one torch thread rounds the two paths apart by ~1e-7)


# ---- the trainer core ---------------------------------------------------------------------------
class _Weights:
    """The smallest stand-in for a backbone that TrainerCore reads: a device and whether it needs a grad scaler."""

    device = torch.device("cpu")
    needs_grad_scaler = False


def test_the_core_weighs_the_loss_by_its_share_and_masks_after_the_sum():
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0, 3.0]))
    core = TrainerCore(_Weights(), {"w": w}, lr=0.1, masks={"w": torch.tensor([1.0, 0.0, 1.0])}, dist=Dist())
    core.backward((w * torch.tensor([2.0, 4.0, 6.0])).sum(), share=0.5)
    assert w.grad.tolist() == [1.0, 0.0, 3.0]  # half of (2, 4, 6), the masked entry zeroed
    core.step()
    assert w[1].item() == 2.0 and w[0].item() == pytest.approx(0.9) and w[2].item() == pytest.approx(2.9)  # Adam's first step: lr * sign
    core.release()
    assert w.grad is None


def test_the_core_scales_gradients_exactly_when_the_backbone_needs_it():
    from ktmu.backbones import load_backbone

    for precision, scaled in (("fp32", False), ("amp-fp16", True)):
        backbone = load_backbone("tiny-clip", precision=precision)
        core = TrainerCore(backbone, dict(backbone.named_trainable_parameters()), lr=1e-3, dist=Dist())
        assert (core.scaler is not None) == scaled == backbone.needs_grad_scaler


# ---- checkpoint selection -----------------------------------------------------------------------
def test_a_hybrid_request_under_its_coarse_concept_selects_by_both_levels(tiny_backbone, toy_world, toy_train):
    """shirt and top: every forget image lies under a forgotten coarse concept, yet the goal is hybrid, as Quality's."""
    forget = ForgetSet.from_request(UnlearningRequest.parse(toy_world, ["shirt", "top"], "hybrid"), toy_train, tiny_backbone.preprocess)
    assert bool(forget.forget_coarse.all()) and forget.goal == "hybrid"
    scores = forget_scores(tiny_backbone, forget, toy_world)
    assert scores["score"] == pytest.approx((scores["forget_fine"] + scores["forget_coarse"]) / 2)
    log = unlearn(tiny_backbone, build_method("ga"), forget, toy_world, TrainConfig(lr=1e-2, epochs=1, batch_size=8), progress=False)
    assert log.selection_rule == selection_rule("ours", "ga", "hybrid") and "(hybrid goal)" in log.selection_rule
    record = log.epochs[0]
    assert record["selection_score"] == pytest.approx((record["forget_train_fine_acc"] + record["forget_train_coarse_acc"]) / 2)


def test_no_epoch_kept_restores_the_original(tiny_backbone, toy_world, toy_train, monkeypatch):
    """A nan score is never lower than the best so far: no epoch is kept and the backbone ends on the original weights."""
    import ktmu.engine.selection as selection_mod

    monkeypatch.setattr(selection_mod, "forget_scores", lambda *a, **k: {"forget_fine": math.nan, "forget_coarse": math.nan, "score": math.nan})
    forget = ForgetSet.from_request(UnlearningRequest.parse(toy_world, ["shirt"]), toy_train, tiny_backbone.preprocess)
    before = tiny_backbone.copy_trainable()
    log = unlearn(tiny_backbone, build_method("ga"), forget, toy_world, TrainConfig(lr=1e-2, epochs=2, batch_size=4), progress=False)
    assert log.selected_epoch == 0
    assert all(torch.equal(before[k], p) for k, p in tiny_backbone.named_trainable_parameters())
