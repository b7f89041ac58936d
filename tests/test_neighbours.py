"""Neighbour exemplars: the draw, the record, the trainer's stream, and the errors before anything runs."""
import json

import numpy as np
import pytest
import torch

from fakes import nothing_written
from ktmu.cli import main
from ktmu.data import load_dataset
from ktmu.engine.config import TrainConfig
from ktmu.engine.core import TrainerCore
from ktmu.engine.neighbours import NeighbourSet, indices_sha256, neighbour_classes, neighbour_indices
from ktmu.engine.request import RequestError, UnlearningRequest, forget_set_indices
from ktmu.engine.trainer import ForgetSet, TrainingError, unlearn
from ktmu.methods import build_method

TINY = ["--model", "tiny-clip", "--force", "--quiet", "--max-per-concept", "10", "--epochs", "1", "--zero-shot", "none"]


@pytest.fixture(scope="module")
def fashion_train():
    return load_dataset("fashion", "train")


def test_sibling_neighbours_are_the_forgotten_concepts_siblings_and_all_is_every_kept_concept(fashion_train):
    world = fashion_train.hierarchy
    shirt = UnlearningRequest.parse(world, ["shirt"])
    names = lambda idx: [world.fine[i].name for i in idx]  # noqa: E731
    assert names(neighbour_classes(shirt, "siblings")) == ["t-shirt", "pullover", "coat"]
    assert len(neighbour_classes(shirt, "all")) == 9


def test_the_draw_is_disjoint_from_the_forget_set_seeded_and_k_per_concept(fashion_train):
    shirt = UnlearningRequest.parse(fashion_train.hierarchy, ["shirt"])
    idx = neighbour_indices(shirt, fashion_train, 16, "siblings", seed=0)
    labels = np.asarray(fashion_train.fine_labels)[idx]
    assert sorted(np.unique(labels, return_counts=True)[1].tolist()) == [16, 16, 16]
    assert not set(idx.tolist()) & set(forget_set_indices(shirt, fashion_train, 150, 0).tolist())
    assert np.array_equal(idx, neighbour_indices(shirt, fashion_train, 16, "siblings", seed=0))  # a pure function of its inputs
    other = neighbour_indices(shirt, fashion_train, 16, "siblings", seed=1)
    assert not np.array_equal(idx, other)
    assert len(neighbour_indices(shirt, fashion_train, 4, "siblings", 0)) == 12
    assert indices_sha256(np.array([3, 1, 2])) == indices_sha256(np.array([1, 2, 3]))  # the hash is of the sorted list
    assert len(neighbour_indices(shirt, fashion_train, 0)) == 0


def test_too_many_neighbours_and_no_siblings_say_what_to_do(fashion_train):
    world = fashion_train.hierarchy
    with pytest.raises(RequestError, match=r"'t-shirt', which has only 6000; use --neighbours 6000 or fewer"):
        neighbour_indices(UnlearningRequest.parse(world, ["shirt"]), fashion_train, 6001)
    with pytest.raises(RequestError, match=r"'trouser' has no kept sibling.*--neighbours-scope all"):
        neighbour_indices(UnlearningRequest.parse(world, ["trouser"]), fashion_train, 4)
    assert len(neighbour_indices(UnlearningRequest.parse(world, ["trouser"]), fashion_train, 4, "all")) == 36


def _toy(tiny_backbone, toy_world, toy_train, k=3):
    request = UnlearningRequest.parse(toy_world, ["shirt"])
    forget = ForgetSet.from_request(request, toy_train, tiny_backbone.preprocess)
    return forget, NeighbourSet.from_request(request, toy_train, tiny_backbone.preprocess, k)


def test_methods_that_do_not_read_neighbours_train_exactly_as_without_them(tiny_backbone, toy_world, toy_train):
    """K > 0 changes nothing for a method that does not read the neighbours: the same weights, bit for bit."""
    forget, near = _toy(tiny_backbone, toy_world, toy_train)
    start = tiny_backbone.copy_trainable()
    cfg = TrainConfig(lr=1e-2, epochs=2, batch_size=4)
    unlearn(tiny_backbone, build_method("nhl-kl"), forget, toy_world, cfg, progress=False)
    plain = tiny_backbone.copy_trainable()
    tiny_backbone.load_trainable(start)
    unlearn(tiny_backbone, build_method("nhl-kl"), forget, toy_world, cfg, progress=False, neighbours=near)
    assert all(torch.equal(plain[k], v) for k, v in tiny_backbone.copy_trainable().items())


def test_a_method_that_needs_neighbours_refuses_to_run_without_them(tiny_backbone, toy_world, toy_train):
    forget, _ = _toy(tiny_backbone, toy_world, toy_train)
    with pytest.raises(TrainingError, match="add --neighbours K"):
        unlearn(tiny_backbone, build_method("merge-mmd"), forget, toy_world, TrainConfig(epochs=1, batch_size=4), progress=False)


def test_the_neighbour_stream_reads_every_neighbour_before_repeating(tiny_backbone, toy_world, toy_train, monkeypatch):
    import ktmu.methods.gdiff_retain as gdiff_retain

    seen = []
    real = gdiff_retain.neighbour_cross_entropy
    monkeypatch.setattr(gdiff_retain, "neighbour_cross_entropy", lambda nb: seen.append(nb.fine_target.tolist()) or real(nb))
    forget, near = _toy(tiny_backbone, toy_world, toy_train, k=5)  # 5 coats; 2 per step
    unlearn(tiny_backbone, build_method("gdiff-retain"), forget, toy_world,
            TrainConfig(lr=1e-3, epochs=1, batch_size=4, neighbour_batch_size=2), progress=False, neighbours=near)
    coat = toy_world.index(toy_world.find("coat"))
    assert len(seen) == 3 and all(t == [coat, coat] for t in seen)  # 10 shirts / 4 per step; each step 2 coats


def test_sharpness_aware_step_moves_the_weights_back_and_takes_the_ascended_gradient():
    w = torch.nn.Parameter(torch.tensor([1.0, 0.0]))

    class Tiny:
        device = torch.device("cpu")
        needs_grad_scaler = False

    core = TrainerCore(Tiny(), {"w": w}, lr=0.1)
    loss = lambda: (w ** 4).sum()  # noqa: E731
    core.backward(loss())
    with core.perturbed(0.5):
        assert w.detach().tolist() == pytest.approx([1.5, 0.0])  # 1 + 0.5 * g / |g|, g = (4, 0)
        core.backward(loss())
    assert w.detach().tolist() == [1.0, 0.0] and w.grad.tolist() == pytest.approx([4 * 1.5 ** 3, 0.0])


def test_the_simulated_relearning_attack_leaves_the_weights_where_they_were(tiny_backbone, toy_world, toy_train):
    """tar-merge-mmd with a zero tamper weight trains bit for bit as merge-mmd: the attack's steps are undone; with weight 1 it differs."""
    forget, near = _toy(tiny_backbone, toy_world, toy_train)
    start = tiny_backbone.copy_trainable()
    cfg = TrainConfig(lr=1e-3, epochs=2, batch_size=4)
    runs = {}
    for name, kw in (("merge-mmd", {}), ("tar-merge-mmd", {"tamper_weight": 0.0}), ("tar", {"tamper_weight": 1.0})):
        tiny_backbone.load_trainable(start)
        method = build_method("tar-merge-mmd" if name == "tar" else name, **kw)
        unlearn(tiny_backbone, method, forget, toy_world, cfg, progress=False, neighbours=near)
        runs[name] = tiny_backbone.copy_trainable()
    assert all(torch.equal(runs["merge-mmd"][k], v) for k, v in runs["tar-merge-mmd"].items())
    assert any(not torch.equal(runs["merge-mmd"][k], v) for k, v in runs["tar"].items())


def test_the_simulated_attack_runs_on_every_nth_step_with_its_share_of_the_neighbours(tiny_backbone, toy_world, toy_train, monkeypatch):
    """adversary_every / adversary_neighbours: which steps are attacked and what each pass encodes (forget, neighbour images)."""
    from ktmu.engine.trainer import StepInputs

    forget, near = _toy(tiny_backbone, toy_world, toy_train, k=5)  # 10 shirts, 4 per step: 3 steps per epoch of 4, 4, 2
    real, passes = StepInputs.batch, []

    def spy(self, images, positions, template, near=None):  # noqa: ANN001, ANN202
        passes.append((len(images), 0 if near is None else len(near[0])))
        return real(self, images, positions, template, near)

    monkeypatch.setattr(StepInputs, "batch", spy)
    cfg = TrainConfig(lr=1e-3, epochs=2, batch_size=4, neighbour_batch_size=4)
    start = tiny_backbone.copy_trainable()
    for every, share in ((1, 0), (2, 3)):
        passes.clear()
        tiny_backbone.load_trainable(start)
        method = build_method("tar-merge-mmd", adversary_steps=2, adversary_every=every, adversary_neighbours=share)
        unlearn(tiny_backbone, method, forget, toy_world, cfg, progress=False, neighbours=near)
        attack = (4 if share == 0 else 3)
        step = [(4, 4)]  # the step's own pass: its forget images with the whole neighbour batch
        attacked = step + [(2, attack)] * 2 + [(2, 0)]  # two attack steps on half the images, the tamper pass without neighbours
        last = [(2, 4)] + [(1, attack)] * 2 + [(1, 0)]  # the 2-image step splits 1 / 1
        epoch1 = attacked + attacked + last if every == 1 else attacked + step + last  # steps 0, 1, 2 (every 2: 0 and 2 attacked)
        epoch2 = attacked + attacked + last if every == 1 else step + attacked + [(2, 4)]  # steps 3, 4, 5 (every 2: 4)
        assert passes == epoch1 + epoch2


def test_cli_refuses_a_neighbour_method_without_neighbours_in_one_line(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["unlearn", "--method", "merge-mmd", *TINY, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "merge-mmd" in err[0] and "--neighbours K" in err[0]
    assert nothing_written(out)


def test_a_bench_without_neighbours_leaves_out_the_methods_that_need_them_and_refuses_one_asked_for():
    from ktmu.methods import METHODS
    from ktmu.workflows.bench import bench_methods

    runs, skipped = bench_methods(None, 0)
    assert skipped == sorted(["gdiff-retain", "merge-mmd", "salun-retain", "scrub", "tar-merge-mmd"]) and set(runs) | set(skipped) == set(METHODS.names())
    assert bench_methods(None, 16) == (METHODS.names(), [])
    with pytest.raises(TrainingError, match="scrub"):
        bench_methods(["ga", "scrub"], 0)


def test_unlearn_with_neighbours_records_them_and_bench_refuses_a_neighbour_method_without_them(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["unlearn", "--method", "gdiff-retain", *TINY, "--neighbours", "2", "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    near = res["neighbours"]
    assert near["k"] == 2 and near["scope"] == "siblings" and near["images"] == 2 * 3 and len(near["sha256"]) == 64
    plain = tmp_path / "plain"
    assert main(["unlearn", "--method", "nhl-kl", *TINY, "--out", str(plain)]) == 0
    assert json.loads((plain / "results.json").read_text())["neighbours"] == {"k": 0, "scope": "siblings"}
    capsys.readouterr()
    assert main(["bench", *TINY, "--out", str(tmp_path / "b2"), "--methods", "merge-mmd"]) == 2
    assert "--neighbours K" in capsys.readouterr().err
