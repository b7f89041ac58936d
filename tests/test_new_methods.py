"""Hand-worked losses of simnpo and feat-orth (the contract tests in test_methods.py run over them too)."""
import math

import pytest
import torch

from ktmu.methods import METHODS, Batch, build_method
from ktmu.methods.terms import direction_drift_outside, npo, orthonormal_basis, simnpo


def t(*rows):
    return torch.tensor(rows, dtype=torch.float32)


def _logit_batch(ref=True):
    gen = torch.Generator().manual_seed(0)
    return Batch(
        torch.randn(3, 4, generator=gen).requires_grad_(), torch.randn(3, 2, generator=gen).requires_grad_(),
        torch.tensor([0, 1, 2]), torch.tensor([0, 0, 1]), torch.tensor([False, False, True]),
        ref_fine_logits=torch.randn(3, 4, generator=gen) if ref else None,
        ref_coarse_logits=torch.randn(3, 2, generator=gen) if ref else None,
    )


# ---- SimNPO -------------------------------------------------------------------------------------


def test_simnpo_term_by_hand():
    # logits (ln 2, 0, 0), target 0: p = 2/4 = 1/2. Loss (2/beta) log(1 + e^gamma p^beta):
    # beta 2, gamma 0 -> log(1 + 1/4); gamma ln 2 -> log(1 + 2/4)
    z, y = t([math.log(2.0), 0.0, 0.0]), torch.tensor([0])
    assert simnpo(z, y, beta=2.0, gamma=0.0).item() == pytest.approx(math.log(1.25), rel=1e-6)
    assert simnpo(z, y, beta=2.0, gamma=math.log(2.0)).item() == pytest.approx(math.log(1.5), rel=1e-6)
    # the defaults beta 2.5, gamma 0 on uniform logits: p = 1/3 -> 0.8 log(1 + 3^-2.5) = 0.04974
    assert simnpo(t([0.0, 0.0, 0.0]), y, 2.5, 0.0).item() == pytest.approx(0.8 * math.log(1 + 3**-2.5), rel=1e-6)


def test_simnpo_over_a_forgotten_set_uses_their_total_probability():
    # classes 0 and 1 forgotten under uniform logits: p = 2/3; beta 2.5 -> 0.8 log(1 + (2/3)^2.5)
    forgotten = torch.tensor([[True, True, False]])
    out = simnpo(t([0.0, 0.0, 0.0]), torch.tensor([0]), 2.5, 0.0, forgotten)
    assert out.item() == pytest.approx(0.8 * math.log(1 + (2 / 3) ** 2.5), rel=1e-6)


def test_simnpo_is_npo_with_a_fixed_reference_probability():
    # reference probability e^(-gamma/beta) = 1/2 when gamma = beta ln 2: NPO against a reference with p_ref = 1/2
    z, y, beta = t([1.0, -0.5], [0.3, 2.0]), torch.tensor([0, 1]), 0.7
    assert torch.allclose(simnpo(z, y, beta, beta * math.log(2.0)), npo(z, t([0.0, 0.0], [0.0, 0.0]), y, beta))


def test_simnpo_falls_and_its_push_fades_as_the_target_is_forgotten():
    values, grads = [], []
    for z0 in (2.0, 0.0, -2.0, -6.0):
        z = t([z0, 0.0, 0.0]).requires_grad_()
        loss = simnpo(z, torch.tensor([0]), 2.5, 0.0)
        loss.backward()
        values.append(loss.item())
        grads.append(z.grad[0, 0].item())
    assert values == sorted(values, reverse=True)
    assert all(g > 0 for g in grads) and grads == sorted(grads, reverse=True)  # descent lowers the target, ever more gently


def test_simnpo_method_is_reference_free():
    m = build_method("simnpo")
    assert not m.needs_reference and not m.needs_features and (m.beta, m.gamma) == (2.5, 0.0)
    b = _logit_batch(ref=False)
    terms = m.loss(b)
    # fine level over all 3 samples plus the coarse level over sample 2 (the only one forgetting its coarse label)
    fine = simnpo(b.fine_logits, b.fine_target, 2.5, 0.0).mean()
    coarse = simnpo(b.coarse_logits[2:], b.coarse_target[2:], 2.5, 0.0).mean()
    assert terms["loss"].item() == pytest.approx((fine + coarse).item(), rel=1e-6)
    with pytest.raises(ValueError):
        build_method("simnpo", beta=0.0)  # beta must be positive


# ---- feat-orth ----------------------------------------------------------------------------------

E1, E2, E3 = [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]
ALIAS = [0.6, 0.8, 0.0]


def _feature_batch(forget_coarse=False, coarse_text=([0.0, 0.8, 0.6], [0.6, 0.0, 0.8]), names=(E1, ALIAS),
                   f=(0.48, 0.6, 0.64), f0=(0.6, 0.48, 0.64)):
    """The module docstring's example: s = 2, fine text e1 (forgotten), e2, e3; one image of fine 0, coarse 0."""
    fine_text = t(E1, E2, E3).requires_grad_()
    coarse = t(*coarse_text).requires_grad_()
    name_text = t(*names).requires_grad_()
    scale = torch.tensor(2.0, requires_grad=True)
    feats = t(list(f)).requires_grad_()
    return Batch(
        scale * feats @ fine_text.T, scale * feats @ coarse.T, torch.tensor([0]), torch.tensor([0]), torch.tensor([forget_coarse]),
        fine_forgotten=torch.tensor([True, False, False]), coarse_forgotten=torch.tensor([forget_coarse, False]),
        image_features=feats, ref_image_features=t(list(f0)), fine_text=fine_text, coarse_text=coarse,
        forgotten_name_text=name_text, logit_scale=scale,
    )


def test_feat_orth_by_hand():
    # names: fine logits 2*(0.48, 0.6, 0.64) = (0.96, 1.2, 1.28); name logits 2*(0.48, 0.768) = (0.96, 1.536):
    #   the alias is the best forgotten -> 1.536 - 1.28 + 2 = 2.256 (the canonical name alone: 0.96 - 1.28 + 2 = 1.68)
    # keep_coarse: coarse logits 2*(0.864, 0.8) = (1.728, 1.6), target 0 -> log(1 + e^-0.128)
    # anchor: outside span(e1, e2) both f and f0 are (0, 0, 0.64) -> 0
    b = _feature_batch()
    m = build_method("feat-orth")
    assert m.needs_features and not m.needs_reference and m.anchor_weight == 0.3
    terms = m.loss(b)
    keep = math.log(1 + math.exp(-0.128))
    assert terms["names"].item() == pytest.approx(2.256, rel=1e-6)
    assert terms["keep_coarse"].item() == pytest.approx(keep, rel=1e-6)
    assert terms["anchor"].item() == pytest.approx(0.0, abs=1e-7)
    assert terms["loss"].item() == pytest.approx(2.256 + keep, rel=1e-6)


def test_feat_orth_anchor_by_hand():
    # one name, e1: f = (0.6, 0, 0.8) -> outside direction (0, 0, 1); f0 = (0, 0.6, 0.8) -> (0, 0.6, 0.8);
    # squared distance 0.36 + 0.04 = 0.4 -> anchor (2^2 / 2) * 0.4 = 0.8, weighted 0.3 * 0.8 = 0.24
    b = _feature_batch(names=(E1,), f=(0.6, 0.0, 0.8), f0=(0.0, 0.6, 0.8))
    terms = build_method("feat-orth").loss(b)
    assert terms["anchor"].item() == pytest.approx(0.8, rel=1e-5)
    assert terms["loss"].item() == pytest.approx((terms["names"] + terms["keep_coarse"]).item() + 0.24, rel=1e-5)


def test_feat_orth_moves_only_the_image_features():
    """Text features and the temperature are fixed: the gradient reaches the image features alone."""
    b = _feature_batch(f0=(0.0, 0.6, 0.8))
    build_method("feat-orth").loss(b)["loss"].backward()
    assert b.image_features.grad is not None and b.image_features.grad.abs().sum() > 0
    for fixed in (b.fine_text, b.coarse_text, b.forgotten_name_text, b.logit_scale):
        assert fixed.grad is None
    # the hinge alone pulls f off the alias (the best forgotten name) towards e3 (the best kept class):
    # d/df of 2 <f, alias> - 2 <f, e3> + 2 = (1.2, 1.6, -2)
    b2 = _feature_batch()
    build_method("feat-orth", coarse_weight=0.0, anchor_weight=0.0).loss(b2)["loss"].backward()
    assert torch.allclose(b2.image_features.grad, t([1.2, 1.6, -2.0]))


def test_feat_orth_anchor_is_free_inside_the_names_span_and_for_rescaling():
    basis = orthonormal_basis(t(E1, ALIAS))
    assert basis.shape == (3, 2)
    ref = t([0.6, 0.48, 0.64])
    assert direction_drift_outside(ref + t([0.3, -0.7, 0.0]), ref, basis).item() == pytest.approx(0.0, abs=1e-7)
    assert direction_drift_outside(ref * 3.0, ref, basis).item() == pytest.approx(0.0, abs=1e-7)  # rescaling is free
    one = orthonormal_basis(t(E1))
    assert direction_drift_outside(t([0.6, 0.0, 0.8]), t([0.0, 0.6, 0.8]), one).item() == pytest.approx(0.4, rel=1e-5)
    # a duplicated or near-duplicated name adds no direction
    assert orthonormal_basis(t(E1, E1, [1.0, 1e-9, 0.0])).shape == (3, 1)
    # margin met, features at the original: nothing to do
    b = _feature_batch(f=(0.0, 0.0, 1.0), f0=(0.0, 0.0, 1.0))
    terms = build_method("feat-orth").loss(b)
    assert terms["names"].item() == 0.0 and terms["anchor"].item() == 0.0


def test_feat_orth_coarse_goal_forgets_the_coarse_label_and_frees_its_direction():
    # coarse text e3 (the forgotten parent) and the alias direction: coarse logits 2*(0.64, 0.768) = (1.28, 1.536)
    # -> coarse hinge 1.28 - 1.536 + 2 = 1.744; no kept coarse label -> keep_coarse 0; the free span is now
    # everything (e1, e2, e3) so the anchor is 0 even though f and f0 differ. Loss 2.256 + 1.744 = 4.0
    b = _feature_batch(forget_coarse=True, coarse_text=(E3, ALIAS), f0=(0.0, 0.6, 0.8))
    terms = build_method("feat-orth").loss(b)
    assert terms["names"].item() == pytest.approx(2.256 + 1.744, rel=1e-6)
    assert terms["keep_coarse"].item() == 0.0 and terms["anchor"].item() == pytest.approx(0.0, abs=1e-7)
    assert terms["loss"].item() == pytest.approx(4.0, rel=1e-6)


def test_feat_orth_names_the_missing_features():
    b = _logit_batch()
    with pytest.raises(ValueError, match="needs_features = True") as ei:
        build_method("feat-orth").loss(b)
    assert "image_features" in str(ei.value) and "forgotten_name_text" in str(ei.value)


def test_feat_orth_runs_on_a_random_contract_style_batch():
    """What the contract tests need to pass for a feature method: a Batch with every feature field."""
    gen = torch.Generator().manual_seed(0)
    unit = lambda *shape: torch.nn.functional.normalize(torch.randn(*shape, generator=gen), dim=-1)  # noqa: E731
    feats = unit(3, 8).requires_grad_()
    fine_text, coarse_text = unit(4, 8), unit(2, 8)
    scale = torch.tensor(7.7)
    b = Batch(scale * feats @ fine_text.T, scale * feats @ coarse_text.T, torch.tensor([0, 1, 2]), torch.tensor([0, 0, 1]),
              torch.tensor([False, False, True]), image_features=feats, ref_image_features=unit(3, 8), fine_text=fine_text,
              coarse_text=coarse_text, forgotten_name_text=unit(5, 8), logit_scale=scale)
    terms = build_method("feat-orth").loss(b)
    assert terms["loss"].dim() == 0 and torch.isfinite(terms["loss"])
    terms["loss"].backward()
    assert feats.grad.abs().sum() > 0


def test_new_methods_are_registered():
    assert {"simnpo", "feat-orth"} <= set(METHODS.names())
