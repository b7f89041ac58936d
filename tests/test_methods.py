"""Contract tests run over every registered method on a tiny random model."""
import math

import pytest
import torch

import ktmu.engine.trainer as train_mod
from ktmu.methods import METHODS, Batch, build_method
from ktmu.engine.request import UnlearningRequest
from ktmu.methods.terms import forgotten_cross_entropy as forgotten_ce
from ktmu.methods.terms import hinge_below_best_other as hinge
from ktmu.methods.terms import npo as npo_term
from ktmu.methods.terms import over_forget_levels as over_levels
from ktmu.engine.trainer import ForgetSet, TrainConfig, unlearn


def _forget_set(backbone, world, train, names=("shirt",), goal="fine"):
    return ForgetSet.from_request(UnlearningRequest.parse(world, list(names), goal), train, backbone.preprocess)


def _batch(requires_grad=True, forget_coarse=(False, False, True), features=False):
    """Three samples, 4 fine / 2 coarse classes; with ``features`` the logits come from unit features, as in the trainer."""
    gen = torch.Generator().manual_seed(0)
    extra = {}
    if features:
        unit = lambda *s: torch.nn.functional.normalize(torch.randn(*s, generator=gen), dim=-1)  # noqa: E731
        img = unit(3, 8).requires_grad_(requires_grad)
        ft, ct, scale = unit(4, 8), unit(2, 8), torch.tensor(7.7)
        fine, coarse = scale * img @ ft.T, scale * img @ ct.T
        fine.retain_grad()
        extra = dict(image_features=img, ref_image_features=unit(3, 8), fine_text=ft, coarse_text=ct,
                     forgotten_name_text=unit(2, 8), logit_scale=scale)
    else:
        fine = torch.randn(3, 4, generator=gen).requires_grad_(requires_grad)
        coarse = torch.randn(3, 2, generator=gen).requires_grad_(requires_grad)
    return Batch(
        fine, coarse, torch.tensor([0, 1, 2]), torch.tensor([0, 0, 1]), torch.tensor(forget_coarse),
        ref_fine_logits=torch.randn(3, 4, generator=gen), ref_coarse_logits=torch.randn(3, 2, generator=gen), generator=gen, **extra,
    )


def test_the_studys_nine_methods_and_ours_are_registered():
    study = ["ga", "gdiff", "ga-kl", "relabel", "salun", "me-gd", "task-vector", "npo-kl", "nhl-kl"]
    assert METHODS.names() == sorted(study + ["simnpo", "feat-orth"])


def test_unknown_method_suggests():
    with pytest.raises(KeyError, match="Did you mean 'nhl-kl'"):
        build_method("nhl_kl")
    with pytest.raises(ValueError, match="no hyperparameter"):
        build_method("nhl-kl", margn=3)


@pytest.mark.parametrize("name", METHODS.names())
def test_loss_is_finite_scalar_with_gradient_on_logits(name):
    method = build_method(name)
    b = _batch(features=method.needs_features)
    terms = method.loss(b)
    assert terms["loss"].dim() == 0 and torch.isfinite(terms["loss"])
    terms["loss"].backward()
    moved = b.image_features if method.needs_features else b.fine_logits  # feature methods read features, not logits
    assert moved.grad is not None and moved.grad.abs().sum() > 0
    assert method.lr > 0 and method.epochs >= 1


@pytest.mark.parametrize("name", METHODS.names())
def test_methods_without_reference_never_read_it(name):
    method = build_method(name)
    b = _batch(features=method.needs_features)
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
    trained = {"w": torch.tensor([2.0, 2.0]), "n": torch.tensor(5)}
    tv.finalize_(trained, {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(3)})  # in place, where the weights live
    assert torch.equal(trained["w"], torch.tensor([-0.5, 2.0])) and trained["n"].item() == 5


def test_saliency_mask_is_exactly_the_top_fraction_on_a_tiny_model(tiny_backbone):
    """The bisection threshold keeps exactly the weights topk over all of them would keep."""
    from ktmu.methods.salun import saliency_mask

    gen = torch.Generator().manual_seed(0)
    grads = {n: torch.randn(p.shape, generator=gen) for n, p in tiny_backbone.named_trainable_parameters()}
    total = sum(g.numel() for g in grads.values())
    masks = saliency_mask(grads, 0.1)
    k = round(0.1 * total)
    assert sum(int(m.sum()) for m in masks.values()) == k
    top = torch.cat([g.abs().flatten() for g in grads.values()]).topk(k).values.min()
    assert all(torch.equal(masks[n], grads[n].abs() >= top) for n in grads)


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
    real = train_mod.compute_reference
    monkeypatch.setattr(train_mod, "compute_reference", lambda *a, **k: calls.append(1) or real(*a, **k))
    backbone = tiny_backbone
    forget = _forget_set(backbone, toy_world, toy_train)
    before = {n: p.detach().clone() for n, p in backbone.model.named_parameters()}
    method = build_method(name)
    log = unlearn(backbone, method, forget, toy_world, TrainConfig(lr=1e-2, epochs=2, batch_size=4), progress=False)
    assert len(calls) == (1 if (method.needs_reference or method.needs_features) else 0)
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


def test_build_method_checks_types_and_ranges_before_anything_loads():
    from ktmu.settings import SettingsError

    with pytest.raises(SettingsError, match="kl_weight expects a number, got 'abc'"):
        build_method("nhl-kl", kl_weight="abc")
    with pytest.raises(SettingsError, match="lr must be > 0"):
        build_method("ga", lr=0)
    with pytest.raises(SettingsError, match="epochs must be >= 1"):
        build_method("ga", epochs=0)
    with pytest.raises(SettingsError, match="no hyperparameter 'name'"):
        build_method("ga", name="gdiff")  # the method's name is not a hyperparameter
    with pytest.raises(SettingsError, match="Did you mean 'kl_weight'"):
        build_method("ga-kl", kl_wieght=1)


@pytest.mark.parametrize("name", METHODS.names())
def test_defaults_validate_and_validate_catches_later_edits(name):
    from ktmu.settings import SettingsError

    method = build_method(name)
    method.validate()
    method.lr = -1.0
    with pytest.raises(SettingsError, match="lr must be > 0"):
        method.validate()


# ---- the study's options (issue 8): defaults keep today's numbers, the options do what the study does ----------
@pytest.mark.parametrize("name, forget_term", [
    ("ga-kl", lambda b, m: -forgotten_ce(b)),
    ("npo-kl", lambda b, m: over_levels(b, lambda lv: npo_term(lv.logits, lv.ref_logits, lv.target, m.beta, lv.forgotten))),
    ("nhl-kl", lambda b, m: over_levels(b, lambda lv: hinge(lv.logits, lv.target, m.margin, lv.forgotten))),
])
def test_kl_methods_default_loss_is_bit_identical_to_one_kl_weight(name, forget_term):
    """kl_coarse_weight None: forget term + kl_weight * kl_on_retained, exactly as before the split."""
    from ktmu.methods.terms import kl_on_retained, kl_retained_parts

    b, m = _batch(requires_grad=False), build_method(name)
    assert m.kl_coarse_weight is None
    terms = m.loss(b)
    assert torch.equal(terms["loss"], forget_term(b, m) + m.kl_weight * kl_on_retained(b))
    fine, coarse = kl_retained_parts(b)
    split = build_method(name, kl_weight=20.0, kl_coarse_weight=5.0).loss(b)["loss"]
    assert split.item() == pytest.approx((forget_term(b, m) + 20 * fine.mean() + 5 * coarse.mean()).item(), rel=1e-6)
    same = build_method(name, kl_coarse_weight=m.kl_weight).loss(b)["loss"]  # equal weights: the same value up to rounding
    assert same.item() == pytest.approx(terms["loss"].item(), rel=1e-6)
    assert terms["kl"].item() == pytest.approx(terms["kl_fine"].item() + terms["kl_coarse"].item(), rel=1e-6)


def test_task_vector_coarse_weight_default_learns_the_forgotten_labels_only():
    from ktmu.methods.terms import forgotten_cross_entropy, keep_coarse_ce

    b = _batch(requires_grad=False)
    assert torch.equal(build_method("task-vector").loss(b)["loss"], forgotten_cross_entropy(b))
    study = build_method("task-vector", coarse_weight=-0.05).loss(b)  # the study: CE_f - 0.05 CE_c
    assert study["loss"].item() == pytest.approx((forgotten_cross_entropy(b) - 0.05 * keep_coarse_ce(b)).item(), rel=1e-6)


def test_study_selection_keeps_the_lowest_step_accuracy_strictly_without_an_extra_pass(tiny_backbone, toy_world, toy_train, monkeypatch):
    import ktmu.engine.selection as selection_mod

    monkeypatch.setattr(selection_mod, "forget_scores", lambda *a, **k: pytest.fail("the study's rule needs no extra pass"))
    forget = _forget_set(tiny_backbone, toy_world, toy_train)
    log = unlearn(tiny_backbone, build_method("ga"), forget, toy_world,
                  TrainConfig(lr=3e-2, epochs=4, batch_size=4, selection="study"), progress=False)
    accs = [r["forget_train_fine_acc_steps"] for r in log.epochs]
    assert [r["selection_score"] for r in log.epochs] == accs
    assert log.selected_epoch == accs.index(min(accs)) + 1  # strictly lower: the first of equal lows
    assert "lowest (strictly lower" in log.selection_rule


@pytest.mark.parametrize("name", ["relabel", "salun", "task-vector"])
def test_study_selection_keeps_the_highest_for_the_methods_its_code_does(name, tiny_backbone, toy_world, toy_train):
    forget = _forget_set(tiny_backbone, toy_world, toy_train)
    log = unlearn(tiny_backbone, build_method(name), forget, toy_world,
                  TrainConfig(lr=3e-2, epochs=4, batch_size=4, selection="study"), progress=False)
    accs = [r["forget_train_fine_acc_steps"] for r in log.epochs]
    assert log.selected_epoch == len(accs) - accs[::-1].index(max(accs))  # ">= best so far": the last of equal highs
    assert name in train_mod.STUDY_KEEPS_HIGHEST and "highest (>= best so far)" in log.selection_rule


def test_study_step_accuracy_is_the_fine_accuracy_of_the_training_logits(tiny_backbone, toy_world, toy_train, monkeypatch):
    """The epoch average counts each forget image once, under the logits the step trained on."""
    seen = []
    real = ForgetSet.batch

    def spy(self, positions, fine_logits, coarse_logits, **kw):
        seen.append(int((fine_logits.argmax(1) == self.fine[positions]).sum()))
        return real(self, positions, fine_logits, coarse_logits, **kw)

    monkeypatch.setattr(ForgetSet, "batch", spy)
    forget = _forget_set(tiny_backbone, toy_world, toy_train)
    log = unlearn(tiny_backbone, build_method("ga"), forget, toy_world, TrainConfig(lr=1e-2, epochs=1, batch_size=4, selection="study"),
                  progress=False)
    assert log.epochs[0]["forget_train_fine_acc_steps"] == pytest.approx(100 * sum(seen) / len(forget))


def test_schedule_cosine_epoch_and_adam_eps_reach_the_optimizer(tiny_backbone, toy_world, toy_train, monkeypatch):
    groups = []
    real = torch.optim.AdamW.step

    def step(self, *a, **k):
        groups.append((self.param_groups[0]["lr"], self.param_groups[0]["eps"]))
        return real(self, *a, **k)

    monkeypatch.setattr(torch.optim.AdamW, "step", step)
    forget = _forget_set(tiny_backbone, toy_world, toy_train)  # 10 images, batch 4: 3 steps per epoch
    unlearn(tiny_backbone, build_method("ga"), forget, toy_world,
            TrainConfig(lr=1e-2, epochs=4, batch_size=4, schedule="cosine-epoch", adam_eps=1e-6), progress=False)
    lrs = [lr for lr, _ in groups]
    expected = [1e-2 * train_mod.cosine_per_epoch(e, 4) for e in range(4) for _ in range(3)]
    assert lrs == pytest.approx(expected) and lrs[0] == 1e-2  # constant within an epoch, no warm-up
    assert {eps for _, eps in groups} == {1e-6}
    groups.clear()
    unlearn(tiny_backbone, build_method("ga"), forget, toy_world, TrainConfig(lr=1e-2, epochs=1, batch_size=4), progress=False)
    assert {eps for _, eps in groups} == {1e-8} and groups[0][0] > groups[1][0]  # today's default: torch's eps, lr moves every step


def test_cosine_per_epoch_by_hand():
    assert train_mod.cosine_per_epoch(0, 8) == 1.0
    assert train_mod.cosine_per_epoch(4, 8) == pytest.approx(0.5)
    assert train_mod.cosine_per_epoch(7, 8) == pytest.approx(0.5 * (1 + math.cos(7 * math.pi / 8)))


def test_trainer_choices_are_checked_with_did_you_mean():
    from ktmu.settings import SettingsError

    with pytest.raises(SettingsError, match="selection must be one of ours, study, got 'studdy'. Did you mean 'study'"):
        TrainConfig(selection="studdy")
    with pytest.raises(SettingsError, match="schedule must be one of warmup-cosine, cosine-epoch"):
        TrainConfig(schedule="cosine")
    with pytest.raises(SettingsError, match="adam_eps must be > 0"):
        TrainConfig(adam_eps=0.0)
