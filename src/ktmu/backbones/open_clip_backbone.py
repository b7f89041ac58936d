"""Any open_clip architecture, with a pretrained tag (needs network on first use) or a local checkpoint."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ktmu.backbones.base import Backbone, BackboneError

# Parameter-name prefixes of open_clip's two model classes. ``logit_bias`` (SigLIP) is calibration,
# like the temperature, so it trains with it.
CLIP_TOWERS: dict[str, tuple[str, ...]] = {
    "image": ("visual.",),
    "text": ("transformer.", "token_embedding.", "positional_embedding", "ln_final.", "text_projection"),
    "temperature": ("logit_scale", "logit_bias"),
}
CUSTOM_TEXT_TOWERS: dict[str, tuple[str, ...]] = {
    "image": ("visual.",),
    "text": ("text.",),
    "temperature": ("logit_scale", "logit_bias"),
}


def text_global_pool(*args, **kwargs):  # noqa: D103 - imported lazily: open_clip is heavy
    from open_clip.transformer import text_global_pool as pool

    return pool(*args, **kwargs)


def _text_columns(model: torch.nn.Module, tokens: torch.Tensor) -> int | None:
    """How many leading token columns hold text, when dropping the rest is exact (causal CLIP text tower pooled at EOT), else None."""
    import open_clip

    if not isinstance(model, open_clip.CLIP) or getattr(model, "attn_mask", None) is None or not isinstance(tokens, torch.Tensor):
        return None
    if getattr(model, "text_pool_type", None) not in ("argmax", "eos"):
        return None
    used = (tokens != 0).any(0).nonzero()  # open_clip's tokenizers pad with id 0
    return int(used.max()) + 1 if len(used) else None


def towers_of(model: torch.nn.Module) -> dict[str, tuple[str, ...]]:
    """The tower prefixes of an open_clip model: ``CustomTextCLIP`` keeps its text tower under ``text.``."""
    import open_clip

    return CUSTOM_TEXT_TOWERS if isinstance(model, open_clip.CustomTextCLIP) else CLIP_TOWERS


class OpenClipBackbone(Backbone):
    """An open_clip model: spec ``open_clip:ARCH`` (random init) or ``open_clip:ARCH:TAG_OR_PATH``.

    A CLIP text tower's causal mask reaches scaled-dot-product attention as ``is_causal``
    (:func:`ktmu.backbones.speed.use_causal_attention`: the same mask, so that a flash kernel may run).
    """

    towers = CLIP_TOWERS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        import open_clip

        from ktmu.backbones.speed import use_causal_attention

        if isinstance(self.model, open_clip.CLIP) and getattr(self.model, "attn_mask", None) is not None:
            use_causal_attention(self.model.transformer.resblocks)

    def encoder_modules(self) -> dict[str, torch.nn.Module]:
        """The image tower (``visual``) and the text transformer (``transformer``, or ``text`` for custom text towers)."""
        m = self.model
        text = getattr(m, "text", None)
        text = getattr(m, "transformer", None) if text is None else text
        return {k: v for k, v in (("image", getattr(m, "visual", None)), ("text", text)) if v is not None}

    @classmethod
    def from_spec(cls, rest: str, device: str | torch.device = "cpu", precision: str = "fp32") -> Backbone:
        """``rest`` is ``ARCH`` or ``ARCH:TAG_OR_PATH``."""
        if not rest:
            raise BackboneError("spec 'open_clip' needs an architecture, e.g. open_clip:ViT-B-32 or open_clip:ViT-B-32:openai.")
        arch, _, pretrained = rest.partition(":")
        return build_open_clip(arch, pretrained=pretrained or None, device=device, precision=precision)

    def _encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """open_clip's text encoder on the token columns that hold text: the padding after the longest caption is dropped.

        CLIP's text transformer is causal and pools at the end-of-text token, so no position before
        it ever sees the padding: dropping the padded tail gives the same features (to float
        rounding) at a fraction of the cost (dog-breed prompts use ~15 of 77 positions).
        """
        m = self.model
        width = _text_columns(m, tokens)
        if width is None or width >= tokens.shape[1]:
            return m.encode_text(tokens, normalize=False)
        tokens = tokens[:, :width]
        cast_dtype = m.transformer.get_cast_dtype()
        x = m.token_embedding(tokens).to(cast_dtype) + m.positional_embedding[:width].to(cast_dtype)
        x = m.transformer(x, attn_mask=m.attn_mask[:width, :width])
        x = m.ln_final(x)
        x = text_global_pool(x, tokens, m.text_pool_type, eos_token_id=getattr(m, "text_eos_id", None))
        if m.text_projection is not None:
            x = m.text_projection(x) if isinstance(m.text_projection, torch.nn.Linear) else x @ m.text_projection
        return x

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Checkpoint the transformer blocks of both towers (open_clip's ``set_grad_checkpointing``)."""
        self.model.set_grad_checkpointing(enable)


class TinyClipBackbone(OpenClipBackbone):
    """The random tiny open_clip CLIP: spec ``tiny-clip`` or ``tiny-clip:PATH.safetensors``."""

    @classmethod
    def from_spec(cls, rest: str, device: str | torch.device = "cpu", precision: str = "fp32") -> Backbone:
        """``rest`` is empty (seeded random weights) or a ktmu checkpoint of this model."""
        if rest and not rest.endswith(".safetensors"):
            raise BackboneError(f"tiny-clip takes no argument or a ktmu checkpoint (tiny-clip:PATH.safetensors), not {rest!r}.")
        backbone = build_tiny_clip(device=device, precision=precision)
        if rest:
            backbone.load_weights(rest)
        return backbone


def build_open_clip(
    arch: str,
    pretrained: str | None = None,
    device: str | torch.device = "cpu",
    frozen_prefixes: tuple[str, ...] = (),
    precision: str = "fp32",
) -> OpenClipBackbone:
    """Build ``arch`` (e.g. ``ViT-L-14``) with ``pretrained`` = a tag such as ``openai``, a local file, or None (random).

    ``.safetensors`` files written by ktmu are loaded through :meth:`Backbone.load_weights`; other
    local files and tags go through open_clip's own loader. Weights are float32 whatever
    ``precision`` (which only sets the autocast arithmetic).
    """
    import open_clip

    if arch not in open_clip.list_models():
        from ktmu.registry import suggest

        raise BackboneError(f"unknown open_clip architecture {arch!r}.{suggest(arch, open_clip.list_models())}")
    ktmu_ckpt = pretrained is not None and Path(pretrained).suffix == ".safetensors" and Path(pretrained).is_file()
    if pretrained and not ktmu_ckpt and not Path(pretrained).exists():
        tags = open_clip.list_pretrained_tags_by_model(arch)
        if pretrained not in tags:
            raise BackboneError(
                f"{pretrained!r} is neither a file nor a pretrained tag of {arch}; tags: {', '.join(tags) or 'none'}."
            )
    if pretrained and not ktmu_ckpt and not Path(pretrained).exists():
        _fetch_tag(arch, pretrained)
    # open_clip's own precision stays fp32: weights are float32, ktmu's precision is autocast only.
    model, _, preprocess = open_clip.create_model_and_transforms(
        arch, pretrained=None if ktmu_ckpt else pretrained, precision="fp32", device=device, pretrained_text=False
    )
    model = model.eval()
    backbone = OpenClipBackbone(
        f"open_clip:{arch}", model, open_clip.get_tokenizer(arch), preprocess, frozen_prefixes, precision, towers_of(model)
    )
    if ktmu_ckpt:
        backbone.load_weights(pretrained)  # type: ignore[arg-type]
    return backbone


def _fetch_tag(arch: str, tag: str) -> None:
    """Download (or find in the cache) a pretrained tag's weights, so that a failed download is one clear error.

    open_clip would log the failure and raise a RuntimeError wrapped around the hub's; this is the
    same download call, made first, and the weights it caches are what open_clip then loads.
    """
    import open_clip

    try:
        open_clip.download_pretrained(open_clip.get_pretrained_cfg(arch, tag))
    except (OSError, RuntimeError) as e:  # no network, hub errors (OSError subclasses), checksum mismatch
        reason = " ".join(str(e).split())  # one line
        raise BackboneError(
            f"could not download the weights of open_clip:{arch}:{tag} (no network?): {reason} "
            f"Download them where there is network and pass the local file instead: --model open_clip:{arch}:/path/to/weights.bin "
            f"(or .pt, .safetensors)."
        ) from None


# The tiny CLIP as an open_clip model config (the JSON layout of open_clip's model_configs/), so that
# an export of it is an open_clip folder any open_clip install can build (ktmu.backbones.export).
TINY_CLIP_CONFIG: dict[str, Any] = {
    "embed_dim": 16,
    "vision_cfg": {"layers": 1, "width": 32, "head_width": 16, "patch_size": 7, "image_size": 28},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def build_tiny_clip(device: str | torch.device = "cpu", seed: int = 0, precision: str = "fp32") -> TinyClipBackbone:
    """A random-init, few-thousand-weight open_clip CLIP for tests and dry runs of the whole pipeline.

    Same code path as any open_clip model (ViT image tower, causal text transformer, open_clip's
    bundled BPE tokenizer), sized so one forward pass over 10,000 28x28 images takes about a second.
    """
    import open_clip
    from torchvision import transforms

    torch.manual_seed(seed)
    cfg = TINY_CLIP_CONFIG
    model: Any = open_clip.CLIP(embed_dim=cfg["embed_dim"], vision_cfg=open_clip.CLIPVisionCfg(**cfg["vision_cfg"]),
                                text_cfg=open_clip.CLIPTextCfg(**cfg["text_cfg"]))
    tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=cfg["text_cfg"]["context_length"])
    preprocess = transforms.Compose([transforms.Grayscale(3), transforms.Resize((28, 28)), transforms.ToTensor()])
    # The token embedding table (49408 x 32) is frozen: it is most of the weights and the tests
    # check that frozen parameters receive no update.
    return TinyClipBackbone(
        "tiny-clip", model.to(device).eval(), tokenizer, preprocess, ("token_embedding.",), precision, CLIP_TOWERS
    )
