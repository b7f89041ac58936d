"""Any open_clip architecture, with a pretrained tag (needs network on first use) or a local checkpoint."""
from __future__ import annotations

from pathlib import Path

from .base import Backbone, BackboneError


def build_open_clip(arch: str, pretrained: str | None = None, device: str = "cpu", frozen_prefixes: tuple[str, ...] = ()) -> Backbone:
    """Build ``arch`` (e.g. ``ViT-L-14``) with ``pretrained`` = a tag such as ``openai``, a local file, or None (random).

    ``.safetensors`` files written by ktmu are loaded through :meth:`Backbone.load_weights`; other
    local files and tags go through open_clip's own loader.
    """
    import open_clip

    if arch not in open_clip.list_models():
        from ..registry import suggest

        raise BackboneError(f"unknown open_clip architecture {arch!r}.{suggest(arch, open_clip.list_models())}")
    ktmu_ckpt = pretrained is not None and Path(pretrained).suffix == ".safetensors" and Path(pretrained).is_file()
    if pretrained and not ktmu_ckpt and not Path(pretrained).exists():
        tags = open_clip.list_pretrained_tags_by_model(arch)
        if pretrained not in tags:
            raise BackboneError(
                f"{pretrained!r} is neither a file nor a pretrained tag of {arch}; tags: {', '.join(tags) or 'none'}."
            )
    model, _, preprocess = open_clip.create_model_and_transforms(
        arch, pretrained=None if ktmu_ckpt else pretrained, device=device, pretrained_text=False
    )
    backbone = Backbone(f"open_clip:{arch}", model.eval(), open_clip.get_tokenizer(arch), preprocess, frozen_prefixes)
    if ktmu_ckpt:
        backbone.load_weights(pretrained)  # type: ignore[arg-type]
    return backbone
