"""How ``ktmu perf`` times: configurations of one backbone, and timed cells run in interleaved rounds with medians and spreads.

A *cell* is one timed measurement (e.g. one method's steps under one configuration) that returns
seconds. :func:`interleaved` runs every cell once per round, in an order rotated by one place each
round, so that a burst of load elsewhere on a shared machine lands on different cells in different
rounds; a ratio of two cells is the median of their per-round ratios (:func:`paired`), which one
disturbed round cannot move.
"""
from __future__ import annotations

import statistics
import sys
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from typing import Callable, Iterator, Mapping, Sequence

import torch

from ktmu.backbones import Backbone
from ktmu.engine.core import optimizer_impl
from ktmu.errors import UsageError

# Variants of ktmu's step that `ktmu perf --variants` times against the run's own configuration (each alone).
VARIANTS = ("adamw-fused", "adamw-foreach", "adamw-for-loop", "channels-last")
PERF_PRECISIONS = ("fp32", "tf32", "bf16")  # tf32: fp32 weights and inputs, TF32 tensor-core matrix products (CUDA only)


@dataclass(frozen=True)
class Config:
    """One way of running ktmu's step on a backbone: arithmetic, compiler, AdamW implementation, memory layout."""

    name: str
    precision: str = "fp32"  # the backbone's precision (fp32 | bf16 | amp-fp16)
    tf32: bool = False  # TF32 matrix products and convolutions (CUDA)
    compile: str | None = None  # torch.compile mode, None = eager
    adamw: str = "auto"  # ktmu.engine.core.OPTIMIZER_IMPLS
    channels_last: bool = False


def base_config(precision: str) -> Config:
    """The run's own configuration (``--precision``; eager; AdamW auto; contiguous)."""
    return Config("base", precision)


def variant_configs(base: Config, variants: Sequence[str], precisions: Sequence[str], compile_mode: str | None,
                    device: torch.device) -> list[Config]:
    """The configurations timed beside ``base``: each changes one thing. Refuses what cannot run on ``device``."""
    out: list[Config] = []
    for p in precisions:
        if p not in PERF_PRECISIONS:
            raise UsageError(f"--precisions takes {', '.join(PERF_PRECISIONS)}, not {p!r}.")
        if p == "tf32" and device.type != "cuda":
            raise UsageError("--precisions tf32 is a CUDA tensor-core mode; on this device time fp32 and bf16 only.")
        if (p, False) != (base.precision, base.tf32):
            out.append(replace(base, name=p, precision="fp32" if p == "tf32" else p, tf32=p == "tf32"))
    for v in variants:
        if v not in VARIANTS:
            raise UsageError(f"--variants takes {', '.join(VARIANTS)}, not {v!r}.")
        if v.startswith("adamw-"):
            out.append(replace(base, name=v, adamw=v.removeprefix("adamw-")))
        else:
            out.append(replace(base, name=v, channels_last=True))
    if compile_mode:
        out.append(replace(base, name=f"compile-{compile_mode}", compile=compile_mode))
    return out


@contextmanager
def tf32(enable: bool) -> Iterator[None]:
    """TF32 matrix products and convolutions on CUDA inside the block (torch's defaults restored after)."""
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    if enable:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


@contextmanager
def applied(backbone: Backbone, config: Config) -> Iterator[None]:
    """Run ``backbone`` under ``config`` inside the block, and as it was after."""
    precision, compiled, channels_last = backbone.precision, backbone.compiled, backbone.channels_last
    with ExitStack() as stack:
        backbone.precision = config.precision
        if config.compile != compiled:
            backbone.compile(config.compile) if config.compile else backbone.uncompile()
        if config.channels_last != channels_last:
            backbone.set_channels_last(config.channels_last)
        stack.enter_context(tf32(config.tf32))
        stack.enter_context(optimizer_impl(config.adamw))
        try:
            yield
        finally:
            backbone.precision = precision
            if backbone.compiled != compiled:
                backbone.compile(compiled) if compiled else backbone.uncompile()
            if backbone.channels_last != channels_last:
                backbone.set_channels_last(channels_last)


def clock_for(device: torch.device) -> Callable[[], float]:
    """The clock ``ktmu perf`` times with: wall time on CUDA; on CPU the process's CPU time, which other processes
    competing for the cores of a shared machine do not inflate (waiting for a core is not counted)."""
    return time.perf_counter if device.type == "cuda" else time.process_time


class TrainerClock:
    """Time the trainer spends in its parts inside ``with TrainerClock(clock):``: each step, each epoch's steps,
    each epoch's checkpoint selection and the reference pass.

    It wraps those functions of :mod:`ktmu.engine.trainer` for the duration of the block (and only
    then), so that a cell can be timed by ``clock`` (:func:`clock_for`) and by its fastest step (CPU).
    """

    PARTS = ("_train_step", "_train_epoch", "_select", "compute_reference")

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.seconds: dict[str, list[float]] = {p: [] for p in self.PARTS}

    def _timed(self, name: str, real: Callable) -> Callable:
        def timed(*args, **kwargs):  # noqa: ANN002, ANN003 - the trainer's own function, timed
            t0 = self.clock()
            try:
                return real(*args, **kwargs)
            finally:
                self.seconds[name].append(self.clock() - t0)
        return timed

    def __enter__(self) -> "TrainerClock":
        import ktmu.engine.trainer as trainer

        self._trainer = trainer
        self._real = {p: getattr(trainer, p) for p in self.PARTS}
        for p, real in self._real.items():
            setattr(trainer, p, self._timed(p, real))
        return self

    def __exit__(self, *exc: object) -> None:
        for p, real in self._real.items():
            setattr(self._trainer, p, real)

    def total(self, part: str) -> float:
        return sum(self.seconds[part])

    def per_step(self, device: torch.device) -> float:
        """Seconds per step: the fastest step on CPU (other processes on a shared machine only ever add time to a step, so the
        least disturbed step is the one closest to the step's own cost; the median moved ratios by up to 20 % at a load of 5
        on 2 cores); on CUDA the epochs' steps over their count (a single step's own time
        would need a host sync at each of its ends, which changes what is timed)."""
        steps = self.seconds["_train_step"]
        if device.type == "cuda" or not steps:
            return self.total("_train_epoch") / max(1, len(steps))
        return min(steps)


def interleaved(cells: Mapping[str, Callable[[], float]], repeats: int, progress: bool = False) -> dict[str, list[float]]:
    """Each cell's seconds, one per round; round ``r`` runs the cells in their order rotated by ``r`` places."""
    names = list(cells)
    out: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        shift = r % len(names) if names else 0
        for n in names[shift:] + names[:shift]:
            if progress:
                print(f"perf: round {r + 1}/{repeats}: {n}", file=sys.stderr, flush=True)
            out[n].append(cells[n]())
    return out


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def paired(numerator: Sequence[float], denominator: Sequence[float]) -> tuple[float, list[float]]:
    """The median of per-round ratios and their spread ``[lowest, highest]``."""
    ratios = [a / b for a, b in zip(numerator, denominator)]
    return median(ratios), [min(ratios), max(ratios)]


def summary(numerator: Sequence[float], denominator: Sequence[float], digits: int = 3) -> dict[str, float | list[float]]:
    """``{"ratio", "spread"}`` of :func:`paired`, rounded."""
    ratio, spread = paired(numerator, denominator)
    return {"ratio": round(ratio, digits), "spread": [round(x, digits) for x in spread]}
