"""Backbones, registered by kind, all behind the :class:`Backbone` interface."""
from __future__ import annotations

import torch

from ktmu.registry import Registry
from ktmu.runtime.device import check_precision, resolve_device
from ktmu.backbones.base import Backbone, BackboneError, Tokens

# Each kind is a Backbone subclass whose ``from_spec`` parses what follows ``kind:`` in a spec.
BACKBONES: Registry[type[Backbone]] = Registry("backbone")
BACKBONES.register("mini-clip", "ktmu.backbones.mini_clip:MiniClipBackbone")
BACKBONES.register("tiny-clip", "ktmu.backbones.open_clip_backbone:TinyClipBackbone")
BACKBONES.register("open_clip", "ktmu.backbones.open_clip_backbone:OpenClipBackbone")
BACKBONES.register("hf", "ktmu.backbones.hf_clip:HFClipBackbone")


def load_backbone(spec: str = "mini-clip", device: str | torch.device = "cpu", precision: str = "fp32") -> Backbone:
    """Build a backbone from a spec string ``KIND`` or ``KIND:REST``; each kind parses its own REST.

    - ``mini-clip``: the shipped embedded model; ``mini-clip:PATH.safetensors``: its architecture
      with other weights (e.g. an unlearned checkpoint).
    - ``tiny-clip``: random, for tests and dry runs; ``tiny-clip:PATH.safetensors``: with a checkpoint.
    - ``open_clip:ARCH`` (random init) or ``open_clip:ARCH:TAG_OR_PATH`` (a tag downloads through
      open_clip; a ktmu ``.safetensors`` checkpoint or an open_clip checkpoint file loads locally).
    - ``hf:DIR``: a transformers CLIPModel saved in local folder DIR (never downloaded);
      ``hf:DIR:CKPT.safetensors``: that model with a ktmu checkpoint's weights. REST is split at its
      last ':' only when what follows ends in ``.safetensors``, so DIR itself may contain ':'.

    ``device`` is ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (see
    :func:`ktmu.runtime.device.resolve_device`); ``precision`` is one of :data:`ktmu.runtime.device.PRECISIONS`
    and only sets the arithmetic (weights stay float32). An unknown kind raises the registry's
    did-you-mean error.
    """
    kind, _, rest = spec.partition(":")
    cls = BACKBONES.get(kind)
    device = resolve_device(device)
    check_precision(precision, device)
    return cls.from_spec(rest, device=device, precision=precision)


__all__ = ["BACKBONES", "Backbone", "BackboneError", "Tokens", "load_backbone"]
