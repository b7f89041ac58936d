"""The study's Quality / Utility / Q-U on hand-computed numbers."""
import pytest

from ktmu.metrics import harmonic_mean, relative_drop, retention, summarize

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
