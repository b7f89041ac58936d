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


def build_tiny_clip(device: str = "cpu", seed: int = 0) -> Backbone:
    """A random-init, few-thousand-weight open_clip CLIP for tests and dry runs of the whole pipeline.

    Same code path as any open_clip model (ViT image tower, causal text transformer, open_clip's
    bundled BPE tokenizer), sized so one forward pass over 10,000 28x28 images takes about a second.
    """
    import open_clip
    import torch
    from torchvision import transforms

    torch.manual_seed(seed)
    model = open_clip.CLIP(
        embed_dim=16,
        vision_cfg=open_clip.CLIPVisionCfg(layers=1, width=32, head_width=16, patch_size=7, image_size=28),
        text_cfg=open_clip.CLIPTextCfg(context_length=16, vocab_size=49408, width=32, heads=2, layers=1),
    )
    tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=16)
    preprocess = transforms.Compose([transforms.Grayscale(3), transforms.Resize((28, 28)), transforms.ToTensor()])
    # The token embedding table (49408 x 32) is frozen: it is most of the weights and the tests
    # check that frozen parameters receive no update.
    return Backbone("tiny-clip", model.to(device).eval(), tokenizer, preprocess, frozen_prefixes=("token_embedding.",))
