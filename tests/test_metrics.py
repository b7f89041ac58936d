"""The study's Quality / Utility / Q-U, their chance-aware versions and the run flags, on hand-computed numbers."""
import math

import pytest
import torch

from ktmu.evaluation.flags import (
    RunFlags, binomial_tail, collapse_check, collapse_share_threshold, knows_concept, run_flags, weights_changed,
)
from ktmu.evaluation.metrics import (
    chance_aware_parts, chance_rescaled, combined_chance_aware, harmonic_mean, quality_chance_aware, relative_drop, retention,
    retention_chance_aware, summarize, summarize_chance_aware, worst_kept_class,
)

ORIG = {"forget_coarse": 90.0, "forget_fine": 80.0, "retain_coarse": 95.0, "retain_fine": 90.0}


def test_fine_goal_by_hand():
    new = {"forget_coarse": 81.0, "forget_fine": 8.0, "retain_coarse": 96.0, "retain_fine": 85.5}
    # quality: (80-8)/80 = 90 %; ratios 81/90 = 90 %, 96/95 capped at 100 %, 85.5/90 = 95 % -> utility 95
    out = summarize(ORIG, new)
    assert out["quality"] == pytest.approx(90.0)
    assert out["utility"] == pytest.approx(95.0)
    assert out["qu"] == pytest.approx(2 * 90 * 95 / 185)


def test_unchanged_model_scores_zero_quality():
    out = summarize(ORIG, ORIG)
    assert out == {"quality": 0.0, "utility": 100.0, "qu": 0.0}


def test_coarse_goal_uses_coarse_drop_and_ignores_forget_fine():
    new = {"forget_coarse": 9.0, "forget_fine": 50.0, "retain_coarse": 95.0, "retain_fine": 72.0}
    out = summarize(ORIG, new, goal="coarse")
    assert out["quality"] == pytest.approx(90.0)  # (90 - 9) / 90
    assert out["utility"] == pytest.approx((100 + 80) / 2)  # D_r coarse, D_r fine


def test_hybrid_goal_averages_both_drops_and_keeps_kept_coarse():
    orig = {**ORIG, "forget_kept_coarse": 100.0}
    new = {"forget_coarse": 45.0, "forget_fine": 0.0, "retain_coarse": 95.0, "retain_fine": 90.0, "forget_kept_coarse": 70.0}
    out = summarize(orig, new, goal="hybrid")
    assert out["quality"] == pytest.approx((100 + 50) / 2)
    assert out["utility"] == pytest.approx((70 + 100 + 100) / 3)


def test_helpers_clip_and_edge_cases():
    assert relative_drop(50, 60) == 0.0 and relative_drop(0, 0) == 100.0
    assert retention(50, 75) == 100.0 and retention(80, 20) == 25.0
    assert harmonic_mean(0, 100) == 0.0 and harmonic_mean(50, 50) == 50.0


def test_missing_key_and_bad_goal_are_explained():
    with pytest.raises(ValueError, match="retain_fine"):
        summarize({k: v for k, v in ORIG.items() if k != "retain_fine"}, ORIG)
    with pytest.raises(ValueError, match="unknown goal"):
        summarize(ORIG, ORIG, goal="medium")


# ---- chance-aware metrics ----------------------------------------------------------------------------
FASHION = {"n_fine": 10, "n_coarse": 5}
DEMO_ORIG = {"forget_coarse": 97.7, "forget_fine": 80.3, "retain_coarse": 98.4, "retain_fine": 94.49}  # README demo


def test_chance_rescaled_by_hand():
    assert chance_rescaled(55, 10) == pytest.approx(50.0)  # (55 - 10) / 90
    assert chance_rescaled(10, 10) == pytest.approx(0.0)
    assert chance_rescaled(0, 10) == pytest.approx(-100 / 9)
    assert chance_rescaled(25, 2) == pytest.approx(-50.0)
    assert chance_rescaled(100, 4) == pytest.approx(100.0)
    assert math.isnan(chance_rescaled(100, 1))  # one class: nothing to rescale
    with pytest.raises(ValueError, match="whole number"):
        chance_rescaled(50, 0)


def test_quality_chance_aware_by_hand():
    assert quality_chance_aware(80, 10, 10) == pytest.approx(100.0)  # ended at chance
    assert quality_chance_aware(80, 45, 10) == pytest.approx(50.0)  # 35 of the 70-point lead gone
    assert quality_chance_aware(80, 0, 10) == 100.0  # 114 before the cap: avoiding a class is no better than guessing
    assert quality_chance_aware(80, 90, 10) == pytest.approx(-100 / 7)  # rose: negative, not clipped to 0
    assert quality_chance_aware(80, 80, 10) == 0.0
    assert math.isnan(quality_chance_aware(10, 0, 10))  # at chance: never 100
    assert math.isnan(quality_chance_aware(5, 0, 10))  # below chance
    assert math.isnan(quality_chance_aware(15, 0, 10))  # lead 5.6 < 10: too little to measure against
    assert quality_chance_aware(15, 10, 10, min_original=0) == pytest.approx(100.0)


def test_retention_chance_aware_by_hand():
    assert retention_chance_aware(90, 50, 10) == pytest.approx(50.0)  # the study's ratio says 55.6
    assert retention(90, 50) == pytest.approx(55.56, abs=0.01)
    assert retention_chance_aware(90, 10, 10) == pytest.approx(0.0)
    assert retention_chance_aware(90, 5, 10) == pytest.approx(-6.25)  # below chance: negative, no floor
    assert retention_chance_aware(90, 95, 10) == 100.0  # a gain is capped, as in the study
    assert math.isnan(retention_chance_aware(8, 50, 10))
    assert math.isnan(retention_chance_aware(100, 100, 1))


def test_combined_chance_aware_by_hand():
    assert combined_chance_aware(100, 50) == pytest.approx(200 / 3)
    assert combined_chance_aware(0, 100) == 0.0
    assert combined_chance_aware(-20, 90) == -20.0
    assert math.isnan(combined_chance_aware(math.nan, 90))


def test_summarize_chance_aware_fine_goal_by_hand():
    orig = {"forget_fine": 80, "forget_coarse": 90, "retain_coarse": 95, "retain_fine": 90}
    new = {"forget_fine": 10, "forget_coarse": 90, "retain_coarse": 95, "retain_fine": 50}
    out = summarize_chance_aware(orig, new, "fine", **FASHION)
    # quality 100 (ended at chance); retentions 100, 100, (50-10)/(90-10) = 50 -> utility 83.3; Q-U 2*100*83.3/183.3
    assert out["quality_ca"] == pytest.approx(100.0) and out["utility_ca"] == pytest.approx(250 / 3)
    assert out["qu_ca"] == pytest.approx(2 * 100 * (250 / 3) / (100 + 250 / 3))
    assert set(out) == {"quality_ca", "utility_ca", "qu_ca"}


def test_summarize_chance_aware_coarse_goal_by_hand():
    orig = {"forget_fine": 90, "forget_coarse": 100, "retain_coarse": 95, "retain_fine": 90}
    new = {"forget_fine": 0, "forget_coarse": 20, "retain_coarse": 60, "retain_fine": 90}
    out = summarize_chance_aware(orig, new, "coarse", **FASHION)
    assert out["quality_ca"] == pytest.approx(100.0)  # coarse chance 20 %: (100-20)/(100-20)
    # retention of D_r coarse: (60-20)/(95-20) = 53.3; D_r fine kept: 100 -> utility 76.7
    assert out["utility_ca"] == pytest.approx((40 / 75 * 100 + 100) / 2)


def test_summarize_chance_aware_hybrid_goal_by_hand():
    orig = {"forget_fine": 80, "forget_coarse": 100, "retain_coarse": 95, "retain_fine": 90, "forget_kept_coarse": 100}
    new = {"forget_fine": 45, "forget_coarse": 20, "retain_coarse": 95, "retain_fine": 90, "forget_kept_coarse": 60}
    out = summarize_chance_aware(orig, new, "hybrid", **FASHION)
    assert out["quality_ca"] == pytest.approx((50 + 100) / 2)  # fine: 35/70; coarse: ended at chance
    assert out["utility_ca"] == pytest.approx((40 / 80 * 100 + 100 + 100) / 3)  # kept coarse (60-20)/(100-20)
    parts = chance_aware_parts(orig, new, "hybrid", **FASHION)
    assert list(parts["kept"]) == ["forget_kept_coarse", "retain_coarse", "retain_fine"]
    # one forgotten level never known -> the whole hybrid Quality is undefined
    assert math.isnan(summarize_chance_aware({**orig, "forget_coarse": 20}, new, "hybrid", **FASHION)["quality_ca"])


def test_summarize_chance_aware_refuses_bad_input():
    with pytest.raises(ValueError, match="retain_fine"):
        summarize_chance_aware({k: v for k, v in ORIG.items() if k != "retain_fine"}, ORIG, "fine", **FASHION)
    with pytest.raises(ValueError, match="unknown goal"):
        summarize_chance_aware(ORIG, ORIG, "medium", **FASHION)


def test_one_coarse_class_leaves_only_fine_terms():
    """A world with one coarse concept (digits): coarse accuracies are 100 % by construction and drop out."""
    orig = {"forget_fine": 90, "forget_coarse": 100, "retain_coarse": 100, "retain_fine": 90}
    new = {"forget_fine": 10, "forget_coarse": 100, "retain_coarse": 100, "retain_fine": 70}
    out = summarize_chance_aware(orig, new, "fine", n_fine=10, n_coarse=1)
    assert out["utility_ca"] == pytest.approx(75.0)  # only D_r fine: (70-10)/(90-10)


def test_binomial_tail_by_hand():
    assert binomial_tail(16, 20, 0.5) == pytest.approx(6196 / 2 ** 20)
    assert binomial_tail(15, 20, 0.5) == pytest.approx(21700 / 2 ** 20)
    assert binomial_tail(0, 20, 0.5) == 1.0 and binomial_tail(21, 20, 0.5) == 0.0
    assert binomial_tail(1, 1, 0.1) == pytest.approx(0.1)


def test_knows_concept_rule():
    ok, why = knows_concept(80, 2, 20)  # p = 0.0059, lead 60
    assert ok and "p = 0.0059" in why
    ok, why = knows_concept(75, 2, 20)  # p = 0.0207: a small test set cannot tell
    assert not ok and "not clearly above chance" in why
    ok, why = knows_concept(15, 10, 10_000)  # p tiny but lead 5.6 < 10
    assert not ok and "too close to chance" in why
    assert knows_concept(80.3, 10, 1000)[0]  # the demo's shirt
    ok, why = knows_concept(50, 10, 0)
    assert not ok and "no D_f test images" in why
    assert not knows_concept(100, 1, 50)[0] and not knows_concept(math.nan, 10, 50)[0]


def test_collapse_check_rule():
    assert collapse_share_threshold(2) == 0.75 and collapse_share_threshold(9) == pytest.approx(5 / 9)
    assert not collapse_check(94.49, 10, 0.12, n_kept=9)[0]
    bad, why = collapse_check(11.1, 10)  # rescaled 1.2 <= 10
    assert bad and "of the way from chance" in why
    bad, why = collapse_check(60, 10, 0.6, n_kept=9)  # accuracy fine, but 60 % of predictions on one class
    assert bad and "60.0 % of the D_r predictions" in why
    assert not collapse_check(60, 10, 0.55, n_kept=9)[0]  # below 55.6 %
    assert not collapse_check(95, 4, 0.7, n_kept=2)[0]  # two kept classes: 0.7 < 0.75
    assert not collapse_check(95, 4, 1.0, n_kept=1)[0]  # one kept class: a perfect model predicts only it


def test_weights_changed_by_hand():
    a = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor([3])}
    assert weights_changed(a, {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor([3])}) == 0.0
    assert weights_changed(a, {"w": torch.tensor([1.0, 2.5]), "n": torch.tensor([3])}) == 0.5
    assert weights_changed(a, {"w": torch.tensor([1.0, float("nan")]), "n": torch.tensor([3])}) == math.inf
    nan = {"w": torch.tensor([float("nan"), float("inf")])}
    assert weights_changed(nan, {"w": nan["w"].clone()}) == 0.0
    with pytest.raises(ValueError, match="names"):
        weights_changed(a, {"w": a["w"]})
    with pytest.raises(ValueError, match="shape"):
        weights_changed({"w": torch.zeros(2)}, {"w": torch.zeros(3)})


def test_run_flags_record_keys():
    flags = run_flags(DEMO_ORIG, {**DEMO_ORIG, "forget_fine": 3.2}, "fine", **FASHION, n_forget_images=1000,
                      top_class_share=0.12, weight_change=0.01, n_kept=9)
    assert flags == RunFlags(collapsed=False, unchanged=False, original_knows_concept=True, reasons=[]) and flags.ok
    assert flags.record() == {"collapsed": False, "unchanged": False, "original_knows_concept": True, "reasons": []}
    with pytest.raises(ValueError, match="n_forget_coarse_images"):
        run_flags(DEMO_ORIG, DEMO_ORIG, "hybrid", **FASHION, n_forget_images=10, top_class_share=None, weight_change=1.0)


# ---- the issue's cases --------------------------------------------------------------------------------
def test_issue_lr0_unchanged_model_is_flagged_and_not_100():
    """tiny-clip with --lr 0: weights unchanged, never knew shirts; the study's Q-U said 100.00."""
    orig = {"forget_fine": 0.0, "forget_coarse": 0.0, "retain_coarse": 22.0, "retain_fine": 9.8}
    assert summarize(orig, orig)["qu"] == 100.0  # the number the issue reports
    out = summarize_chance_aware(orig, orig, "fine", **FASHION)
    assert math.isnan(out["quality_ca"]) and math.isnan(out["qu_ca"])
    state = {"w": torch.randn(3)}
    flags = run_flags(orig, orig, "fine", **FASHION, n_forget_images=1000, top_class_share=0.4,
                      weight_change=weights_changed(state, {"w": state["w"].clone()}), n_kept=9)
    assert flags.unchanged and not flags.original_knows_concept
    assert any("equal the original" in r for r in flags.reasons)


def test_issue_random_model_at_chance_does_not_know_the_concept():
    """An untrained ViT-B-32: D_f fine at chance; the study's Q-U said 95.65."""
    orig = {"forget_fine": 10.3, "forget_coarse": 21.0, "retain_coarse": 19.5, "retain_fine": 9.9}
    new = {"forget_fine": 0.5, "forget_coarse": 20.0, "retain_coarse": 19.0, "retain_fine": 9.5}
    assert summarize(orig, new)["qu"] > 95
    assert knows_concept(orig["forget_fine"], 10, 1000)[0] is False
    out = summarize_chance_aware(orig, new, "fine", **FASHION)
    assert math.isnan(out["quality_ca"]) and math.isnan(out["utility_ca"]) and math.isnan(out["qu_ca"])


def test_issue_collapsed_model_is_flagged_and_scores_low():
    """mini-clip at --lr 1e9: every image predicted as t-shirt (a top), zero-shot 10 %."""
    collapsed = {"forget_fine": 0.0, "forget_coarse": 100.0, "retain_coarse": 100 / 3, "retain_fine": 100 / 9}
    legacy = summarize(DEMO_ORIG, collapsed)["qu"]
    out = summarize_chance_aware(DEMO_ORIG, collapsed, "fine", **FASHION)
    # retentions: D_f coarse capped 100, D_r coarse (33.3-20)/(98.4-20) = 17.0, D_r fine (11.1-10)/(94.49-10) = 1.3
    assert out["utility_ca"] == pytest.approx((100 + (100 / 3 - 20) / 78.4 * 100 + (100 / 9 - 10) / 84.49 * 100) / 3)
    assert out["qu_ca"] < 60 and out["qu_ca"] < legacy
    flags = run_flags(DEMO_ORIG, collapsed, "fine", **FASHION, n_forget_images=1000, top_class_share=1.0,
                      weight_change=1e9, n_kept=9)
    assert flags.collapsed and flags.original_knows_concept and not flags.unchanged
    # every image on one *accessory* class: kept accuracies fall below chance and Utility goes negative
    on_bag = {"forget_fine": 0.0, "forget_coarse": 0.0, "retain_coarse": 100 / 9, "retain_fine": 100 / 9}
    assert summarize_chance_aware(DEMO_ORIG, on_bag, "fine", **FASHION)["qu_ca"] < 0 < summarize(DEMO_ORIG, on_bag)["qu"]


def test_issue_user_world_below_chance_coarse_exposes_the_sibling_fall():
    """Coarse names the model never knew (below chance); a sibling fell from 70 % to 37 %.

    2 coarse / 4 fine classes; forget one fine concept; D_r = the sibling (70 -> 37) and two others
    (95 -> 100 each), equal image counts.
    """
    orig = {"forget_fine": 80.0, "forget_coarse": 40.0, "retain_coarse": 45.0, "retain_fine": (70 + 95 + 95) / 3}
    new = {"forget_fine": 5.0, "forget_coarse": 42.0, "retain_coarse": 44.0, "retain_fine": (37 + 100 + 100) / 3}
    legacy = summarize(orig, new)["utility"]
    assert legacy > 95  # the below-chance coarse terms count as ~100 % kept
    parts = chance_aware_parts(orig, new, "fine", n_fine=4, n_coarse=2)
    assert math.isnan(parts["kept"]["forget_coarse"]) and math.isnan(parts["kept"]["retain_coarse"])
    out = summarize_chance_aware(orig, new, "fine", n_fine=4, n_coarse=2)
    assert out["utility_ca"] == pytest.approx((79 - 25) / (260 / 3 - 25) * 100)  # 87.6: only D_r fine is measurable
    assert out["utility_ca"] < legacy - 8
    name, kept = worst_kept_class({"sibling": 70, "b": 95, "c": 95}, {"sibling": 37, "b": 100, "c": 100}, 4)
    assert name == "sibling" and kept == pytest.approx((37 - 25) / (70 - 25) * 100)  # 26.7
    assert worst_kept_class({"a": 20}, {"a": 0}, 4) == ("", pytest.approx(math.nan, nan_ok=True))
