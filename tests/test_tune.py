"""Learning-rate selection sees forget-set data only and follows its documented rule."""
import ktmu.runs.session as pipeline
from ktmu.runs.tune import tune_lr


def test_tune_never_loads_test_data_and_applies_the_rule(monkeypatch):
    splits = []
    real = pipeline.load_dataset
    monkeypatch.setattr(pipeline, "load_dataset", lambda name, split, **kw: splits.append(split) or real(name, split, **kw))
    session = pipeline.open_session(forget=["shirt"], model="tiny-clip", max_per_concept=8, progress=False, evaluate=False)
    assert splits == ["train"] and session.evaluator is None

    rows, chosen = tune_lr(session, "ga", lrs=[1e-1, 1e-6], epochs=1, threshold=100.0)
    assert [r.lr for r in rows] == [1e-6, 1e-1] and chosen == 1e-6  # everything "forgets": the smallest rate wins
    rows, chosen = tune_lr(session, "ga", lrs=[1e-6, 1e-1], epochs=1, threshold=-1.0)
    best = min(rows, key=lambda r: (r.score, r.lr))
    assert chosen == best.lr  # nothing reaches the threshold: the lowest score wins
    # the session is handed back at its original weights
    assert all((session.backbone.trainable_state_dict()[k] == v).all() for k, v in session.original_state.items())
