"""The audit's headline numbers over seeds: per-image hits, the paired bootstrap of D_f test images, pooling, on hand-worked numbers."""
from __future__ import annotations

import numpy as np
import pytest

from ktmu.audit.report import audit_cells, audit_table
from ktmu.audit.seeds import (ProbeHits, WorstHits, aggregate_audits, audit_replicates, audit_statistics, recovery, relative_drop,
                              resample_counts)
from ktmu.evaluation.metrics import relative_drop as scalar_drop

ONES = np.ones((1, 4))  # a "resample" that is the full set of 4 D_f images


def test_worst_hits_pool_each_groups_worst_alternative():
    # concept A: images 0, 1 with names (x, y); concept B: images 2, 3 with one name
    # A: x finds image 0, y finds images 0 and 1 -> worst (highest) y: 2 of 2; B: 1 of 2 -> (2 + 1) / 4 = 75 %
    hits = WorstHits((np.array([0, 1]), np.array([2, 3])), (np.array([[1, 1], [0, 1]]), np.array([[1], [0]])))
    assert hits.accuracy(ONES).tolist() == [75.0]
    # image 1 twice, image 0 never: A's y finds 2 of 2, x none; B as before -> 75; image 3 only -> 0
    assert hits.accuracy(np.array([[0, 2, 1, 1], [0, 0, 0, 4]])).tolist() == [75.0, 0.0]
    assert WorstHits.of([1, 0, 0, 0]).accuracy(ONES).tolist() == [25.0]
    assert np.isnan(WorstHits.of([1, 0, 0, 0]).accuracy(np.zeros((1, 4))))[0]  # no image: no accuracy
    with pytest.raises(ValueError, match="alternative"):
        WorstHits((np.array([0, 1]),), (np.zeros((2, 0)),))


def test_resamples_keep_each_concepts_size_and_are_seeded():
    counts = resample_counts([np.array([0, 1, 2]), np.array([3])], 4, resamples=50, seed=5)
    assert counts.shape == (50, 4) and np.all(counts[:, :3].sum(1) == 3) and np.all(counts[:, 3] == 1)
    assert np.array_equal(counts, resample_counts([np.array([0, 1, 2]), np.array([3])], 4, resamples=50, seed=5))
    assert not np.array_equal(counts, resample_counts([np.array([0, 1, 2]), np.array([3])], 4, resamples=50, seed=6))


def test_vectorised_drop_and_recovery_match_the_scalar_rules():
    o, u = np.array([80.0, 0.0, 50.0, 40.0]), np.array([20.0, 10.0, 60.0, 0.0])
    assert relative_drop(o, u).tolist() == [scalar_drop(a, b) for a, b in zip(o, u)] == [75.0, 100.0, 0.0, 100.0]
    # recovery example of ktmu.audit.recovery: original 80, unlearned 2, after 41 -> 0.5; a gap under 1 point -> nan
    rec = recovery(np.array([80.0, 10.0]), np.array([2.0, 9.5]), np.array([41.0, 10.0]))
    assert rec[0] == pytest.approx(0.5) and np.isnan(rec[1])


def _two_image_model(name, probe, before=None, after=None) -> ProbeHits:
    """D_f = one concept of 2 images."""
    w = lambda h: None if h is None else WorstHits.of(h)  # noqa: E731
    return ProbeHits(name=WorstHits.of(name), linear_probe=w(probe), relearn_before=w(before), relearn_after=w(after))


def test_a_hand_computed_interval_on_a_known_hit_vector():
    # the unlearned model's probe finds 1 of the concept's 2 test images: a resample of 2 images finds 0, 1 or 2 of them
    # (probabilities 1/4, 1/2, 1/4), so the replicates are 0, 50 or 100 % and the 95 % interval is [0, 100] around 50
    original = _two_image_model([1, 1], [1, 1], [1, 1], [1, 1])
    unlearned = _two_image_model([0, 0], [1, 0], [0, 0], [1, 1])
    hits = {"original": original, "unlearned": unlearned}
    reps = audit_replicates(hits, [np.array([0, 1])], resamples=1000, seed=0)["unlearned"]
    share = {v: np.mean(reps["probe_recall"] == v) for v in (0.0, 50.0, 100.0)}
    assert sum(share.values()) == 1 and share[50.0] == pytest.approx(0.5, abs=0.05) and share[0.0] == pytest.approx(0.25, abs=0.05)
    # every other number is constant: D_f fine 0 (Quality 100 against an original at 100), recovery (100 - 0) / (100 - 0) = 1
    assert np.all(reps["d_f_fine"] == 0) and np.all(reps["quality"] == 100) and np.all(reps["recovery"] == 1)
    # worst-case Quality: name 100, probe 100 * (100 - r) / 100 -> the probe's drop, 100 - probe recall, on every resample
    assert np.array_equal(reps["wc_quality"], 100 - reps["probe_recall"])
    audit = {"models": {"original": {"name": {"d_f_fine": 100.0}}, "unlearned": {"linear_probe": {"forgotten_recall": 50.0},
                                                                                  "name": {"d_f_fine": 0.0}}}}
    agg = aggregate_audits([audit], [{"unlearned": reps, "original": {}}])
    # pooled over one seed: the replicates centred on the estimate 50 (shifted by their Monte-Carlo drift), percentiles 0 and 100
    shift = reps["probe_recall"].mean() - 50.0
    iv = agg["models"]["unlearned"]["interval"]["probe_recall"]
    assert agg["models"]["unlearned"]["mean"]["probe_recall"] == 50.0 and abs(shift) < 5
    assert (iv["low"], iv["high"], iv["half_width"]) == (pytest.approx(0 - shift), pytest.approx(100 - shift), pytest.approx(50.0))
    assert audit_cells(agg["models"]["unlearned"])["probe recall"] == "50.0 ± 50.0"


def test_full_set_statistics_and_gaps_to_the_oracle():
    original = _two_image_model([1, 1], [1, 1])
    unlearned = _two_image_model([0, 1], [1, 1])
    oracle = _two_image_model([0, 0], [1, 0])
    stats = audit_statistics({"original": original, "unlearned": unlearned, "oracle": oracle}, np.ones((1, 2)))
    u = {k: float(v[0]) for k, v in stats["unlearned"].items()}
    assert u["d_f_fine"] == 50 and u["quality"] == 50 and u["wc_quality"] == 0  # the probe still finds both: nothing forgotten through it
    assert u["gap_d_f_fine"] == 50 and u["gap_probe_recall"] == 50 and "recovery" not in u  # no relearning measured
    assert "gap_d_f_fine" in stats["original"] and "gap_d_f_fine" not in stats["oracle"]


def _record(d_f_fine: float, recall: float | None, recovery_value: float | None = None) -> dict:
    rec = {"name": {"d_f_fine": d_f_fine}, "relearn": {"forget": {"recovery": recovery_value}},
           "linear_probe": {"forgotten_recall": recall} if recall is not None else {"skipped": "no images"}}
    return {"request": {"seed": 0}, "models": {"original": {"name": {"d_f_fine": 100.0}}, "unlearned": rec}}


def test_pooling_two_seeds_and_numbers_that_cannot_be_stated():
    # seed A's probe recall is 90 on every replicate, seed B's 100: pooled [90, 100] around 95 (ktmu.evaluation.intervals' hand case)
    reps = [{"unlearned": {"d_f_fine": np.full(10, 0.0), "probe_recall": np.full(10, 90.0), "recovery": np.full(10, 0.5)}},
            {"unlearned": {"d_f_fine": np.full(10, 0.0), "probe_recall": np.full(10, 100.0), "recovery": np.r_[np.full(9, 0.5), np.nan]}}]
    agg = aggregate_audits([_record(0.0, 90.0, 0.5), _record(0.0, 100.0, 0.5)], reps)
    model = agg["models"]["unlearned"]
    assert model["mean"]["probe_recall"] == 95.0 and model["interval"]["probe_recall"] == {"low": 90.0, "high": 100.0, "half_width": 5.0}
    assert model["mean"]["recovery"] == 0.5 and model["interval"]["recovery"]["half_width"] is None  # a nan replicate
    assert "recovery" not in agg["models"]["original"]["mean"]  # no seed has it
    assert agg["interval_seeds"] == 2 and len(agg["seeds"]) == 2 and "seeds" not in aggregate_audits([_record(0, 1)], [{}], keep_seeds=False)
    cells = audit_cells(model)
    assert cells["probe recall"] == "95.0 ± 5.0" and cells["recovery"] == "0.50" and cells["D_f fine"] == "0.0 ± 0.0"
    # a probe skipped on one seed: a mean of null and no interval
    agg = aggregate_audits([_record(0.0, 90.0), _record(0.0, None)], reps)
    assert agg["models"]["unlearned"]["mean"]["probe_recall"] is None and audit_cells(agg["models"]["unlearned"])["probe recall"] == "-"
    assert "over 2 seeds" in audit_table(agg)


def test_one_seed_prints_as_before():
    rec = _record(3.25, 74.6)["models"]["unlearned"]
    assert audit_cells(rec)["probe recall"] == "74.6" and audit_cells(rec)["D_f fine"] == "3.2"
    assert "±" not in "".join(audit_cells(rec).values())
