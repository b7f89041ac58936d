"""Hand-worked values of every loss term on 3-class logits."""
import math

import pytest
import torch

from ktmu.methods.terms import (
    cross_entropy,
    hinge_below_best_other,
    kl_from_uniform,
    kl_non_target,
    masked_mean,
    npo,
    random_other_labels,
    target_mask,
)


def t(*rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_hinge_by_hand():
    # target 0: z_t=3, best other=1 -> 3 - 1 + 2 = 4
    # target 1: z_t=3, best other=1 -> 3 - 1 + 2 = 4 ; target 2: z_t=0, best other 3 -> max(0, 0-3+2) = 0
    logits = t([3.0, 1.0, 0.0], [1.0, 3.0, 0.0], [3.0, 1.0, 0.0])
    out = hinge_below_best_other(logits, torch.tensor([0, 1, 2]), margin=2.0)
    assert torch.allclose(out, t(4.0, 4.0, 0.0))
    # exactly at the margin -> zero, just inside -> positive
    assert hinge_below_best_other(t([0.0, 2.0, 1.0]), torch.tensor([0]), 2.0).item() == 0.0
    assert hinge_below_best_other(t([0.5, 2.0, 1.0]), torch.tensor([0]), 2.0).item() == pytest.approx(0.5)


def test_hinge_gradient_only_on_target_and_best_other():
    logits = t([3.0, 1.0, 0.0]).requires_grad_()
    hinge_below_best_other(logits, torch.tensor([0]), 2.0).sum().backward()
    assert torch.equal(logits.grad, t([1.0, -1.0, 0.0]))


def test_npo_by_hand():
    # p = 1/3 (uniform), p_ref = e^{ln2}/(2+1+1) = 1/2 -> ratio 2/3; beta 0.5:
    # (2/0.5) * log(1 + (2/3)**0.5) = 4 * log(1.8165) = 2.38762
    logits, ref = t([0.0, 0.0, 0.0]), t([math.log(2.0), 0.0, 0.0])
    assert npo(logits, ref, torch.tensor([0]), beta=0.5).item() == pytest.approx(4 * math.log(1 + (2 / 3) ** 0.5), rel=1e-5)
    # identical model and reference -> (2/beta) log 2 whatever the logits
    z = t([1.0, -2.0, 0.5])
    assert npo(z, z, torch.tensor([1]), beta=0.4).item() == pytest.approx(5 * math.log(2), rel=1e-5)


def test_hinge_with_a_forgotten_set_uses_best_forgotten_and_best_kept():
    # classes 0 and 1 forgotten: best forgotten 2.5 (class 1), best kept 1.0 (class 2) -> 2.5 - 1 + 2 = 3.5
    logits = t([0.0, 2.5, 1.0])
    forgotten = torch.tensor([[True, True, False]])
    assert hinge_below_best_other(logits, torch.tensor([0]), 2.0, forgotten).item() == pytest.approx(3.5)
    # with the one-hot mask of the target it is the plain hinge: 0 - 2.5 + 2 -> 0
    assert hinge_below_best_other(logits, torch.tensor([0]), 2.0).item() == 0.0


def test_npo_over_a_forgotten_set_uses_their_total_probability():
    # p(forgotten) = (1 + 1) / 3 = 2/3 under uniform logits; reference (ln2, ln2, 0): p_ref = 4/5
    logits, ref = t([0.0, 0.0, 0.0]), t([math.log(2.0), math.log(2.0), 0.0])
    forgotten = torch.tensor([[True, True, False]])
    expected = 4 * math.log(1 + ((2 / 3) / (4 / 5)) ** 0.5)
    assert npo(logits, ref, torch.tensor([0]), 0.5, forgotten).item() == pytest.approx(expected, rel=1e-5)


def test_random_labels_avoid_every_forgotten_class():
    target = torch.zeros(500, dtype=torch.long)
    forgotten = torch.tensor([[True, False, True, False]]).expand(500, 4)
    r = random_other_labels(target, 4, torch.Generator().manual_seed(1), forgotten)
    assert set(r.tolist()) == {1, 3}
    # a row with every class forgotten (only possible outside the level's samples) keeps its label
    assert random_other_labels(torch.tensor([1]), 2, None, torch.ones(1, 2, dtype=torch.bool)).tolist() == [1]


def test_npo_falls_as_target_probability_falls():
    ref = t([2.0, 0.0, 0.0])
    values = [npo(t([z, 0.0, 0.0]), ref, torch.tensor([0]), 0.5).item() for z in (2.0, 0.0, -2.0, -6.0)]
    assert values == sorted(values, reverse=True)
    # z=-6: p = e^-6 / (e^-6 + 2), p_ref = e^2 / (e^2 + 2)
    p, p_ref = math.exp(-6) / (math.exp(-6) + 2), math.exp(2) / (math.exp(2) + 2)
    assert values[-1] == pytest.approx(4 * math.log(1 + (p / p_ref) ** 0.5), rel=1e-5)


def test_kl_non_target_by_hand():
    # target 0 excluded. new over {1,2}: (0, 0) -> (1/2, 1/2); ref over {1,2}: (ln 3, 0) -> (3/4, 1/4)
    # KL(ref || new) = 3/4 ln(3/2) + 1/4 ln(1/2) = 0.130812
    logits, ref = t([10.0, 0.0, 0.0]), t([0.0, math.log(3.0), 0.0])
    exclude = target_mask(logits, torch.tensor([0]))
    assert kl_non_target(logits, ref, exclude).item() == pytest.approx(0.75 * math.log(1.5) + 0.25 * math.log(0.5), rel=1e-5)
    # the target logit is free: changing it leaves the KL unchanged and gets no gradient
    moved = t([-10.0, 0.0, 0.0]).requires_grad_()
    kl = kl_non_target(moved, ref, exclude)
    kl.backward()
    assert kl.item() == pytest.approx(0.130812, rel=1e-4)
    assert moved.grad[0, 0].item() == 0.0
    # nothing excluded: ordinary KL, zero for identical logits
    assert kl_non_target(ref, ref, torch.zeros(1, 3, dtype=torch.bool)).item() == pytest.approx(0.0, abs=1e-7)


def test_kl_from_uniform_by_hand():
    # p = (1/2, 1/4, 1/4): sum p log p = -1.03972, + ln 3 = 0.058892
    assert kl_from_uniform(t([math.log(2.0), 0.0, 0.0])).item() == pytest.approx(math.log(3) - 1.5 * math.log(2), rel=1e-5)
    assert kl_from_uniform(t([4.0, 4.0, 4.0])).item() == pytest.approx(0.0, abs=1e-6)


def test_cross_entropy_and_masked_mean():
    assert cross_entropy(t([0.0, 0.0, 0.0]), torch.tensor([2])).item() == pytest.approx(math.log(3))
    assert masked_mean(t(1.0, 2.0, 6.0), torch.tensor([True, False, True])).item() == pytest.approx(3.5)
    assert masked_mean(t(1.0, 2.0), torch.tensor([False, False])).item() == 0.0


def test_random_other_labels_never_target_and_uniform():
    target = torch.tensor([0, 1, 2] * 3000)
    gen = torch.Generator().manual_seed(0)
    r = random_other_labels(target, 3, gen)
    assert not (r == target).any()
    for y in range(3):
        counts = torch.bincount(r[target == y], minlength=3).float() / 3000
        others = [c for c in range(3) if c != y]
        assert counts[y] == 0 and all(abs(counts[c] - 0.5) < 0.05 for c in others)


def _kl_batch():
    """Two samples, 3 fine / 2 coarse classes; sample 0 keeps its coarse label, sample 1 forgets it."""
    from ktmu.methods import Batch

    return Batch(
        fine_logits=t([10.0, 0.0, 0.0], [0.0, 0.0, 0.0]), coarse_logits=t([0.0, 0.0], [0.0, 5.0]),
        fine_target=torch.tensor([0, 2]), coarse_target=torch.tensor([0, 1]), forget_coarse=torch.tensor([False, True]),
        ref_fine_logits=t([0.0, math.log(3.0), 0.0], [0.0, 0.0, 0.0]), ref_coarse_logits=t([math.log(3.0), 0.0], [math.log(3.0), 0.0]),
    )


def test_kl_retained_parts_by_hand():
    from ktmu.methods.terms import kl_on_retained, kl_retained_parts

    fine, coarse = kl_retained_parts(_kl_batch())
    k = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)  # KL((3/4, 1/4) || (1/2, 1/2)) = 0.130812
    # sample 0: fine without the target (0, 0) vs (ln 3, 0) -> k; coarse kept, all classes: (0, 0) vs (ln 3, 0) -> k
    # sample 1: fine without the target: (0, 0) vs (0, 0) -> 0; coarse forgotten: only class 0 is left -> 0
    assert fine.tolist() == pytest.approx([k, 0.0], abs=1e-6) and coarse.tolist() == pytest.approx([k, 0.0], abs=1e-6)
    assert kl_on_retained(_kl_batch()).item() == pytest.approx(k, rel=1e-5)  # mean over the batch of fine + coarse


def test_weighted_kl_one_weight_is_exactly_kl_on_retained_and_two_weights_split_the_levels():
    from ktmu.methods.terms import kl_on_retained, weighted_kl_on_retained

    b = _kl_batch()
    k = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    term, parts = weighted_kl_on_retained(b, 20.0, None)
    assert torch.equal(term, 20.0 * kl_on_retained(b))  # today's value, bit for bit
    assert parts["kl_fine"].item() == pytest.approx(k / 2, rel=1e-5) and parts["kl_coarse"].item() == pytest.approx(k / 2, rel=1e-5)
    term, _ = weighted_kl_on_retained(b, 20.0, 5.0)  # the study's KL_f / KL_c pairs
    assert term.item() == pytest.approx(20 * k / 2 + 5 * k / 2, rel=1e-5)
    assert weighted_kl_on_retained(b, 20.0, 20.0)[0].item() == pytest.approx((20.0 * kl_on_retained(b)).item(), rel=1e-6)
