"""The methods aimed at knowledge (neighbour exemplars, representation, sharpness): hand-worked loss values from their docstrings."""
import math

import pytest
import torch

from ktmu.methods import Batch, NeighbourBatch, build_method
from ktmu.methods.terms import feature_drift, mmd_rbf, neighbour_cross_entropy, neighbour_kl

LN3 = math.log(3)


def _near(fine, coarse, fine_target, coarse_target, ref_fine=None, ref_coarse=None, **kw):
    t = torch.tensor
    return NeighbourBatch(t(fine), t(coarse), t(fine_target), t(coarse_target),
                          None if ref_fine is None else t(ref_fine), None if ref_coarse is None else t(ref_coarse), **kw)


def _forget(fine, coarse, fine_target, coarse_target, ref_fine=None, ref_coarse=None, forget_coarse=(False,), **kw):
    t = torch.tensor
    n_fine = len(fine[0])
    forgotten = torch.zeros(n_fine, dtype=torch.bool)
    forgotten[fine_target[0]] = True
    return Batch(t(fine), t(coarse), t(fine_target), t(coarse_target), t(forget_coarse),
                 ref_fine_logits=None if ref_fine is None else t(ref_fine), ref_coarse_logits=None if ref_coarse is None else t(ref_coarse),
                 fine_forgotten=forgotten, coarse_forgotten=torch.zeros(len(coarse[0]), dtype=torch.bool), **kw)


def test_neighbour_terms_by_hand():
    kl = neighbour_kl(_near([[0.0, 0.0]], [[0.0, 0.0]], [0], [0], ref_fine=[[LN3, 0.0]], ref_coarse=[[0.0, 0.0]]))
    assert kl.item() == pytest.approx(0.75 * math.log(1.5) + 0.25 * math.log(0.5), abs=1e-6)  # 0.130812
    ce = neighbour_cross_entropy(_near([[LN3, 0.0, 0.0]], [[0.0, 0.0]], [0], [1]))
    assert ce.item() == pytest.approx(-math.log(3 / 5) + math.log(2), abs=1e-6)  # 1.203973


def test_mmd_by_hand_and_zero_on_equal_samples():
    x, y = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    assert mmd_rbf(x, y, (1.0,)).item() == pytest.approx(2 - 2 * math.exp(-1), abs=1e-6)  # 1.264241
    assert mmd_rbf(x, y).item() == pytest.approx(6 - 2 * (math.exp(-16) + math.exp(-4) + math.exp(-1)), abs=1e-6)  # 5.227610
    z = torch.nn.functional.normalize(torch.tensor([[1.0, 2.0], [3.0, -1.0], [0.5, 0.5]]), dim=1)
    assert mmd_rbf(z, z).item() == pytest.approx(0.0, abs=1e-6)
    assert feature_drift(torch.tensor([[0.6, 0.8]]), torch.tensor([[1.0, 0.0]])).item() == pytest.approx(0.8, abs=1e-6)


def test_gdiff_retain_by_hand():
    b = _forget([[LN3, 0.0, 0.0]], [[0.0, 0.0]], [0], [0])
    b.neighbours = _near([[0.0, LN3, 0.0]], [[LN3, 0.0]], [1], [0])
    terms = build_method("gdiff-retain").loss(b)
    assert terms["ascent"].item() == pytest.approx(math.log(3 / 5), abs=1e-6)  # -0.510826
    assert terms["keep_coarse"].item() == pytest.approx(math.log(2), abs=1e-6)
    assert terms["neighbours"].item() == pytest.approx(-math.log(3 / 5) - math.log(3 / 4), abs=1e-6)  # 0.798508
    assert terms["loss"].item() == pytest.approx(0.980829, abs=1e-6)


def test_salun_retain_by_hand():
    b = _forget([[0.0, 0.0, 0.0]], [[0.0, 0.0]], [0], [0], generator=torch.Generator().manual_seed(0))
    b.neighbours = _near([[0.0, LN3, 0.0]], [[LN3, 0.0]], [1], [0])
    terms = build_method("salun-retain").loss(b)
    assert terms["relabel"].item() == pytest.approx(LN3, abs=1e-6)  # any redrawn label of uniform logits: ln 3
    assert terms["loss"].item() == pytest.approx(1.897120, abs=1e-6)


def test_scrub_by_hand():
    b = _forget([[0.0, 0.0]], [[0.0, 0.0]], [0], [0], ref_fine=[[LN3, 0.0]], ref_coarse=[[0.0, 0.0]])
    b.neighbours = _near([[0.0, 0.0]], [[0.0, LN3]], [0], [1], ref_fine=[[LN3, 0.0]], ref_coarse=[[0.0, LN3]])
    terms = build_method("scrub").loss(b)
    assert terms["forget_kl"].item() == pytest.approx(0.130812, abs=1e-6)
    assert terms["keep_coarse_kl"].item() == pytest.approx(0.0, abs=1e-6)
    assert terms["kl_neighbours"].item() == pytest.approx(0.130812, abs=1e-6)
    assert terms["ce_neighbours"].item() == pytest.approx(0.980829, abs=1e-6)
    assert terms["loss"].item() == pytest.approx(0.980829, abs=1e-6)


def _merge_batch() -> Batch:
    e1, e2 = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    text = torch.cat([e1, e2])
    one = torch.tensor(1.0)
    b = _forget((e1 @ text.T).tolist(), [[0.0]], [0], [0], ref_fine=(e1 @ text.T).tolist(), ref_coarse=[[0.0]],
                image_features=e1.clone(), ref_image_features=e1, fine_text=text, coarse_text=torch.tensor([[0.6, 0.8]]),
                forgotten_name_text=e1, logit_scale=one)
    b.neighbours = NeighbourBatch(e2 @ text.T, torch.tensor([[0.0]]), torch.tensor([1]), torch.tensor([0]), e2 @ text.T, torch.tensor([[0.0]]),
                                  e2.clone(), e2)
    return b


def test_merge_mmd_by_hand():
    terms = build_method("merge-mmd").loss(_merge_batch())
    assert terms["names"].item() == pytest.approx(3.0, abs=1e-6)
    assert terms["kl"].item() == pytest.approx(0.0, abs=1e-6) and terms["kl_neighbours"].item() == pytest.approx(0.0, abs=1e-6)
    assert terms["mmd"].item() == pytest.approx(5.227610, abs=1e-6) and terms["anchor"].item() == pytest.approx(0.0, abs=1e-6)
    assert terms["loss"].item() == pytest.approx(525.760961, abs=1e-4)


def test_whitened_mean_gap_by_hand_and_the_guard_term():
    """f = {(1, 0), (1, 0)}, g = {(0, 1), (0, -1)} (one kept class): S = diag(0, 2), tr S / D = 1.

    Shrinkage 1: C = I, a_1 = a_2 = (1, 0), pair mean 1. Shrinkage 0.5: C = diag(0.5, 1.5) -> 1 / 0.5 = 2:
    the direction along which the neighbours do not spread counts twice. Two forget images on either side
    of the neighbours' mean, f = {(1, 0), (-1, 0)}: pair mean -1, floored at 0 (the plug-in |mean a|^2 is 0
    too, but f = {(1, 0), (0.8, 0)} shows the noise term removed: plug-in 0.81, pairs 0.8). A gap along the
    neighbours' spread, f = {(0, 1), (0, 1)} against g = {(0, 3), (0, -1)} (mean (0, 1)), is zero.
    """
    from ktmu.methods.merge_mmd import whitened_mean_gap

    def batches(f, g):
        b = Batch(torch.zeros(len(f), 2), torch.zeros(len(f), 1), torch.zeros(len(f), dtype=torch.long), torch.zeros(len(f), dtype=torch.long),
                  torch.tensor([False] * len(f)), image_features=torch.tensor(f))
        nb = NeighbourBatch(torch.zeros(len(g), 2), torch.zeros(len(g), 1), torch.ones(len(g), dtype=torch.long),
                            torch.zeros(len(g), dtype=torch.long), image_features=torch.tensor(g))
        return b, nb

    spread = [[0.0, 1.0], [0.0, -1.0]]
    b, nb = batches([[1.0, 0.0], [1.0, 0.0]], spread)
    assert whitened_mean_gap(b, nb, 1.0).item() == pytest.approx(1.0)
    assert whitened_mean_gap(b, nb, 0.5).item() == pytest.approx(2.0)
    assert whitened_mean_gap(*batches([[1.0, 0.0], [-1.0, 0.0]], spread), 1.0).item() == 0.0
    assert whitened_mean_gap(*batches([[1.0, 0.0], [0.8, 0.0]], spread), 1.0).item() == pytest.approx(0.8)
    assert whitened_mean_gap(*batches([[0.0, 1.0], [0.0, 1.0]], [[0.0, 3.0], [0.0, -1.0]]), 0.5).item() == pytest.approx(0.0, abs=1e-7)
    assert whitened_mean_gap(*batches([[1.0, 0.0], [1.0, 0.0]], [[0.0, 1.0]]), 0.5).item() == 0.0  # one neighbour image: no spread, no term
    assert whitened_mean_gap(*batches([[1.0, 0.0]], spread), 0.5).item() == 0.0  # one forget image: no pair, no term
    # merge-mmd's loss gains the term only with a weight (off by default: its key is absent)
    assert "guard" not in build_method("merge-mmd").loss(_merge_batch()) and "guard" in build_method("merge-mmd", guard_weight=1.0).loss(_merge_batch())


def test_merge_mmd_moves_the_forget_features_towards_the_neighbours_not_the_reverse():
    """The MMD term's gradient acts on the forget features only (the neighbours are held by the anchor alone)."""
    f = torch.nn.functional.normalize(torch.tensor([[1.0, 0.2], [0.9, -0.1]]), dim=1).requires_grad_(True)
    g = torch.nn.functional.normalize(torch.tensor([[0.0, 1.0], [0.1, 0.9]]), dim=1).requires_grad_(True)
    mmd_rbf(f, g.detach()).backward()
    step = f - 0.1 * f.grad
    assert mmd_rbf(step, g).item() < mmd_rbf(f, g).item() and g.grad is None


def test_sam_nhl_kl_is_nhl_kl_with_a_radius():
    sam, plain = build_method("sam-nhl-kl"), build_method("nhl-kl")
    assert sam.sharpness_radius() == 0.005 and plain.sharpness_radius() is None
    b = _forget([[2.0, 0.0, 1.0]], [[0.0, 0.0]], [0], [0], ref_fine=[[1.0, 0.0, 0.0]], ref_coarse=[[0.0, 0.0]])
    assert sam.loss(b)["loss"].item() == plain.loss(b)["loss"].item()


def test_merge_discrepancy_merges_each_parent_into_its_own_neighbours():
    from ktmu.methods.merge_mmd import merge_discrepancy

    e = torch.eye(3)
    f = torch.stack([e[0], e[1]])  # forget images under parents 0 and 1
    b = Batch(torch.zeros(2, 2), torch.zeros(2, 2), torch.tensor([0, 1]), torch.tensor([0, 1]), torch.tensor([False, False]), image_features=f)
    g = torch.stack([e[0], e[2]])  # neighbours: one under parent 0 equal to its forget image, one under parent 1 elsewhere
    nb = NeighbourBatch(torch.zeros(2, 2), torch.zeros(2, 2), torch.tensor([0, 1]), torch.tensor([0, 1]), image_features=g)
    expected = 0.5 * 0.0 + 0.5 * mmd_rbf(e[1:2], e[2:3]).item()  # parent 0 already merged; parent 1 at distance sqrt 2
    assert merge_discrepancy(b, nb).item() == pytest.approx(expected, abs=1e-6)
    orphan = NeighbourBatch(torch.zeros(1, 2), torch.zeros(1, 2), torch.tensor([0]), torch.tensor([0]), image_features=e[0:1])
    assert merge_discrepancy(b, orphan).item() == pytest.approx(0.5 * mmd_rbf(e[1:2], e[0:1]).item(), abs=1e-6)  # no parent-1 neighbour: all


def test_merge_discrepancy_width_scale_by_hand():
    """f = {e1}, g = {e2}, |f - g|^2 = 2. Widths 0.25, 0.5, 1 (scale 1): 6 - 2 (e^-16 + e^-4 + e^-1) = 5.227610;
    scale 2 (0.5, 1, 2): 6 - 2 (e^-4 + e^-1 + e^-0.25) = 3.670008: the wider kernels still see the pair, the narrowest did not."""
    from ktmu.methods.merge_mmd import merge_discrepancy

    e = torch.eye(2)
    b = Batch(torch.zeros(1, 2), torch.zeros(1, 1), torch.tensor([0]), torch.tensor([0]), torch.tensor([False]), image_features=e[0:1])
    nb = NeighbourBatch(torch.zeros(1, 2), torch.zeros(1, 1), torch.tensor([1]), torch.tensor([0]), image_features=e[1:2])
    assert merge_discrepancy(b, nb).item() == pytest.approx(5.227610, abs=1e-5)
    assert merge_discrepancy(b, nb, 2.0).item() == pytest.approx(3.670008, abs=1e-5)
    assert build_method("merge-mmd", mmd_width_scale=2.0).hyperparameters()["mmd_width_scale"] == 2.0


def test_tar_merge_mmd_tamper_loss_by_hand_and_its_adversary():
    tar = build_method("tar-merge-mmd")
    b = _forget([[3.0, 1.0, 0.0], [0.0, 1.0, 3.0]], [[0.0, 0.0]] * 2, [0, 0], [0, 0], forget_coarse=(False, False))
    assert tar.tamper_loss(b).item() == pytest.approx(2.0)  # max(0, 3 - 1 + 2) = 4 and max(0, 0 - 3 + 2) = 0
    adv = tar.relearning_adversary()
    assert (adv.steps, adv.lr, adv.weight, adv.neighbours, adv.every) == (4, 1e-3, 15.0, 4, 1)
    assert build_method("merge-mmd").relearning_adversary() is None
    assert build_method("tar-nhl-kl").tamper_loss(b).item() == pytest.approx(2.0)  # the same hinge, with no neighbours
    r = _forget([[2.0, 0.0, 1.0]], [[0.0, 0.0]], [0], [0], ref_fine=[[1.0, 0.0, 0.0]], ref_coarse=[[0.0, 0.0]])
    assert build_method("tar-nhl-kl").loss(r)["loss"].item() == build_method("nhl-kl").loss(r)["loss"].item()
