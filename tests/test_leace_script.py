"""scripts/leace_erase.py: the closed-form LEACE map, on hand-built features whose answer is known."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "leace_erase.py"


def leace_map():
    spec = importlib.util.spec_from_file_location("leace_erase", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.leace_map


def test_the_concept_direction_is_removed_and_the_rest_is_kept():
    """Concept images at x1 = 2, the rest at x1 = 0; x2 varies alike in both: the covariance is diagonal, so the eraser is diag(0, 1, 1)."""
    x = torch.tensor([[2.0, 0.0, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    z = torch.tensor([1.0, 1.0, 0.0, 0.0])
    eraser = leace_map()(x, z)
    assert torch.allclose(eraser, torch.diag(torch.tensor([0.0, 1.0, 1.0])), atol=1e-6)


def test_after_the_edit_no_mean_difference_is_left_even_with_correlated_features():
    """x2 = x1 + noise: an orthogonal projection of the mean difference would not do; LEACE's oblique one leaves equal class means."""
    x1 = torch.tensor([2.0, 2.0, 2.0, 0.0, 0.0, 0.0])
    x = torch.stack([x1, x1 + torch.tensor([0.5, -0.5, 0.0, 0.5, -0.5, 0.0]), torch.tensor([1.0, 0.0, -1.0, 1.0, 0.0, -1.0])], 1)
    z = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
    erased = x @ leace_map()(x, z, shrinkage=0.0).T
    assert torch.allclose(erased[:3].mean(0), erased[3:].mean(0), atol=1e-5)
    assert not torch.allclose(x[:3].mean(0), x[3:].mean(0), atol=1e-5)
