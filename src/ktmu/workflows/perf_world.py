"""What ``ktmu perf`` measures on and against: its worlds, the model FLOPs of a step, and the devices' peak rates."""
from __future__ import annotations

import resource
import sys
from typing import Callable

import numpy as np
import torch

from ktmu.backbones import Backbone
from ktmu.concepts import Hierarchy
from ktmu.data import ArrayDataset

# Dense peaks (TFLOP/s, no sparsity) from the vendors' data sheets, by a substring of the GPU's name (first match wins,
# so longer names come first). fp32: CUDA cores; tf32 and bf16: tensor cores.
PEAK_TFLOPS: dict[str, dict[str, float]] = {
    "H200": {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4},
    "H100": {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4},
    "A100": {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0},
    "A6000": {"fp32": 38.7, "tf32": 77.4, "bf16": 154.8},
    "L40S": {"fp32": 91.6, "tf32": 183.0, "bf16": 362.0},
    "L4": {"fp32": 30.3, "tf32": 60.0, "bf16": 121.0},
    "A10": {"fp32": 31.2, "tf32": 62.5, "bf16": 125.0},
    "RTX 4090": {"fp32": 82.6, "tf32": 82.6, "bf16": 165.2},
    "RTX 3090": {"fp32": 35.6, "tf32": 35.6, "bf16": 71.0},
}
BF16_PEAK_TFLOPS = {k: v["bf16"] for k, v in PEAK_TFLOPS.items()}  # kept for scripts written against the bf16-only table


def device_peak(device: torch.device, precision: str) -> float | None:
    """The device's dense peak in FLOP/s for ``precision`` (fp32, tf32, bf16; amp-fp16 counts as bf16), when known; else None."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    kind = {"amp-fp16": "bf16"}.get(precision, precision)
    for key, peaks in PEAK_TFLOPS.items():
        if key in name:
            return peaks[kind] * 1e12
    return None


def device_bf16_peak(device: torch.device) -> float | None:
    """The device's bf16 peak in FLOP/s when known (by GPU name), else None."""
    return device_peak(device, "bf16")


def peak_mb(device: torch.device) -> float:
    """Peak GPU memory allocated on CUDA, else the process's peak resident memory, in MB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20


def synthetic_world(classes: int) -> Hierarchy:
    """``classes`` fine classes in coarse groups of about 7 (99 classes: the dogs world's size); ``class 0`` is forgotten."""
    groups = max(2, (classes + 6) // 7)
    return Hierarchy.from_dict({
        "name": "synthetic",
        "coarse": [f"group {g}" for g in range(groups)],
        "fine": [{"name": f"class {i}", "parent": f"group {i % groups}"} for i in range(classes)],
        "levels": {"difficult": ["class 0"]},
    })


def synthetic_split(world: Hierarchy, n: int, size: int, seed: int) -> ArrayDataset:
    """``n`` seeded random RGB images of ``size`` pixels, labelled round-robin over the world's fine classes."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(world.fine)
    images = rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
    return ArrayDataset(world, "train", images, labels)


def input_size(backbone: Backbone) -> int:
    """The side in pixels of the images the backbone's preprocessing makes (224 when it does not say)."""
    for t in getattr(backbone.preprocess, "transforms", []):
        size = getattr(t, "size", None)
        if size:
            return int(size if isinstance(size, int) else size[0])
    return 224


def count_flops(run: Callable[[], torch.Tensor], backbone: Backbone) -> float:
    """Model FLOPs of ``run()`` (a forward returning the loss) and its backward, as torch's FlopCounterMode counts them.

    It counts matrix products, convolutions and CUDA attention kernels (not CPU flash attention, a
    few per cent of a ViT's FLOPs). The encoders run eagerly while counting.
    """
    from torch.utils.flop_counter import FlopCounterMode

    mode = backbone.compiled
    if mode:
        backbone.uncompile()
    counter = FlopCounterMode(display=False)
    try:
        with counter:
            run().backward()
    finally:
        backbone.model.zero_grad(set_to_none=True)
        if mode:
            backbone.compile(mode)
    return float(counter.get_total_flops())
