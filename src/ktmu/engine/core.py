"""How ktmu takes one gradient step on a backbone's trainable weights: the unlearning trainer and the relearning attack share it.

AdamW over the given weights (fused into one kernel on CUDA, :data:`OPTIMIZER_IMPLS`); a gradient scaler exactly when the backbone needs one
(:attr:`ktmu.backbones.Backbone.needs_grad_scaler`: amp-fp16, whose narrow range underflows
small gradients); gradients summed over the processes of ``accelerate launch`` in one all-reduce;
optional 0/1 gradient masks (SalUn's saliency) applied after the sum, so every process masks the
same total.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Mapping

import torch

from ktmu.backbones import Backbone
from ktmu.runtime.dist import Dist, get_dist

# How AdamW updates the weights. "auto": one fused kernel for all weights on CUDA (no per-tensor launches),
# torch's own default elsewhere (the per-tensor loop on CPU, which the embedded default's numbers were
# measured with). "fused", "foreach" (one multi-tensor launch per operation) and "for-loop" force one.
OPTIMIZER_IMPLS = ("auto", "fused", "foreach", "for-loop")
_impl = ["auto"]  # the implementation new TrainerCores use; `ktmu perf` times the others through optimizer_impl()


@contextmanager
def optimizer_impl(name: str) -> Iterator[None]:
    """Build every :class:`TrainerCore` inside the ``with`` block with AdamW implementation ``name`` (one of :data:`OPTIMIZER_IMPLS`)."""
    if name not in OPTIMIZER_IMPLS:
        raise ValueError(f"unknown AdamW implementation {name!r}; choose one of {', '.join(OPTIMIZER_IMPLS)}.")
    before = _impl[0]
    _impl[0] = name
    try:
        yield
    finally:
        _impl[0] = before


def adamw_flags(impl: str, device: torch.device) -> dict[str, bool]:
    """torch.optim.AdamW's ``fused``/``foreach`` arguments for implementation ``impl`` on ``device``."""
    if impl == "auto":
        return {"fused": True} if device.type == "cuda" else {}
    return {"fused": {"fused": True}, "foreach": {"foreach": True}, "for-loop": {"foreach": False}}[impl]


class TrainerCore:
    """The optimiser, the grad scaler, the masked backward and the all-reduce for one run of steps.

    Per step: :meth:`backward` (gradients of this process's share of the batch loss, summed over
    processes, masked), then :meth:`step`. Checks that need the summed loss (e.g. that it is
    finite) go between the two. :meth:`release` frees the gradients when the run ends.
    """

    def __init__(self, backbone: Backbone, params: Mapping[str, torch.nn.Parameter], lr: float, *, weight_decay: float = 0.0,
                 eps: float = 1e-8, masks: Mapping[str, torch.Tensor] | None = None, dist: Dist | None = None) -> None:
        self.params = dict(params)
        self.impl = _impl[0]
        self.optimizer = torch.optim.AdamW(self.params.values(), lr=lr, weight_decay=weight_decay, eps=eps,
                                           **adamw_flags(self.impl, backbone.device))
        self.scaler = torch.amp.GradScaler(backbone.device.type) if backbone.needs_grad_scaler else None
        self.masks = masks
        self.dist = dist or get_dist()

    def backward(self, loss: torch.Tensor, share: float = 1.0) -> None:
        """Set the weights' gradients to those of the batch loss, given this process's mean ``loss`` and its ``share``.

        ``share`` is the fraction of the step's batch this process's ``loss`` is the mean over
        (its images / the batch's images; 1 / processes when every process holds the whole batch),
        so that the all-reduced sum is the gradient of the batch mean. Then the masks apply.
        """
        weighted = loss.float() * share
        self.optimizer.zero_grad(set_to_none=True)
        (self.scaler.scale(weighted) if self.scaler is not None else weighted).backward()
        self.dist.all_reduce_grads_(self.params.values())
        if self.masks is not None:
            for k, p in self.params.items():
                if p.grad is not None:
                    p.grad.mul_(self.masks[k])

    @contextmanager
    @torch.no_grad()
    def perturbed(self, radius: float) -> Iterator[None]:
        """Sharpness-aware minimisation's ascent (Foret et al., 2021): inside the block the weights sit at θ + radius · g / ||g||.

        g is the gradient of the last :meth:`backward` (summed over processes, masked). A
        :meth:`backward` inside the block replaces it with the gradient at the moved weights; on
        leaving, the weights move back to θ, so that :meth:`step` applies that gradient at θ.
        """
        grads = [p.grad for p in self.params.values() if p.grad is not None]
        norm = torch.sqrt(sum((g.float() ** 2).sum() for g in grads)) if grads else torch.zeros(())
        moves = {k: p.grad * (radius / float(norm.clamp_min(1e-12))) for k, p in self.params.items() if p.grad is not None}
        for k, e in moves.items():
            self.params[k].add_(e)
        try:
            with torch.enable_grad():
                yield
        finally:
            for k, e in moves.items():
                self.params[k].sub_(e)

    def step(self) -> None:
        """Update the weights from the gradients of the last :meth:`backward`."""
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()

    def release(self) -> None:
        """Free the gradients (they would otherwise hold a second copy of the trainable weights' size)."""
        self.optimizer.zero_grad(set_to_none=True)
