"""``ktmu perf``: what the engine costs, measured side by side in one run on one model and batch.

* ``step_ratio[method]``: the method's mean unlearning step time (through the real trainer) divided
  by a plain cross-entropy fine-tuning step through the same trainer, same batch and template.
* ``epoch_overhead_ratio``: for ``nhl-kl`` (the study's method), everything outside the steps
  (reference outputs, per-epoch checkpoint-selection scoring, bookkeeping) over the steps' time;
  ``epoch_overhead_ratio_study_selection`` the same under ``--selection study`` (no scoring pass).
* ``eval_ratio``: throughput of a full zero-shot evaluation (steady state: the second evaluation of
  the run, as for every unlearned model after the original) over the bare image encoder's forward
  throughput on the same, already preprocessed, images.
* ``peak_mem_mb``: peak GPU memory allocated on CUDA, else the process's peak resident memory.

The embedded ``mini-clip`` is measured on the real fashion world; any other model on a synthetic
world of random images (``--classes`` fine classes in groups of 7, ``--image-size`` pixels).
"""
from __future__ import annotations

import resource
import sys
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from ktmu.backbones import Backbone, load_backbone
from ktmu.concepts import Hierarchy
from ktmu.data import ArrayDataset, ConceptDataset, load_dataset
from ktmu.data.stream import CachedImageSource, image_source
from ktmu.evaluation.zero_shot import ZeroShotEvaluator
from ktmu.engine.forget_set import ForgetSet
from ktmu.methods import METHODS, Batch, UnlearningMethod, build_method
from ktmu.methods.terms import cross_entropy
from ktmu.engine.request import UnlearningRequest
from ktmu.engine.trainer import unlearn
from ktmu.engine.config import TrainConfig


@dataclass
class PerfOptions:
    """What ``ktmu perf`` measures on."""

    model: str = "mini-clip"  # the embedded default; open_clip:ViT-B-32 (random init) for a real-size CPU check
    runtime: object | None = None  # pipeline.RuntimeOptions (device, precision, train choice, ...)
    batch_size: int = 32  # the study's batch size
    images: int = 2000  # images for eval_ratio (the measurement used 2,000)
    methods: Sequence[str] | None = None  # None = every registered method
    image_size: int = 0  # synthetic images' side; 0 = the model's own input size
    classes: int = 14  # synthetic world: fine classes (2 coarse groups of 7)
    steps: int = 5  # timed steps per method (one epoch of `steps` batches)
    epochs: int = 10  # nhl-kl's run for the overhead ratio (its tuned epochs on mini-clip)
    repeats: int = 3  # each timing is the fastest of this many round-robin repetitions (shared machines are noisy)


class _PlainCE(UnlearningMethod):
    """Plain fine-tuning on the forget batch (cross-entropy of the fine labels): the yardstick step."""

    name = "plain-ce"

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        ce = cross_entropy(batch.fine_logits, batch.fine_target).mean()
        return {"loss": ce}


def _synthetic_world(classes: int) -> Hierarchy:
    groups = max(2, (classes + 6) // 7)
    return Hierarchy.from_dict({
        "name": "synthetic",
        "coarse": [f"group {g}" for g in range(groups)],
        "fine": [{"name": f"class {i}", "parent": f"group {i % groups}"} for i in range(classes)],
        "levels": {"difficult": ["class 0"]},
    })


def _synthetic_split(world: Hierarchy, n: int, size: int, seed: int) -> ArrayDataset:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(world.fine)
    images = rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
    return ArrayDataset(world, "train", images, labels)


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20


# Dense bf16 tensor-core peaks (TFLOP/s) of common accelerators, from their vendors' data sheets.
BF16_PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0, "RTX 4090": 165.2, "RTX 3090": 71.0}


def device_bf16_peak(device: torch.device) -> float | None:
    """The device's bf16 peak in FLOP/s when known (by GPU name), else None."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, tflops in BF16_PEAK_TFLOPS.items():
        if key in name:
            return tflops * 1e12
    return None


def step_flops(backbone: Backbone, forget: ForgetSet, world: Hierarchy, batch_size: int) -> float:
    """Model FLOPs of one plain training step (forward + backward of both towers), counted by torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    images = forget.source.images(list(range(min(batch_size, len(forget))))).to(backbone.device)
    fine_tok = backbone.tokenize([f"a photo of a {n}." for n in world.fine_names])
    coarse_tok = backbone.tokenize([f"a photo of a {n}." for n in world.coarse_names])
    counter = FlopCounterMode(display=False)
    with counter:
        img = backbone.encode_image(images)
        logits = backbone.logit_scale() * img @ torch.cat([backbone.encode_text(fine_tok), backbone.encode_text(coarse_tok)]).T
        logits.logsumexp(1).mean().backward()
    backbone.model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def _timed_run(backbone: Backbone, method: UnlearningMethod, forget: ForgetSet, world: Hierarchy, cfg: TrainConfig, original) -> dict:
    backbone.load_trainable(original)
    log = unlearn(backbone, method, forget, world, cfg, progress=False, original=original)
    return log.seconds


def _input_size(backbone: Backbone) -> int:
    for t in getattr(backbone.preprocess, "transforms", []):
        size = getattr(t, "size", None)
        if size:
            return int(size if isinstance(size, int) else size[0])
    return 224


def run_perf(opts: PerfOptions, progress: bool = False) -> dict:
    """Measure and return ``{"model", "device", "precision", "step_ratio", "epoch_overhead_ratio", "eval_ratio", "peak_mem_mb", ...}``."""
    from ktmu.workflows.session import RuntimeOptions

    rt = opts.runtime or RuntimeOptions()
    device = torch.device(rt.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    backbone = load_backbone(opts.model, device=rt.device, precision=rt.precision)
    backbone.set_trainable(rt.train)
    if rt.grad_checkpointing:
        backbone.set_grad_checkpointing(True)
    embedded = opts.model.split(":")[0] in ("mini-clip", "tiny-clip")
    n_forget = opts.batch_size * opts.steps
    if embedded:
        train: ConceptDataset = load_dataset("fashion", "train")
        world = train.hierarchy
        request = UnlearningRequest.parse(world, list(world.levels["difficult"]))
        evalset: ConceptDataset = load_dataset("fashion", "test")
        evalset = ArrayDataset(world, "test", evalset.images[: opts.images], evalset.fine_labels[: opts.images])  # type: ignore[attr-defined]
    else:
        world = _synthetic_world(opts.classes)
        size = opts.image_size or _input_size(backbone)
        train = _synthetic_split(world, n_forget * len(world.fine), size, seed=0)
        request = UnlearningRequest.parse(world, ["class 0"])
        evalset = _synthetic_split(world, opts.images, size, seed=1)
    forget = ForgetSet.from_request(request, train, backbone.preprocess, max_per_concept=n_forget)
    original = backbone.copy_trainable()
    cfg = TrainConfig(lr=1e-7, epochs=1, batch_size=opts.batch_size, workers=rt.workers)

    methods = list(opts.methods or METHODS.names())
    runs: dict[str, list[float]] = {"plain-ce": [], **{m: [] for m in methods}}
    _timed_run(backbone, _PlainCE(), forget, world, cfg, original)  # warm-up (allocator, kernels, caches)
    for rep in range(opts.repeats):  # round-robin, so a burst of load elsewhere hits every method alike
        for m in runs:
            if progress:
                print(f"perf: timing {m} ({rep + 1}/{opts.repeats})", file=sys.stderr, flush=True)
            method = _PlainCE() if m == "plain-ce" else build_method(m)
            runs[m].append(_timed_run(backbone, method, forget, world, cfg, original)["steps"] / opts.steps)
    best = {m: min(v) for m, v in runs.items()}  # the least-disturbed repetition of each
    plain = best.pop("plain-ce")
    times = best
    step_ratio = {m: round(t / plain, 3) for m, t in times.items()}
    flops = step_flops(backbone, forget, world, opts.batch_size)
    peak = device_bf16_peak(device)

    overhead_cfg = TrainConfig(lr=1e-7, epochs=opts.epochs, batch_size=opts.batch_size, workers=rt.workers)
    secs = [_timed_run(backbone, build_method("nhl-kl"), forget, world, overhead_cfg, original) for _ in range(max(1, opts.repeats - 1))]
    sec = min(secs, key=lambda x: (x["total"] - x["steps"]) / x["steps"])
    overhead = {k: v for k, v in sec.items() if k not in ("steps", "total")}
    epoch_overhead_ratio = (sec["total"] - sec["steps"]) / sec["steps"]
    study_cfg = TrainConfig(lr=1e-7, epochs=opts.epochs, batch_size=opts.batch_size, workers=rt.workers, selection="study")
    sec_study = _timed_run(backbone, build_method("nhl-kl"), forget, world, study_cfg, original)

    backbone.load_trainable(original)
    ev = ZeroShotEvaluator(evalset, backbone.preprocess, batch_size=rt.eval_batch_size, workers=rt.workers)
    ev.evaluate(backbone)  # first evaluation: preprocessing cache (small in-memory splits) and warm-up
    pixels = ev.source.tensor if isinstance(ev.source, CachedImageSource) else image_source(evalset, backbone.preprocess, cache_mb=float("inf")).tensor
    backbone.model.eval()
    eval_runs, bare_runs = [], []
    for _ in range(opts.repeats):
        t0 = time.perf_counter()
        ev.evaluate(backbone)
        eval_runs.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        with torch.no_grad():
            for i in range(0, len(pixels), rt.eval_batch_size):
                backbone.encode_image(pixels[i : i + rt.eval_batch_size].to(device))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        bare_runs.append(time.perf_counter() - t0)
    eval_seconds, bare_seconds = min(eval_runs), min(bare_runs)
    return {
        "model": backbone.name,
        "device": str(device),
        "precision": rt.precision,
        "train": rt.train,
        "batch_size": opts.batch_size,
        "step_ratio": step_ratio,
        "step_seconds": {"plain-ce": round(plain, 5), **{m: round(t, 5) for m, t in times.items()}},
        "epoch_overhead_ratio": round(epoch_overhead_ratio, 3),
        "epoch_overhead_ratio_study_selection": round((sec_study["total"] - sec_study["steps"]) / sec_study["steps"], 3),
        "overhead_seconds": {k: round(v, 3) for k, v in overhead.items()},
        "overhead_run": {"method": "nhl-kl", "epochs": opts.epochs, "steps_per_epoch": opts.steps, "steps_seconds": round(sec["steps"], 3)},
        "repeats": opts.repeats,
        "eval_ratio": round(bare_seconds / eval_seconds, 3),
        "eval_images_per_s": round(len(evalset) / eval_seconds, 1),
        "bare_images_per_s": round(len(evalset) / bare_seconds, 1),
        "peak_mem_mb": round(_peak_mb(device), 1),
        "step_tflops": round(flops / 1e12, 4),
        "train_images_per_s": round(opts.batch_size / plain, 2),
        "mfu": round(flops / plain / peak, 4) if peak else None,
    }


def format_perf(r: dict) -> str:
    """The perf record as a short text report."""
    lines = [f"model {r['model']} on {r['device']} ({r['precision']}, train {r['train']}), batch {r['batch_size']}",
             f"plain cross-entropy step: {r['step_seconds']['plain-ce'] * 1000:.1f} ms",
             "step_ratio (method step / plain step): " + ", ".join(f"{m} {x:.2f}" for m, x in r["step_ratio"].items()),
             f"epoch_overhead_ratio (nhl-kl, outside the steps / steps): {r['epoch_overhead_ratio']:.3f} "
             f"(with --selection study: {r['epoch_overhead_ratio_study_selection']:.3f})  "
             + ", ".join(f"{k} {v:.2f} s" for k, v in r["overhead_seconds"].items()) + f"; steps {r['overhead_run']['steps_seconds']:.2f} s",
             f"eval_ratio (evaluation / bare image forward throughput): {r['eval_ratio']:.3f}  ({r['eval_images_per_s']:.0f} vs {r['bare_images_per_s']:.0f} images/s)",
             f"plain step: {r['train_images_per_s']:.1f} images/s, {r['step_tflops']:.3f} TFLOP per step"
             + (f", MFU {100 * r['mfu']:.1f} % of the device's bf16 peak" if r.get("mfu") else ""),
             f"peak memory: {r['peak_mem_mb']:.0f} MB"]
    return "\n".join(lines)
