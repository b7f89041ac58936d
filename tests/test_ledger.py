"""The ledger a checkpoint carries, requests on a model that forgot before, and cumulative scores against the base (hand-worked)."""
from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest
import torch

from ktmu.engine.forget_set import ForgetSet
from ktmu.engine.ledger import (METADATA_KEY, BaseModel, Ledger, LedgerEntry, LedgerError, absolute_spec, architecture_of, ledger_metadata,
                                read_ledger, sidecar_path, weights_sha256, with_checkpoint, write_sidecar)
from ktmu.engine.request import RequestError, UnlearningRequest
from ktmu.evaluation.cumulative import aggregate_cumulative, concept_accuracies, concept_scores, cumulative_summary
from ktmu.evaluation.protocol import UnlearningEvaluator
from ktmu.evaluation.seeds import METRICS
from ktmu.evaluation.zero_shot import WorldEval
from ktmu.methods import build_method

SHA = "ab" * 32


def entry(concepts=("shirt",), date="2025-01-15T09:00:00+00:00", **kw) -> LedgerEntry:
    values = dict(world="toy", goal="fine", concepts=tuple(concepts), forget_fine=tuple(concepts), forget_coarse=(), level=None,
                  method="nhl-kl", hyperparameters={"margin": 2.0, "kl_coarse_weight": None}, train={"lr": 1e-4, "epochs": 10}, seed=0,
                  forget_set_size=10, max_per_concept=10, forced=False, weights_sha256=SHA, commit="abc123", ktmu_version="0.2.0",
                  date=date)
    return LedgerEntry(**{**values, **kw})


def ledger(*entries: LedgerEntry) -> Ledger:
    return Ledger(BaseModel("tiny-clip", "tiny-clip", "cd" * 32), tuple(entries or (entry(),)))


# ---- the ledger itself ----------------------------------------------------------------------------------------------
def test_the_ledger_round_trips_through_the_checkpoint_and_its_sidecar(tiny_backbone, tmp_path):
    history = ledger(entry(), entry(("coat",), date="2025-03-02T10:00:00+00:00", seed=1))
    path = tmp_path / "model.safetensors"
    tiny_backbone.save_weights(path, metadata={"format": "ktmu-unlearned", **ledger_metadata(history)})
    assert read_ledger(path) == Ledger(history.base, tuple(LedgerEntry(**{**e.__dict__, "date": None}) for e in history.requests))
    write_sidecar(path, history)
    assert sidecar_path(path) == tmp_path / "model.ledger.json"
    assert read_ledger(path) == history  # the dates come from the sidecar
    assert read_ledger(tmp_path / "none.safetensors") == Ledger() and Ledger().empty  # a missing file: its loader says so


def test_the_date_stays_out_of_the_weights_so_the_same_run_writes_the_same_bytes(tiny_backbone, tmp_path):
    digests = []
    for i, date in enumerate(("2025-01-15T09:00:00+00:00", "2026-07-01T00:00:00+00:00")):
        path = tmp_path / f"{i}.safetensors"
        tiny_backbone.save_weights(path, metadata=ledger_metadata(ledger(entry(date=date))))
        digests.append(hashlib.sha256(path.read_bytes()).hexdigest())
    assert digests[0] == digests[1]
    assert ledger_metadata(Ledger()) == {}  # a model no request changed carries no ledger


def _saved(tiny_backbone, tmp_path, history: Ledger):
    path = tmp_path / "model.safetensors"
    tiny_backbone.save_weights(path, metadata=ledger_metadata(history))
    write_sidecar(path, history)
    return path


def test_a_hand_edited_sidecar_is_refused_naming_the_field(tiny_backbone, tmp_path):
    path = _saved(tiny_backbone, tmp_path, ledger())
    side = json.loads(sidecar_path(path).read_text())
    side["requests"][0]["concepts"] = ["coat"]
    sidecar_path(path).write_text(json.dumps(side))
    with pytest.raises(LedgerError, match=r"differs from the ledger inside .* at requests\[0\]\.concepts\[0\] \('coat' there, 'shirt' in the "
                                          r"checkpoint\): it was edited by hand"):
        read_ledger(path)
    side["requests"][0]["concepts"], side["requests"][0]["date"] = ["shirt"], "2099-01-01"  # a date alone is the sidecar's to say
    sidecar_path(path).write_text(json.dumps(side))
    assert read_ledger(path).requests[0].date == "2099-01-01"
    sidecar_path(path).write_text("{not json")
    with pytest.raises(LedgerError, match="not valid JSON"):
        read_ledger(path)


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["requests"][0].update(seed="abc"), r"requests\[0\]\.seed must be a whole number >= 0, got 'abc'"),
    (lambda d: d["requests"][0].update(weights_sha256="xyz"), r"requests\[0\]\.weights_sha256 must be 64 hex digits"),
    (lambda d: d["requests"][0].pop("method"), r"requests\[0\] lacks the field 'method'"),
    (lambda d: d["requests"][0].update(colour="red"), r"requests\[0\] has unknown field 'colour'"),
    (lambda d: d["base"].update(sha256=1), r"base\.sha256 must be 64 hex digits"),
    (lambda d: d.update(version=2), "this ktmu reads ledger version 1 .* upgrade ktmu"),
    (lambda d: d.update(base=None), "base is missing, but the ledger holds 1 request"),
    (lambda d: d.update(requests={}), "requests must be a list"),
])
def test_a_corrupt_ledger_inside_the_checkpoint_names_the_field(tiny_backbone, tmp_path, edit, message):
    raw = ledger().to_json(dated=False)
    edit(raw)
    path = tmp_path / "model.safetensors"
    tiny_backbone.save_weights(path, metadata={METADATA_KEY: json.dumps(raw)})
    with pytest.raises(LedgerError, match=message):
        read_ledger(path)


def test_a_sidecar_beside_a_checkpoint_without_a_ledger_is_refused(tiny_backbone, tmp_path):
    path = _saved(tiny_backbone, tmp_path, ledger())
    tiny_backbone.save_weights(path)  # the weights replaced by a model without a ledger
    with pytest.raises(LedgerError, match="holds a ledger but .* carries none"):
        read_ledger(path)


def test_weights_digest_specs_and_architectures():
    a = {"w": torch.arange(6.0).reshape(2, 3), "n": torch.tensor(3)}
    assert weights_sha256(a) == weights_sha256({"n": torch.tensor(3), "w": torch.arange(6.0).reshape(2, 3)})  # order does not count
    assert weights_sha256(a) != weights_sha256({**a, "w": a["w"].reshape(3, 2)})  # shape does
    assert weights_sha256(a) != weights_sha256({**a, "w": a["w"] + 1e-6})
    assert architecture_of("mini-clip:runs/a/model.safetensors") == "mini-clip" == architecture_of("mini-clip:without-shirt")
    assert architecture_of("open_clip:ViT-B-32:openai") == "open_clip:ViT-B-32" and architecture_of("hf:/m/clip") == "hf"
    assert with_checkpoint("mini-clip", "s/1/model.safetensors") == "mini-clip:s/1/model.safetensors"
    assert with_checkpoint("mini-clip:old.safetensors", "new.safetensors") == "mini-clip:new.safetensors"
    assert with_checkpoint("open_clip:ViT-B-32:openai", "c.safetensors") == "open_clip:ViT-B-32:c.safetensors"
    assert with_checkpoint("hf:/m/clip", "c.safetensors") == "hf:/m/clip:c.safetensors"
    assert absolute_spec("tiny-clip") == "tiny-clip" and absolute_spec("tiny-clip:a.safetensors").startswith("tiny-clip:/")


def test_a_ledger_knows_which_request_holds_a_concept():
    history = ledger(entry(), entry(("footwear",), goal="coarse", forget_fine=("sneaker", "sandal")), entry(("x",), world="other"))
    assert history.concepts_in("toy") == ("shirt", "footwear") and history.other_worlds("toy") == ["other"]
    assert history.holding("toy", "shirt") == 1 and history.holding("toy", "sandal") == 2 and history.holding("toy", "coat") is None


# ---- a request on a model that forgot before -------------------------------------------------------------------------
def test_earlier_concepts_count_among_the_forgotten_classes_but_not_the_forget_set(toy_world):
    plain = UnlearningRequest.parse(toy_world, ["coat"])
    after = UnlearningRequest.parse(toy_world, ["coat"], also_forgotten=["blouse"])  # an alias resolves
    assert after.also_forgotten == ("shirt",) and after.forget_fine == plain.forget_fine == [1]
    assert after.forgotten_fine_classes == [0, 1] and plain.forgotten_fine_classes == [1]
    assert "also_forgotten" not in plain.describe() and after.describe()["also_forgotten"] == ["shirt"]
    assert after.together().concepts == ("shirt", "coat") and after.together().goal == "fine"
    mixed = UnlearningRequest.parse(toy_world, ["coat"], also_forgotten=["footwear"])
    assert mixed.forgotten_fine_classes == [1, 2, 3] and mixed.forgotten_coarse_classes == [1] and mixed.forget_coarse == []
    assert mixed.together().goal == "hybrid" and mixed.together().forget_fine == [1, 2, 3]
    with pytest.raises(RequestError, match="every fine concept of world 'toy' together with the concepts forgotten before"):
        UnlearningRequest.parse(toy_world, ["coat"], also_forgotten=["shirt", "sneaker", "sandal"])


def test_no_coat_image_may_be_pushed_onto_the_shirt_forgotten_before(toy_world, toy_train, tiny_backbone):
    """Logits (shirt 5, coat 2, sneaker 1, sandal 0) on a coat image: already 3 below the best *other* class, but that class is shirt."""
    plain = ForgetSet.from_request(UnlearningRequest.parse(toy_world, ["coat"]), toy_train, tiny_backbone.preprocess)
    after = ForgetSet.from_request(UnlearningRequest.parse(toy_world, ["coat"], also_forgotten=["shirt"]), toy_train, tiny_backbone.preprocess)
    assert plain.fine_classes.tolist() == [False, True, False, False] and after.fine_classes.tolist() == [True, True, False, False]
    assert torch.equal(plain.source.fine, after.source.fine)  # the same forget images: coats only
    logits = torch.tensor([[5.0, 2.0, 1.0, 0.0]])
    nhl = build_method("nhl-kl", kl_weight=0.0)
    pos = torch.tensor([0])
    # without the ledger the hinge is satisfied: 2 - 5 + 2 < 0; with it, max(shirt, coat) = 5 must trail sneaker's 1 by 2: 5 - 1 + 2 = 6
    assert float(nhl.loss(plain.batch(pos, logits, torch.zeros(1, 2), ref_fine_logits=logits, ref_coarse_logits=torch.zeros(1, 2)))["hinge"]) == 0
    assert float(nhl.loss(after.batch(pos, logits, torch.zeros(1, 2), ref_fine_logits=logits, ref_coarse_logits=torch.zeros(1, 2)))["hinge"]) == 6


def test_d_r_leaves_out_the_images_of_concepts_forgotten_before(toy_world, toy_train, tiny_backbone):
    plain = UnlearningEvaluator(UnlearningRequest.parse(toy_world, ["coat"]), toy_train, [], tiny_backbone.preprocess)
    after = plain.with_request(UnlearningRequest.parse(toy_world, ["coat"], also_forgotten=["shirt"]))
    assert np.array_equal(plain.d_r, ~plain.d_f) and np.array_equal(after.d_f, plain.d_f)
    assert after.d_r.sum() == 20 and not after.d_r[toy_train.fine_labels == 0].any()  # sneakers and sandals only
    scores = after.evaluate(tiny_backbone)
    assert scores["d_r_test_images"] == 20 and plain.score(after.last, after.last_others)["d_r_test_images"] == 30


# ---- cumulative scores (hand-worked) ---------------------------------------------------------------------------------
def _eval(fine_pred: list[int], coarse_pred: list[int]) -> WorldEval:
    """Five test images per concept of the toy world (shirt, coat, sneaker, sandal; coarse top, top, footwear, footwear)."""
    fine = torch.tensor([0] * 5 + [1] * 5 + [2] * 5 + [3] * 5)
    coarse = torch.tensor([0] * 10 + [1] * 10)
    return WorldEval(torch.tensor(fine_pred), torch.tensor(coarse_pred), fine, coarse, torch.full((20, 4), 0.25), ["shirt", "coat", "sneaker", "sandal"])


def test_each_concepts_accuracy_and_quality_against_the_base(toy_world):
    base = _eval([0, 0, 0, 0, 1] + [1] * 5 + [2] * 5 + [3] * 5, [0] * 10 + [1] * 9 + [0])
    now = _eval([0, 1, 1, 1, 1] + [0] * 5 + [2] * 5 + [3] * 5, [0] * 10 + [1] * 5 + [0] * 5)
    b, n = concept_accuracies(base, toy_world, ["shirt", "coat", "footwear"]), concept_accuracies(now, toy_world, ["shirt", "coat", "footwear"])
    assert b["shirt"] == {"level": "fine", "images": 5, "acc": 80.0} and n["shirt"]["acc"] == 20.0 and n["coat"]["acc"] == 0.0
    assert b["footwear"] == {"level": "coarse", "images": 10, "acc": 90.0} and n["footwear"]["acc"] == 50.0  # coarse accuracy of its children
    scores = concept_scores(b, n, {"shirt": 1, "coat": 2, "footwear": 3})
    assert scores["shirt"]["quality"] == 75.0 and scores["coat"]["quality"] == 100.0  # (80 - 20) / 80; (100 - 0) / 100
    assert math.isclose(scores["footwear"]["quality"], 100 * 40 / 90) and scores["coat"]["request"] == 2


def test_the_cumulative_summary_is_the_studys_metrics_of_every_request_together_and_the_zero_shot_drop():
    base = {"forget_fine": 85.0, "forget_coarse": 98.0, "retain_fine": 95.0, "retain_coarse": 98.0, "zero_shot": 98.8}
    now = {"forget_fine": 1.7, "forget_coarse": 98.0, "retain_fine": 95.0, "retain_coarse": 88.2, "zero_shot": 95.1}
    out = cumulative_summary(base, now, "fine", 10, 5)
    assert math.isclose(out["quality"], 98.0) and math.isclose(out["utility"], (100 + 90 + 100) / 3)  # 88.2 / 98 = 0.9 of D_r coarse kept
    assert math.isclose(out["zero_shot_drop"], 3.7)


def test_cumulative_records_over_seeds_mean_each_concept_and_mirror_the_zero_shot_interval():
    def record(shirt: float, zero_shot: float) -> dict:
        return {"base": {"zero_shot": 98.0}, "unlearned": {"zero_shot": zero_shot, "forget_fine": shirt}, **dict.fromkeys(METRICS, 90.0),
                "zero_shot_drop": 98.0 - zero_shot, "concepts": {"shirt": {"unlearned": shirt, "quality": 100 - shirt}}}

    flat = {k: np.full(20, 90.0) for k in METRICS}
    reps = [{**flat, "forget_fine": np.full(20, s), "zero_shot": np.array([z - 1.0, z + 1.0] * 10)} for s, z in ((2.0, 96.0), (4.0, 94.0))]
    out = aggregate_cumulative([record(2.0, 96.0), record(4.0, 94.0)], reps)
    assert "seeds" not in out and out["concepts_mean"] == {"shirt": {"unlearned": 3.0, "quality": 97.0}}
    assert out["mean"]["zero_shot"] == 95.0 and out["mean"]["zero_shot_drop"] == 3.0
    iv, drop = out["interval"]["zero_shot"], out["interval"]["zero_shot_drop"]
    assert drop["low"] == 98.0 - iv["high"] and drop["high"] == 98.0 - iv["low"] and drop["half_width"] == iv["half_width"]


# ---- replay and anchor: how a later request keeps the earlier ones -------------------------------------------------
def test_replay_redraws_exactly_the_forget_set_each_earlier_request_trained_on(toy_world, toy_train):
    from ktmu.engine.request import forget_set_indices
    from ktmu.workflows.lineage import replay_indices

    shirt = forget_set_indices(UnlearningRequest.parse(toy_world, ["shirt"]), toy_train, 4, 3)  # 4 of the 10 shirts, seed 3
    sandal = forget_set_indices(UnlearningRequest.parse(toy_world, ["sandal"]), toy_train, 10, 1)
    history = ledger(entry(max_per_concept=4, seed=3, forget_set_size=4), entry(("sandal",), forget_set_size=10, seed=1),
                     entry(("shirt",), world="elsewhere", forget_set_size=99))  # another world's request is not replayed
    idx = replay_indices(history, toy_train)
    assert idx.tolist() == sorted(set(shirt) | set(sandal)) and len(idx) == 14 and set(toy_train.fine_labels[idx]) == {0, 3}
    assert set(shirt) <= set(range(10)) and len(set(shirt)) == 4  # a seeded draw of the shirts, not the first four
    assert replay_indices(Ledger(), toy_train).tolist() == []
    with pytest.raises(LedgerError, match="trained on 5 forget images, but its forget set redrawn from this train split has 4.*--no-replay"):
        replay_indices(ledger(entry(max_per_concept=4, forget_set_size=5)), toy_train)


def test_replayed_images_follow_the_requests_own_and_keep_every_forgotten_coarse_label_forgotten(toy_world, toy_train, tiny_backbone):
    """Forget sneaker after a coarse request forgot 'top' (shirt and coat): 10 sneakers, then 4 replayed shirts and 4 coats."""
    from ktmu.engine.request import forget_set_indices

    request = UnlearningRequest.parse(toy_world, ["sneaker"], also_forgotten=["top"])
    tops = forget_set_indices(UnlearningRequest.parse(toy_world, ["top"], "coarse"), toy_train, 4, 0)
    plain = ForgetSet.from_request(request, toy_train, tiny_backbone.preprocess, max_per_concept=10)
    fs = ForgetSet.from_request(request, toy_train, tiny_backbone.preprocess, max_per_concept=10, replay=np.concatenate([tops, [20, 21]]))
    assert (len(plain), plain.own, plain.replayed, plain.describe()) == (10, 10, 0, "10 images")
    assert (len(fs), fs.own, fs.replayed) == (18, 10, 8) and fs.describe() == "10 images (+ 8 of earlier requests, replayed)"  # 20, 21: own
    assert fs.fine.tolist() == [2] * 10 + [0] * 4 + [1] * 4 and torch.equal(fs.source.images(range(10)), plain.source.images(range(10)))
    assert fs.forget_coarse.tolist() == [False] * 10 + [True] * 8  # a sneaker keeps "footwear"; a replayed top stays un-"top"ped
    assert fs.fine_classes.tolist() == [True, True, True, False] and fs.coarse_classes.tolist() == [True, False]


def test_an_unknown_anchor_is_refused_with_did_you_mean():
    from ktmu.errors import UsageError
    from ktmu.workflows.lineage import HistoryOptions

    assert HistoryOptions().record(3) == {"replay": True, "replay_images": 3, "anchor": "base"}
    with pytest.raises(UsageError, match=r"unknown --anchor 'bas'\. Did you mean 'base'\? Use one of base, previous\."):
        HistoryOptions(anchor="bas")
