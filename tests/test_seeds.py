"""--seeds N: paired bootstrap within a seed, pooled intervals across seeds, and the CLI records and tables."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ktmu.cli import main
from ktmu.report.tables import text_table
from ktmu.evaluation.seeds import METRICS, Groups, Hits, aggregate, paired_replicates, zero_shot_replicates

N_FINE, N_COARSE = 4, 2


def _groups(n_f: int = 5, n: int = 20) -> Groups:
    d_f = np.arange(n) < n_f
    return Groups(d_r=~d_f, d_f_forgotten_coarse=np.zeros(n, bool), d_f_kept_coarse=d_f)


def _hits(fine, coarse) -> Hits:
    return Hits(np.asarray(fine, bool), np.asarray(coarse, bool))


def _record(reps: dict, seed: int, zero_shot: float = 90.0) -> dict:
    """A minimal results.json record whose full-test-set values are the replicates' medians (exact for constant replicates)."""
    acc = {k: float(np.median(reps[k])) for k in ("forget_coarse", "forget_fine", "retain_coarse", "retain_fine")}
    return {"seed": seed, "unlearned": {**acc, "zero_shot": zero_shot},
            **{k: float(np.median(reps[k])) for k in ("quality", "utility", "qu", "quality_ca", "utility_ca", "qu_ca")}}


def test_a_model_identical_to_the_original_has_quality_zero_with_zero_width_intervals():
    # D_f: 5 images all right (fine and coarse); D_r: 15 images, half right at random -> every resample
    # of D_r moves both models' accuracy together (paired), so every retention is exactly 100.
    rng = np.random.default_rng(1)
    fine = np.r_[np.ones(5), rng.random(15) < 0.5]
    same = _hits(fine, np.ones(20))
    reps = paired_replicates(same, same, _groups(), "fine", N_FINE, N_COARSE, resamples=200, seed=0)
    assert np.all(reps["quality"] == 0) and np.all(reps["utility"] == 100) and np.all(reps["qu"] == 0)
    assert reps["retain_fine"].std() > 0  # the accuracy itself does vary over resamples ...
    agg = aggregate([_record(reps, 0), _record(reps, 1)], [reps, reps])
    for key, value in (("quality", 0.0), ("utility", 100.0), ("qu", 0.0), ("forget_fine", 100.0)):
        iv = agg["interval"][key]
        assert agg["mean"][key] == value and iv["low"] == iv["high"] == value and iv["half_width"] == 0
    assert agg["interval"]["retain_fine"]["half_width"] > 0  # ... but the pairing removes it from the metrics


def test_constant_hits_give_constant_replicates():
    # the unlearned model misses every D_f image at the fine level and keeps everything else
    orig = _hits(np.ones(20), np.ones(20))
    new = _hits(np.r_[np.zeros(5), np.ones(15)], np.ones(20))
    reps = paired_replicates(orig, new, _groups(), "fine", N_FINE, N_COARSE, resamples=100, seed=3)
    assert np.all(reps["forget_fine"] == 0) and np.all(reps["quality"] == 100) and np.all(reps["utility"] == 100)
    assert np.all(reps["qu"] == 100) and np.all(reps["quality_ca"] == 100) and np.all(reps["qu_ca"] == 100)
    # hand-computed pooling: seed estimates 100 and 100 -> mean 100, zero width
    agg = aggregate([_record(reps, 0), _record(reps, 1, zero_shot=80.0)], [reps, reps])
    assert agg["interval"]["qu"] == {"low": 100.0, "high": 100.0, "half_width": 0.0}
    assert agg["mean"]["zero_shot"] == 85.0 and "zero_shot" not in agg["interval"]
    assert agg["seed"] == 0 and [r["seed"] for r in agg["seeds"]] == [0, 1]


def test_strata_keep_their_sizes_and_the_replicates_are_seeded():
    orig = _hits(np.r_[np.ones(5), np.zeros(15)], np.ones(20))  # D_f fine 100 %, D_r fine 0 %
    a = paired_replicates(orig, orig, _groups(), "fine", N_FINE, N_COARSE, resamples=50, seed=7)
    b = paired_replicates(orig, orig, _groups(), "fine", N_FINE, N_COARSE, resamples=50, seed=7)
    assert np.all(a["forget_fine"] == 100) and np.all(a["retain_fine"] == 0)  # no resample mixes D_f and D_r
    assert all(np.array_equal(a[k], b[k], equal_nan=True) for k in a)


def _reps(**values) -> dict:
    """Two bootstrap replicates per key: ``key=(a, b)``; every metric not given is (0, 0)."""
    return {k: np.array(values.get(k, (0.0, 0.0)), dtype=float) for k in ("forget_fine", *METRICS, *values)}


def test_aggregate_by_hand():
    """Each seed's replicates are centred on that seed's full-test value, pooled, and cut at 2.5 / 97.5 %."""
    records = [{"seed": 3, "qu": 80.0, "unlearned": {"forget_fine": 10.0, "zero_shot": 97.0}},
               {"seed": 4, "qu": 100.0, "unlearned": {"forget_fine": 30.0, "zero_shot": 99.0}}]
    for r in records:
        r.update({m: r.get(m, 0.0) for m in METRICS})
    # qu: seed 3's replicates (70, 90) already centre on 80; seed 4's (85, 95) centre on 90 and move to (95, 105).
    # Pooled (70, 90, 95, 105): numpy's linear percentiles at 2.5 % and 97.5 % fall at positions 0.075 and 2.925,
    # i.e. 70 + 0.075 * 20 = 71.5 and 95 + 0.925 * 10 = 104.25; the value is the mean of 80 and 100.
    # forget_fine: (0, 0) moved to seed 3's 10 and seed 4's 30 -> pooled (10, 10, 30, 30): positions 0.075 and 2.925 fall
    # between equal values, so the interval is [10, 30].
    agg = aggregate(records, [_reps(qu=(70, 90)), _reps(qu=(85, 95))])
    assert agg["mean"]["qu"] == 90.0
    assert agg["interval"]["qu"] == pytest.approx({"low": 71.5, "high": 104.25, "half_width": 16.375})
    assert agg["mean"]["forget_fine"] == 20.0
    assert agg["interval"]["forget_fine"] == {"low": 10.0, "high": 30.0, "half_width": 10.0}
    assert agg["mean"]["zero_shot"] == 98.0 and "zero_shot" not in agg["interval"]  # no zero-shot replicates: a mean only
    assert agg["seed"] == 3 and agg["seeds"] == records


def test_a_nan_metric_has_a_nan_interval():
    orig = _hits(np.r_[np.zeros(5), np.ones(15)], np.ones(20))  # the original never knew the concept: Q-U* is nan
    reps = paired_replicates(orig, orig, _groups(), "fine", N_FINE, N_COARSE, resamples=20, seed=0)
    agg = aggregate([_record(reps, 0)], [reps])
    assert np.isnan(agg["interval"]["qu_ca"]["half_width"]) and not np.isnan(agg["interval"]["qu"]["half_width"])


def test_the_table_prints_mean_and_half_width():
    orig = {"forget_coarse": 90.0, "forget_fine": 80.0, "retain_coarse": 95.0, "retain_fine": 90.0, "zero_shot": 98.0}
    row = {"method": "ga", "unlearned": dict(orig), "quality": 1.0, "utility": 2.0, "qu": 3.0, "qu_ca": 4.0,
           "mean": {"qu": 97.84, "qu_ca": 99.1, "forget_fine": 1.5, "zero_shot": 97.62}, "seeds": [{"flags": {"collapsed": True}}, {}],
           "interval": {"qu": {"low": 97.4, "high": 98.2, "half_width": 0.4}, "qu_ca": {"low": 99.0, "high": 99.2, "half_width": 0.1},
                        "zero_shot": {"low": 97.2, "high": 98.0, "half_width": 0.4}}}
    table = text_table(orig, [row])
    assert "97.8 ± 0.4" in table and "99.1 ± 0.1" in table and "1.50" in table and "COLLAPSED" in table and "97.6 ± 0.4" in table
    one_seed = text_table(orig, [{k: v for k, v in row.items() if k not in ("mean", "interval", "seeds")}])
    assert "±" not in one_seed and one_seed.splitlines()[-1].split()[8] == "98.00"  # the zero-shot cell as before


def test_zero_shot_replicates_by_hand():
    # domain A all right (100 %), domain B all wrong (0 %): every resample's mean over domains is 50
    assert np.all(zero_shot_replicates([np.ones(4), np.zeros(2)], resamples=30) == 50.0)
    # one domain of 2 images, one right: a resample finds 0, 1 or 2 (probabilities 1/4, 1/2, 1/4)
    reps = zero_shot_replicates([np.array([1, 0])], resamples=2000, seed=1)
    assert set(np.unique(reps)) == {0.0, 50.0, 100.0} and np.mean(reps == 50.0) == pytest.approx(0.5, abs=0.04)
    assert np.array_equal(reps, zero_shot_replicates([np.array([1, 0])], resamples=2000, seed=1))
    with pytest.raises(ValueError, match="at least one domain"):
        zero_shot_replicates([])
    # pooled over two seeds like the world metrics: seed estimates 50 and 50, constant replicates -> [50, 50]
    orig = _hits(np.ones(20), np.ones(20))
    reps_world = paired_replicates(orig, orig, _groups(), "fine", N_FINE, N_COARSE, resamples=30, seed=0)
    with_zs = {**reps_world, "zero_shot": zero_shot_replicates([np.ones(4), np.zeros(2)], resamples=30)}
    agg = aggregate([_record(reps_world, 0, zero_shot=50.0), _record(reps_world, 1, zero_shot=50.0)], [with_zs, with_zs])
    assert agg["mean"]["zero_shot"] == 50.0 and agg["interval"]["zero_shot"] == {"low": 50.0, "high": 50.0, "half_width": 0.0}


def test_unlearn_over_two_seeds(tmp_path, capsys, monkeypatch):
    from ktmu.engine.forget_set import ForgetSet

    drawn = []
    original = ForgetSet.from_request.__func__

    def spy(cls, request, train, preprocess, max_per_concept=150, seed=0, progress=False, replay=None):
        fs = original(cls, request, train, preprocess, max_per_concept, seed, progress, replay)
        drawn.append((seed, tuple(fs.source.indices.tolist())))
        return fs

    monkeypatch.setattr(ForgetSet, "from_request", classmethod(spy))
    out = tmp_path / "run"
    assert main(["unlearn", "--model", "tiny-clip", "--force", "--method", "ga", "--forget", "shirt", "--out", str(out),
                 "--epochs", "1", "--max-per-concept", "10", "--seeds", "2", "--seed", "3", "--quiet"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert [s["seed"] for s in res["seeds"]] == [3, 4] and res["seed"] == 3
    assert [d[0] for d in drawn] == [3, 4] and drawn[0][1] != drawn[1][1]  # two different forget sets
    assert res["quality"] == res["seeds"][0]["quality"] and res["weights"].endswith("model.safetensors")
    assert res["seeds"][1]["config"]["train"]["seed"] == 4
    finite = [k for k, iv in res["interval"].items() if iv["half_width"] is not None]  # an undefined interval is null
    assert {"qu", "quality", "utility", "forget_fine"} <= set(finite)  # how they are pooled: test_aggregate_by_hand
    # the zero-shot accuracy (digits, tiny-clip's default other domain) gets an interval too
    assert res["interval"]["zero_shot"]["half_width"] > 0
    lines = capsys.readouterr().out.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("method"))
    row = lines[head + 3]  # header, rule, original, ga
    assert row.startswith("ga") and f"{res['mean']['zero_shot']:.1f} ± {res['interval']['zero_shot']['half_width']:.1f}" in row


def test_bench_over_two_seeds_and_resume_keys_on_them(tmp_path, capsys):
    out = tmp_path / "bench"
    args = ["bench", "--model", "tiny-clip", "--force", "--methods", "ga", "--epochs", "1", "--max-per-concept", "10",
            "--out", str(out), "--quiet"]
    assert main(args + ["--seeds", "2"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert len(res["rows"][0]["seeds"]) == 2 and "interval" in res["rows"][0]
    assert "±" in (out / "table.md").read_text() and "±" in capsys.readouterr().out
    assert main(args + ["--seeds", "3"]) == 2  # another number of seeds is another bench, not a resume
    assert "seeds" in capsys.readouterr().err


def test_seeds_must_be_positive(tmp_path, capsys):
    assert main(["unlearn", "--model", "tiny-clip", "--out", str(tmp_path / "r"), "--seeds", "0", "--quiet"]) == 2
    assert "--seeds must be at least 1" in capsys.readouterr().err
