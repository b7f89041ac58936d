"""Bootstrap intervals within a seed and pooled across seeds, on hand-computable numbers."""
import numpy as np
import pytest

from ktmu.audit import Interval, bootstrap_interval, bootstrap_replicates, format_interval, pooled_seed_interval, seed_interval
from ktmu.evaluation.metrics import relative_drop


def test_constant_statistic_has_zero_width():
    iv = bootstrap_interval(np.ones(50))
    assert (iv.estimate, iv.low, iv.high, iv.half_width) == (100.0, 100.0, 100.0, 0.0)
    assert format_interval(iv) == "100.0 ± 0.0"


def test_replicates_are_seeded_and_centred_on_the_estimate():
    hits = np.array([1] * 70 + [0] * 30)
    a, b = bootstrap_replicates(hits, seed=3), bootstrap_replicates(hits, seed=3)
    assert np.array_equal(a, b) and not np.array_equal(a, bootstrap_replicates(hits, seed=4))
    assert a.shape == (1000,) and abs(a.mean() - 70.0) < 1.0
    # binomial standard error sqrt(.7 * .3 / 100) = 4.58 points; the 95 % interval is about +-1.96 of it
    iv = bootstrap_interval(hits, seed=3)
    assert iv.estimate == 70.0 and iv.low < 70.0 < iv.high
    assert iv.half_width == pytest.approx(1.96 * 4.58, rel=0.15)


def test_the_vectorised_default_equals_an_explicit_statistic():
    hits = np.random.default_rng(0).integers(0, 2, 40)
    fast = bootstrap_replicates(hits, resamples=50, seed=1)
    slow = bootstrap_replicates(hits, lambda v: 100.0 * v.mean(), resamples=50, seed=1)
    assert np.allclose(fast, slow)


def test_a_paired_statistic_on_rows():
    # rows = (original hit, unlearned hit) of the same image: the statistic sees both columns of one resample
    rows = np.array([[1, 0]] * 8 + [[0, 0]] * 2)
    drop = lambda v: relative_drop(100 * v[:, 0].mean(), 100 * v[:, 1].mean())  # noqa: E731
    iv = bootstrap_interval(rows, drop, resamples=200)
    assert (iv.estimate, iv.low, iv.high) == (100.0, 100.0, 100.0)  # every resample forgets all it knew


def test_pooled_seed_interval_by_hand():
    # seed A always 90, seed B always 100: pooled replicates are half 90, half 100;
    # the 2.5th and 97.5th percentiles are 90 and 100, the estimate their mean 95 -> "95.0 ± 5.0"
    iv = pooled_seed_interval([90.0, 100.0], [np.full(10, 90.0), np.full(10, 100.0)])
    assert (iv.estimate, iv.low, iv.high, iv.seeds, iv.resamples) == (95.0, 90.0, 100.0, 2, 10)
    assert str(iv) == "95.0 ± 5.0"


def test_pooled_seed_interval_centres_each_seed_on_its_estimate():
    # seed replicates drifted by Monte-Carlo noise (mean 81) are shifted to the seed's estimate 80
    iv = pooled_seed_interval([80.0], [np.array([79.0, 81.0, 83.0])], level=0.5)
    # centred: 78, 80, 82; 25th and 75th percentiles (linear interpolation) 79 and 81
    assert (iv.estimate, iv.low, iv.high) == (80.0, 79.0, 81.0)


def test_seed_interval_from_per_image_values():
    seeds = [np.ones(20), np.r_[np.ones(10), np.zeros(10)]]  # 100 % and 50 %
    iv = seed_interval(seeds, resamples=400, seed=0)
    assert iv.estimate == 75.0 and iv.seeds == 2
    assert iv.high == 100.0 and iv.low < 50.0  # seed 2's own sampling spread widens the low end
    assert seed_interval(seeds, resamples=400, seed=0) == iv  # seeded
    # the first seed's replicates do not depend on how many seeds follow
    one = seed_interval(seeds[:1], resamples=400, seed=0)
    assert (one.low, one.high) == (100.0, 100.0)


def test_single_seed_interval_is_the_within_seed_interval_up_to_centring():
    hits = np.array([1] * 45 + [0] * 5)
    within = bootstrap_interval(hits, seed=0)
    reps = bootstrap_replicates(hits, seed=0)
    across = pooled_seed_interval([within.estimate], [reps])
    shift = within.estimate - reps.mean()
    assert across.low == pytest.approx(within.low + shift) and across.high == pytest.approx(within.high + shift)


def test_formatter_and_errors():
    assert format_interval(Interval(97.8125, 97.4, 98.2)) == "97.8 ± 0.4"
    assert format_interval(Interval(97.8125, 97.4, 98.2), digits=2) == "97.81 ± 0.40"
    with pytest.raises(ValueError, match="same, non-zero number"):
        pooled_seed_interval([1.0, 2.0], [np.ones(3), np.ones(4)])
    with pytest.raises(ValueError, match="one estimate and one replicate"):
        pooled_seed_interval([1.0], [])
    with pytest.raises(ValueError, match="no test images"):
        bootstrap_interval(np.array([]))
    with pytest.raises(ValueError, match="level"):
        bootstrap_interval(np.ones(3), level=95)
    with pytest.raises(ValueError, match="no seeds"):
        seed_interval([])
