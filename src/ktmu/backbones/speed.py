"""Ways to run a backbone's encoders faster without changing what they compute: torch.compile, channels-last, attention kernels.

Every switch here keeps the backbone's public API, its parameter names and its state dict: modules are
compiled in place (:meth:`torch.nn.Module.compile`), tensors change memory layout only, and the causal
text attention of open_clip's CLIP passes the causal mask it already uses as ``is_causal``.
"""
from __future__ import annotations

import types
import weakref
from typing import Callable, Iterable

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

# torch.compile modes: "default" (kernel fusion), "reduce-overhead" (also CUDA graphs, which replay a whole
# encoder pass as one launch on CUDA), "max-autotune" (also benchmarks kernel choices; slow to compile).
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")


def compile_unavailable(device: torch.device) -> str | None:
    """Why torch.compile cannot run on ``device`` in this environment, in words, or None when it can.

    Inductor generates C++ for CPU tensors (it needs a C++ compiler) and Triton kernels for CUDA tensors.
    """
    import torch._dynamo

    if not torch._dynamo.is_dynamo_supported():
        return "torch.compile does not support this Python version or platform"
    if device.type not in ("cpu", "cuda"):
        return f"ktmu compiles for CPU and CUDA devices, not {device.type}"
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        if not has_triton():
            return "Triton (which torch.compile needs for CUDA kernels) is not installed"
    from torch._inductor import cpp_builder
    from torch._inductor.exc import InvalidCxxCompiler

    try:
        cpp_builder.get_cpp_compiler()
    except InvalidCxxCompiler:
        return "no C++ compiler was found (torch.compile's inductor needs one, e.g. g++)"
    return None


# Compiled forwards by module and mode, so that switching a module back to a mode it ran in reuses what was compiled.
_COMPILED: "weakref.WeakKeyDictionary[nn.Module, dict[str, Callable]]" = weakref.WeakKeyDictionary()
# Graphs torch may compile per forward before it falls back to eager: each encoder meets a few shapes (training and
# scoring batches, fine and coarse prompt widths) with and without gradients, more than torch's default of 8.
RECOMPILE_LIMIT = 64


def compile_modules(modules: Iterable[nn.Module], mode: str) -> None:
    """Compile each module's forward in place, as :meth:`torch.nn.Module.compile` does (names and state dict unchanged).

    Shapes that vary compile once more, dynamically. The compiled forward is kept per mode.
    """
    import torch._dynamo

    if mode not in COMPILE_MODES:
        raise ValueError(f"unknown compile mode {mode!r}; choose one of {', '.join(COMPILE_MODES)}.")
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
    for m in modules:
        compiled = _COMPILED.setdefault(m, {})
        if mode not in compiled:
            compiled[mode] = torch.compile(m._call_impl, mode=None if mode == "default" else mode)
        m._compiled_call_impl = compiled[mode]  # the attribute nn.Module.compile sets and __call__ reads


def uncompile_modules(modules: Iterable[nn.Module]) -> None:
    """Undo :func:`compile_modules`: the modules run eagerly again."""
    for m in modules:
        m._compiled_call_impl = None  # nn.Module's eager default


def set_channels_last(modules: Iterable[nn.Module], enable: bool) -> None:
    """Store the 4-d weights of ``modules`` (convolutions) channels-last, or contiguous again; values are unchanged."""
    fmt = torch.channels_last if enable else torch.contiguous_format
    with torch.no_grad():
        for m in modules:
            for p in m.parameters():
                if p.dim() == 4:
                    p.data = p.data.contiguous(memory_format=fmt)


def _causal_attention(self: nn.Module, q_x: torch.Tensor, k_x: torch.Tensor | None = None, v_x: torch.Tensor | None = None,
                      attn_mask: torch.Tensor | None = None) -> torch.Tensor:
    """open_clip's ``ResidualAttentionBlock.attention`` for self-attention under the (causal) text mask, telling SDPA it is causal.

    With ``is_causal`` and no padding mask, ``nn.MultiheadAttention`` hands SDPA no mask tensor, so
    SDPA may choose a flash kernel, which an explicit additive mask rules out on CUDA. The mask is
    the same causal mask: bit-identical features on CPU (``tests/test_speed.py``).
    """
    if k_x is not None or v_x is not None or attn_mask is None:
        return type(self).attention(self, q_x, k_x, v_x, attn_mask)
    return self.attn(q_x, q_x, q_x, need_weights=False, attn_mask=attn_mask.to(q_x.dtype), is_causal=True)[0]


def use_causal_attention(blocks: Iterable[nn.Module]) -> int:
    """Give each of open_clip's ``ResidualAttentionBlock`` in ``blocks`` the causal attention above; returns how many changed."""
    from open_clip.transformer import ResidualAttentionBlock

    changed = 0
    for block in blocks:
        if type(block) is ResidualAttentionBlock:  # a subclass may attend differently: leave it alone
            block.attention = types.MethodType(_causal_attention, block)
            changed += 1
    return changed


class _AttentionOps(TorchDispatchMode):
    """Records the attention operators (aten names) that run inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: set[str] = set()

    def __torch_dispatch__(self, func, _types, args=(), kwargs=None):  # noqa: ANN001 - torch's dispatch protocol
        name = func.overloadpacket.__name__
        if "attention" in name or "sdp" in name:
            self.ops.add(name.lstrip("_"))
        return func(*args, **(kwargs or {}))


def attention_ops(run: Callable[[], object]) -> list[str]:
    """The attention operators ``run()`` dispatches to, e.g. ``scaled_dot_product_flash_attention`` (CUDA flash),
    ``scaled_dot_product_efficient_attention`` (memory-efficient), ``scaled_dot_product_cudnn_attention``,
    ``scaled_dot_product_flash_attention_for_cpu``; an empty list when no fused kernel runs (SDPA's
    math fallback decomposes into matrix products and a softmax)."""
    recorder = _AttentionOps()
    with recorder:
        run()
    return sorted(recorder.ops)
