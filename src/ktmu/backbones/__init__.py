"""Backbones, registered by name, all behind the :class:`Backbone` interface."""
from __future__ import annotations

from typing import Callable

from ..registry import Registry
from .base import Backbone, BackboneError

BACKBONES: Registry[Callable[..., Backbone]] = Registry("backbone")
BACKBONES.register("mini-clip", "ktmu.backbones.mini_clip:build_mini_clip")
BACKBONES.register("open_clip", "ktmu.backbones.open_clip_backbone:build_open_clip")
BACKBONES.register("tiny-clip", "ktmu.backbones.open_clip_backbone:build_tiny_clip")


def load_backbone(spec: str = "mini-clip", device: str = "cpu") -> Backbone:
    """Build a backbone from a spec string.

    ``mini-clip`` (the shipped embedded model), ``tiny-clip`` (random, for tests and dry runs), ``mini-clip:PATH.safetensors`` (its architecture
    with other weights, e.g. an unlearned checkpoint), ``open_clip:ARCH`` (random init) or
    ``open_clip:ARCH:TAG_OR_PATH``.
    """
    kind, _, rest = spec.partition(":")
    build = BACKBONES.get(kind)
    if kind.lower() == "tiny-clip":
        return build(device=device)
    if kind.lower() == "mini-clip":
        return build(weights=rest or None, device=device)
    if not rest:
        raise BackboneError(f"spec {spec!r} needs an architecture, e.g. open_clip:ViT-B-32:openai.")
    arch, _, pretrained = rest.partition(":")
    return build(arch, pretrained=pretrained or None, device=device)


__all__ = ["BACKBONES", "Backbone", "BackboneError", "load_backbone"]
