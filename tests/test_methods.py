"""Contract tests run over every registered method on a tiny random model."""
import pytest
import torch

import ktmu.train as train_mod
from ktmu.methods import METHODS, Batch, build_method
from ktmu.request import UnlearningRequest
from ktmu.train import ForgetSet, TrainConfig, unlearn


def _forget_set(backbone, world, train, names=("shirt",), goal="fine"):
    return ForgetSet.from_request(UnlearningRequest.parse(world, list(names), goal), train, backbone.preprocess)


def _batch(requires_grad=True, forget_coarse=(False, False, True)):
    gen = torch.Generator().manual_seed(0)
    fine = torch.randn(3, 4, generator=gen).requires_grad_(requires_grad)
    coarse = torch.randn(3, 2, generator=gen).requires_grad_(requires_grad)
    return Batch(
        fine, coarse, torch.tensor([0, 1, 2]), torch.tensor([0, 0, 1]), torch.tensor(forget_coarse),
        ref_fine_logits=torch.randn(3, 4, generator=gen), ref_coarse_logits=torch.randn(3, 2, generator=gen), generator=gen,
    )


def test_nine_methods_registered():
    assert METHODS.names() == sorted(["ga", "gdiff", "ga-kl", "relabel", "salun", "me-gd", "task-vector", "npo-kl", "nhl-kl"])


def test_unknown_method_suggests():
    with pytest.raises(KeyError, match="Did you mean 'nhl-kl'"):
        build_method("nhl_kl")
    with pytest.raises(ValueError, match="no hyperparameter"):
        build_method("nhl-kl", margn=3)


@pytest.mark.parametrize("name", METHODS.names())
def test_loss_is_finite_scalar_with_gradient_on_logits(name):
    method = build_method(name)
    b = _batch()
    terms = method.loss(b)
    assert terms["loss"].dim() == 0 and torch.isfinite(terms["loss"])
    terms["loss"].backward()
    assert b.fine_logits.grad is not None and b.fine_logits.grad.abs().sum() > 0
    assert method.lr > 0 and method.epochs >= 1


@pytest.mark.parametrize("name", METHODS.names())
def test_methods_without_reference_never_read_it(name):
    method = build_method(name)
    b = _batch()
    if method.needs_reference:
        b.ref_fine_logits = b.ref_coarse_logits = None
        with pytest.raises(ValueError, match="original model"):
            method.loss(b)
    else:
        b.ref_fine_logits = b.ref_coarse_logits = None
        assert torch.isfinite(method.loss(b)["loss"])


def test_kl_methods_leave_the_forgotten_target_logit_to_the_forget_term():
    """With a zero margin-satisfied hinge, NHL+KL's gradient on the fine target logit is zero."""
    b = _batch()
    with torch.no_grad():
        b.fine_logits[:] = torch.tensor([[-9.0, 1, 2, 3], [1, -9.0, 2, 3], [1, 2, -9.0, 3]])
    build_method("nhl-kl").loss(b)["loss"].backward()
    assert torch.all(b.fine_logits.grad[torch.arange(3), b.fine_target] == 0)


def test_coarse_kept_terms_only_on_kept_samples():
    """GDiff descends on coarse CE where the coarse label is kept and ascends where it is forgotten."""
    b = _batch(forget_coarse=(False, False, True))
    build_method("gdiff").loss(b)["loss"].backward()
    g = b.coarse_logits.grad
    # descent on the kept target lowers the loss by raising its logit: negative gradient on the target
    assert g[0, 0] < 0 and g[1, 0] < 0
    # ascent on the forgotten coarse target: positive gradient on it
    assert g[2, 1] > 0


def test_task_vector_finalize_by_hand():
    tv = build_method("task-vector", scale=1.5)
    out = tv.finalize({"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(3)}, {"w": torch.tensor([2.0, 2.0]), "n": torch.tensor(5)})
    assert torch.equal(out["w"], torch.tensor([-0.5, 2.0])) and out["n"].item() == 5


def test_saliency_mask_keeps_top_fraction():
    from ktmu.methods.salun import saliency_mask

    grads = {"a": torch.tensor([0.1, -5.0, 0.2, 0.3]), "b": torch.tensor([[4.0, 0.0], [0.05, -0.01]])}
    masks = saliency_mask(grads, 0.25)  # 8 weights -> keep 2: |-5| and |4|
    assert masks["a"].tolist() == [False, True, False, False]
    assert masks["b"].tolist() == [[True, False], [False, False]]
    with pytest.raises(ValueError):
        saliency_mask(grads, 0.0)


@pytest.mark.parametrize("name", METHODS.names())
def test_trainer_contract(name, tiny_backbone, toy_world, toy_train, monkeypatch):
    """Weights change, frozen weights do not, the reference is built only when needed."""
    calls = []
    real = train_mod._reference
    monkeypatch.setattr(train_mod, "_reference", lambda *a, **k: calls.append(1) or real(*a, **k))
    backbone = tiny_backbone
    forget = _forget_set(backbone, toy_world, toy_train)
    before = {n: p.detach().clone() for n, p in backbone.model.named_parameters()}
    method = build_method(name)
    log = unlearn(backbone, method, forget, toy_world, TrainConfig(lr=1e-2, epochs=2, batch_size=4), progress=False)
    assert len(calls) == (1 if method.needs_reference else 0)
    assert len(log.epochs) == 2 and 1 <= log.selected_epoch <= 2
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in log.epochs)
    after = dict(backbone.model.named_parameters())
    frozen = [n for n in before if n.startswith(backbone.frozen_prefixes)]
    assert frozen and all(torch.equal(before[n], after[n]) for n in frozen)
    changed = [n for n in before if not torch.equal(before[n], after[n].detach())]
    assert changed, "unlearning changed no weight"
    if name == "salun":
        total = sum(before[n].numel() for n in before if n not in frozen)
        moved = sum(int((before[n] != after[n].detach()).sum()) for n in changed)
        assert moved <= 0.1 * total + 1  # only the salient 10 % may move


def test_selection_keeps_lowest_forget_accuracy_epoch(tiny_backbone, toy_world, toy_train):
    forget = _forget_set(tiny_backbone, toy_world, toy_train)
    log = unlearn(tiny_backbone, build_method("ga"), forget, toy_world, TrainConfig(lr=1e-2, epochs=3, batch_size=4), progress=False)
    accs = [r["forget_train_fine_acc"] for r in log.epochs]
    assert log.selected_epoch == accs.index(min(accs)) + 1
    assert train_mod.forget_scores(tiny_backbone, forget, toy_world)["score"] == pytest.approx(min(accs))


@pytest.mark.parametrize("name", ["nhl-kl", "npo-kl", "relabel"])
def test_multi_concept_request_runs_every_method_on_the_tiny_model(name, tiny_backbone, toy_world, toy_train):
    forget = _forget_set(tiny_backbone, toy_world, toy_train, names=("shirt", "footwear"), goal="hybrid")
    assert forget.fine_classes.tolist() == [True, False, True, True] and forget.coarse_classes.tolist() == [False, True]
    log = unlearn(tiny_backbone, build_method(name), forget, toy_world, TrainConfig(lr=1e-2, epochs=1, batch_size=8), progress=False)
    assert torch.isfinite(torch.tensor(log.epochs[0]["loss"]))
