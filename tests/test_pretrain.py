"""A short pretraining run really lowers the contrastive loss."""
import torch

from ktmu.backbones.mini_clip import build_mini_clip
from ktmu.data import load_dataset
from ktmu.engine.pretrain import PretrainConfig, augment, pretrain


def test_short_pretraining_lowers_loss(tmp_path):
    b = build_mini_clip(weights="random")
    data = [load_dataset("fashion", "train"), load_dataset("digits", "train")]
    before = {k: v.clone() for k, v in b.trainable_state_dict().items()}
    logs = pretrain(b, data, PretrainConfig(epochs=3, batch_size=64, limit_per_world=256, lr=3e-3), progress=False)
    assert len(logs) == 3
    assert logs[-1]["loss"] < logs[0]["loss"] - 0.1
    after = b.trainable_state_dict()
    assert not torch.equal(before["visual.head.proj.weight"], after["visual.head.proj.weight"])
    path = b.save_weights(tmp_path / "m.safetensors")
    again = build_mini_clip(weights=path)
    x = torch.randn(2, 1, 28, 28)
    assert torch.allclose(b.encode_image(x), again.encode_image(x), atol=1e-6)


def test_augment_flips_only_where_allowed():
    x = torch.zeros(2, 1, 4, 4)
    x[:, :, :, 0] = 1.0  # a bright left column
    gen = torch.Generator().manual_seed(3)
    flipped = [augment(x, torch.tensor([True, False]), gen, 0.0, 0.0) for _ in range(20)]
    right_bright = [bool(f[0, 0, :, -1].mean() > 0.5) for f in flipped]
    assert any(right_bright) and not all(right_bright)  # sample 0 is flipped about half the time
    assert all(bool(f[1, 0, :, 0].mean() > 0.5) for f in flipped)  # sample 1 never
