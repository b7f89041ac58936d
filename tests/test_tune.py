"""Learning-rate selection sees forget-set data only and follows its documented rule.

The rule (ktmu.workflows.tune): keep the smallest rate whose kept epoch brings the selection score to at
most ``threshold``; if none does, the one with the lowest score, the smallest of equal scores.
"""
import pytest
import torch

import ktmu.workflows.session as pipeline
import ktmu.workflows.tune as tune
from ktmu.engine.trainer import TrainLog
from ktmu.workflows.tune import tune_lr


@pytest.fixture(scope="module")
def session():
    return pipeline.open_session(forget=["shirt"], model="tiny-clip", max_per_concept=8, progress=False, evaluate=False)


def test_tune_never_loads_test_data_and_hands_the_session_back(monkeypatch):
    splits = []
    real = pipeline.load_dataset
    monkeypatch.setattr(pipeline, "load_dataset", lambda name, split, **kw: splits.append(split) or real(name, split, **kw))
    session = pipeline.open_session(forget=["shirt"], model="tiny-clip", max_per_concept=8, progress=False, evaluate=False)
    assert splits == ["train"] and session.evaluator is None
    before = session.backbone.trainable_state_dict()
    rows, _ = tune_lr(session, "ga", lrs=[1e-1, 1e-2], epochs=1)
    assert [r.lr for r in rows] == [1e-2, 1e-1] and splits == ["train"]
    after = session.backbone.trainable_state_dict()  # trained twice, handed back at its original weights
    assert all(torch.equal(after[k], before[k]) for k in before)


def _scripted(monkeypatch, outcomes: dict[float, tuple[float, int]]) -> list[float]:
    """Replace training by hand-built outcomes: lr -> (selection score of the kept epoch, kept epoch); returns the lrs run."""
    ran = []

    def fake_unlearn(backbone, method, forget, world, cfg, **kw):
        ran.append(cfg.lr)
        score, epoch = outcomes[cfg.lr]
        epochs = [{"selection_score": 99.0, "forget_train_coarse_acc": 0.0}] * (epoch - 1)
        return TrainLog(epochs=epochs + [{"selection_score": score, "forget_train_coarse_acc": 50.0 + epoch}], selected_epoch=epoch)

    monkeypatch.setattr(tune, "unlearn", fake_unlearn)
    return ran


@pytest.mark.parametrize("outcomes, threshold, chosen", [
    ({1e-2: (0.0, 1), 1e-5: (40.0, 2), 1e-3: (1.0, 1), 1e-4: (4.0, 3)}, 5.0, 1e-4),   # the smallest that forgets, not the lowest score
    ({1e-5: (40.0, 1), 1e-4: (5.0, 1)}, 5.0, 1e-4),                                    # "at most" the threshold counts
    ({1e-5: (40.0, 1), 1e-4: (5.0, 1)}, 4.9, 1e-4),                                    # none reaches 4.9: the lowest score
    ({1e-2: (20.0, 1), 1e-3: (10.0, 2), 1e-4: (10.0, 1), 1e-5: (40.0, 1)}, 5.0, 1e-4),  # lowest score tied: the smaller rate
])
def test_the_chosen_rate_follows_the_documented_rule(session, monkeypatch, outcomes, threshold, chosen):
    ran = _scripted(monkeypatch, outcomes)
    rows, got = tune_lr(session, "ga", lrs=list(outcomes), threshold=threshold)
    assert got == chosen
    assert ran == sorted(outcomes) and [r.lr for r in rows] == sorted(outcomes)
    for r in rows:  # each row is the kept epoch's: its number, its score, its forget-train coarse accuracy
        assert (r.score, r.epoch, r.forget_coarse) == (outcomes[r.lr][0], outcomes[r.lr][1], 50.0 + outcomes[r.lr][1])
