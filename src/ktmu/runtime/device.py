"""Where and in what arithmetic precision a model runs: device resolution and autocast contexts.

Weights always stay float32, whatever the precision: unlearning steps with learning rates down to
1e-7, and a bf16 weight (8 mantissa bits) would round such an update away. Precision therefore only
chooses the dtype of the arithmetic inside :func:`autocast`.
"""
from __future__ import annotations

import contextlib
from typing import ContextManager

import torch

from ktmu.errors import KtmuError

PRECISIONS = ("fp32", "bf16", "amp-fp16")
DEVICE_FORMS = ("auto", "cpu", "cuda", "cuda:N", "mps")
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "amp-fp16": torch.float16}


class RuntimeSettingsError(KtmuError, ValueError):
    """A device or precision this machine cannot run; the message says what to use instead."""


def resolve_device(spec: str | torch.device) -> torch.device:
    """The torch device named by ``spec``: ``auto`` (CUDA if available, else CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``."""
    if isinstance(spec, torch.device):
        spec = str(spec)
    name = spec.strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if not torch.backends.mps.is_available():
            raise RuntimeSettingsError("MPS (Apple GPU) is not available on this machine; use --device cpu or --device auto.")
        return torch.device("mps")
    kind, _, index = name.partition(":")
    if kind != "cuda" or (index and not index.isdigit()):
        raise RuntimeSettingsError(
            f"unknown device {spec!r}; use one of {', '.join(DEVICE_FORMS)} (N = a GPU index, e.g. cuda:0)."
        )
    if not torch.cuda.is_available():
        raise RuntimeSettingsError("CUDA is not available on this machine; use --device cpu or --device auto.")
    if index:
        count = torch.cuda.device_count()
        if int(index) >= count:
            raise RuntimeSettingsError(
                f"device {spec!r} does not exist: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}."
            )
        return torch.device("cuda", int(index))
    return torch.device("cuda")


def check_precision(precision: str, device: str | torch.device) -> str:
    """Validate ``precision`` for ``device`` and return it; the error lists the choices or says what to use."""
    if precision not in PRECISIONS:
        raise RuntimeSettingsError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}.")
    device = torch.device(device)
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise RuntimeSettingsError(
            f"this GPU ({torch.cuda.get_device_name(device)}) does not support bf16; use --precision amp-fp16 or fp32."
        )
    return precision


def autocast(device: str | torch.device, precision: str) -> ContextManager[object]:
    """The context that runs arithmetic in ``precision`` on ``device``: nothing for fp32, else ``torch.autocast``.

    Only the name is checked here (this runs on every forward pass); :func:`check_precision` checks
    the device once, when a backbone is built.
    """
    if precision not in PRECISIONS:
        raise RuntimeSettingsError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}.")
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=_AUTOCAST_DTYPES[precision])


def needs_grad_scaler(precision: str) -> bool:
    """Whether training in ``precision`` needs a gradient scaler (float16's narrow range underflows small gradients)."""
    return precision == "amp-fp16"


__all__ = ["PRECISIONS", "RuntimeSettingsError", "autocast", "check_precision", "needs_grad_scaler", "resolve_device"]
