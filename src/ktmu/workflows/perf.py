"""``ktmu perf``: what the engine costs, measured side by side in one run on one model and batch.

* ``step_ratio[method]``: the method's step time (through the real trainer) over a plain cross-entropy
  fine-tuning step through the same trainer, same batch and template; ``step_ratio_spread`` the lowest
  and highest per-round ratio. Methods that read neighbour images run with ``PERF_NEIGHBOURS`` per neighbour
  concept against a plain step on the same forget and neighbour images (``step_ratio_yardstick``);
  ``step_ratio_per_gradient`` divides by the forward-backward passes a step takes (2 for sharpness-aware methods).
* ``variants[name]``: ktmu's plain and nhl-kl steps under one change each (``--precisions`` fp32 / tf32 /
  bf16, ``--compile``, ``--variants`` AdamW implementation or channels-last): step times, ``speedup``
  over the run's own configuration, MFU, and for ``--compile`` the compile time (excluded from steps).
* ``vs_study[method]`` (``--baseline study``): the reference study's step (:mod:`ktmu.workflows.study_loop`,
  fp32) over ktmu's; ``vs_study_by_precision`` for nhl-kl under each timed precision;
  ``study_flop_ratio`` the two designs' model-FLOP ratio (nhl-kl) beside it; ``vs_study_run`` for a
  whole run (``--run-epochs`` x ``--run-steps``, the dogs run by default), built from measured parts.
* ``epoch_overhead_ratio``: for ``nhl-kl``, everything outside the steps (reference outputs, per-epoch
  checkpoint-selection scoring, bookkeeping) over the steps' time, ktmu's rule;
  ``epoch_overhead_ratio_study_selection`` the same under ``--selection study``; ``scoring_floor`` one
  no-grad forward pass of the image encoder over the forget set over one epoch's steps (what ktmu's
  rule cannot go below); ``scoring_ratio`` the scoring it does per epoch over the same.
* ``eval_ratio``: throughput of a full zero-shot evaluation (steady state) over the bare image encoder's
  forward on the same, already preprocessed, images; with ``--image-pipeline device``,
  ``eval_by_image_pipeline`` holds it for both pipelines, timed in the same rounds.
* ``peak_mem_mb``, ``mfu`` (plain step FLOPs / time / the device's peak for the run's precision),
  ``attention_ops``, ``host_syncs_per_step`` (CUDA), ``profile`` (``--profile``).

Every ratio is the median of per-round ratios of cells timed in interleaved rounds
(:mod:`ktmu.workflows.perf_timing`). The embedded ``mini-clip`` is measured on the real fashion world;
any other model on a synthetic world of random images (``--classes`` fine classes in groups of 7,
``--image-size`` pixels).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from ktmu.backbones import Backbone, load_backbone
from ktmu.concepts import Hierarchy
from ktmu.data import ArrayDataset, ConceptDataset, load_dataset
from ktmu.engine.config import TrainConfig
from ktmu.engine.forget_set import ForgetSet
from ktmu.engine.neighbours import NeighbourSet
from ktmu.engine.reference import Reference, compute_reference
from ktmu.engine.request import UnlearningRequest
from ktmu.engine.trainer import unlearn
from ktmu.methods import METHODS, Batch, UnlearningMethod, build_method
from ktmu.methods.terms import cross_entropy
from ktmu.workflows.perf_timing import TrainerClock, clock_for
from ktmu.workflows.perf_world import (BF16_PEAK_TFLOPS, device_bf16_peak, device_peak, input_size, peak_mb, synthetic_split,
                                       synthetic_world)

__all__ = ["BF16_PEAK_TFLOPS", "PerfOptions", "device_bf16_peak", "device_peak", "format_perf", "run_perf"]
BASELINES = ("study",)  # --baseline choices: the reference study's loop (ktmu.workflows.study_loop)


@dataclass
class PerfOptions:
    """What ``ktmu perf`` measures on."""

    model: str = "mini-clip"  # the embedded default; open_clip:ViT-B-32 (random init) for a real-size CPU check
    runtime: object | None = None  # workflows.session.RuntimeOptions (device, precision, train choice, compile, ...)
    batch_size: int = 32  # the study's batch size
    images: int = 2000  # images for eval_ratio (the first measurement used 2,000)
    methods: Sequence[str] | None = None  # None = every registered method
    image_size: int = 0  # synthetic images' side; 0 = the model's own input size
    classes: int = 14  # synthetic world: fine classes (2 coarse groups of 7)
    steps: int = 5  # timed steps per method (one epoch of `steps` batches)
    epochs: int = 10  # nhl-kl's run for the overhead ratio (its tuned epochs on mini-clip)
    repeats: int = 5  # interleaved rounds; every ratio is the median of its per-round ratios (odd: a true median)
    baseline: str | None = None  # "study": time the reference study's loop beside ktmu's step
    variants: Sequence[str] = ()  # perf_timing.VARIANTS timed beside the run's own configuration, each alone
    precisions: Sequence[str] = ()  # perf_timing.PERF_PRECISIONS timed beside --precision
    profile: bool = False  # profile one plain step and list where its time goes
    run_epochs: int = 8  # the whole-run estimate: the study's dogs run (8 epochs ...
    run_steps: int = 47  # ... of 47 steps: 1,500 forget images at batch 32)
    study_test_images: int = 500  # the study's forget-test split on the dogs' difficult level (10 breeds x 50), for its test passes


class _PlainCE(UnlearningMethod):
    """Plain fine-tuning on the forget batch (cross-entropy of the fine labels): the yardstick step."""

    name = "plain-ce"

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        return {"loss": cross_entropy(batch.fine_logits, batch.fine_target).mean()}


class _PlainCENeighbours(_PlainCE):
    """Plain fine-tuning on the forget batch and the step's neighbour images: the yardstick of methods that read neighbours
    (their step encodes those images too, so a fair yardstick does the same)."""

    name = "plain-ce+neighbours"
    needs_neighbours = True

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        nb = batch.neighbours
        logits, target = torch.cat([batch.fine_logits, nb.fine_logits]), torch.cat([batch.fine_target, nb.fine_target])
        return {"loss": cross_entropy(logits, target).mean()}


YARDSTICKS = {"plain-ce": _PlainCE, "plain-ce+neighbours": _PlainCENeighbours}
PERF_NEIGHBOURS = 16  # K neighbour images per neighbour concept for the methods that read them (the recipes' --neighbours 16)


def method_named(name: str) -> UnlearningMethod:
    """A registered method, or a plain cross-entropy yardstick (``plain-ce``, ``plain-ce+neighbours``)."""
    return YARDSTICKS[name]() if name in YARDSTICKS else build_method(name)


def yardstick(method: str) -> str:
    """The plain step ``method``'s step_ratio is measured against: with the neighbour images when the method reads them."""
    return "plain-ce+neighbours" if method_named(method).needs_neighbours else "plain-ce"


@dataclass
class Bench:
    """One ``ktmu perf`` run's model, world, forget set, evaluation split and the original's weights and outputs."""

    opts: PerfOptions
    runtime: object
    backbone: Backbone
    world: Hierarchy
    forget: ForgetSet
    evalset: ConceptDataset
    original: dict[str, torch.Tensor]
    reference: Reference
    neighbours: NeighbourSet | None = None  # PERF_NEIGHBOURS per neighbour concept, for the methods that read them
    notes: list[str] = field(default_factory=list)  # said once with the results (e.g. what a baseline could not time)
    study: object | None = None  # perf_parts.StudyBaseline once --baseline study has built it

    @property
    def device(self) -> torch.device:
        return self.backbone.device

    def config(self, epochs: int = 1, selection: str = "ours") -> TrainConfig:
        return TrainConfig(lr=1e-7, epochs=epochs, batch_size=self.opts.batch_size, workers=self.runtime.workers, selection=selection)

    def run(self, method: str, cfg: TrainConfig | None = None, shared_reference: bool = True) -> dict[str, float]:
        """The trainer's seconds (steps, scoring, reference, ..., total) of one run of ``method`` from the original weights."""
        self.backbone.load_trainable(self.original)
        log = unlearn(self.backbone, method_named(method), self.forget, self.world, cfg or self.config(), progress=False,
                      original=self.original, reference=self.reference if shared_reference else None, neighbours=self.neighbours)
        return log.seconds

    def timed_run(self, method: str, cfg: TrainConfig | None = None, shared_reference: bool = True) -> tuple[TrainerClock, float, dict]:
        """:meth:`run` timed by :attr:`clock`: the trainer's parts, the whole run, and the trainer's own (wall) seconds."""
        with TrainerClock(self.clock) as parts:
            t0 = self.clock()
            seconds = self.run(method, cfg, shared_reference)
            total = self.clock() - t0
        return parts, total, seconds

    @property
    def clock(self) -> Callable[[], float]:
        return clock_for(self.device)

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def setup(opts: PerfOptions) -> Bench:
    """Load the model and build the world, forget set (``batch_size x steps`` images), evaluation split and reference."""
    from ktmu.workflows.session import RuntimeOptions

    rt = opts.runtime or RuntimeOptions()
    device = torch.device(rt.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    backbone = load_backbone(opts.model, device=rt.device, precision=rt.precision)
    backbone.set_trainable(rt.train)
    split = backbone.set_image_pipeline(rt.image_pipeline)
    if rt.grad_checkpointing:
        backbone.set_grad_checkpointing(True)
    n_forget = opts.batch_size * opts.steps
    if opts.model.split(":")[0] in ("mini-clip", "tiny-clip"):
        train: ConceptDataset = load_dataset("fashion", "train")
        world = train.hierarchy
        request = UnlearningRequest.parse(world, list(world.levels["difficult"]))
        test: ConceptDataset = load_dataset("fashion", "test")
        evalset: ConceptDataset = ArrayDataset(world, "test", test.images[: opts.images], test.fine_labels[: opts.images])  # type: ignore[attr-defined]
    else:
        world = synthetic_world(opts.classes)
        size = opts.image_size or input_size(backbone)
        train = synthetic_split(world, n_forget * len(world.fine), size, seed=0)
        request = UnlearningRequest.parse(world, ["class 0"])
        evalset = synthetic_split(world, opts.images, size, seed=1)
    forget = ForgetSet.from_request(request, train, backbone.preprocess, max_per_concept=n_forget)
    methods = opts.methods or METHODS.names()
    neighbours = (NeighbourSet.from_request(request, train, backbone.preprocess, PERF_NEIGHBOURS)
                  if any(METHODS.get(m).needs_neighbours for m in methods) else None)
    original = backbone.copy_trainable()
    reference = compute_reference(backbone, forget, world, workers=rt.workers, neighbours=neighbours)
    notes = [] if split or rt.image_pipeline == "host" else [f"--image-pipeline device: {backbone.name}'s preprocessing is not the "
                                                             "standard torchvision chain, so its images are preprocessed on the host"]
    return Bench(opts, rt, backbone, world, forget, evalset, original, reference, neighbours, notes)


def load_average() -> float | None:
    """The machine's 1-minute load average (None where the OS does not say): noted with every timing."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def run_perf(opts: PerfOptions, progress: bool = False) -> dict:
    """Measure and return the perf record (``model``, ``device``, ``step_ratio``, ``epoch_overhead_ratio``, ``eval_ratio``, ...)."""
    from ktmu.workflows.perf_parts import evaluation_part, flops_part, overhead_part, steps_part, syncs_part, whole_run_part
    from ktmu.workflows.perf_profile import profile_part

    load_start = load_average()
    bench = setup(opts)
    rt = bench.runtime
    record: dict = {"model": bench.backbone.name, "device": str(bench.device), "precision": rt.precision, "train": rt.train,
                    "batch_size": opts.batch_size, "repeats": opts.repeats, "image_pipeline": rt.image_pipeline}
    t0 = time.perf_counter()
    steps = steps_part(bench, progress)
    record.update(steps)
    record.update(overhead_part(bench, progress))
    record.update(whole_run_part(bench, record))
    record.update(flops_part(bench, record))
    record.update(evaluation_part(bench))
    record["host_syncs_per_step"] = syncs_part(bench)
    if opts.profile:
        record["profile"] = profile_part(bench)
    record["peak_mem_mb"] = round(peak_mb(bench.device), 1)
    record["timing"] = {"rounds": opts.repeats, "ratio": "median of per-round ratios of interleaved cells",
                        "clock": "wall time" if bench.device.type == "cuda" else "process CPU time (fastest step of each cell on CPU)",
                        "load_average": [load_start, load_average()], "seconds": round(time.perf_counter() - t0, 1)}
    record["notes"] = bench.notes
    for source in (bench.forget.source, bench.neighbours.source if bench.neighbours else None):
        if source is not None:
            source.close()  # their persistent DataLoader workers, if any
    return record


def _fmt_ratios(values: dict[str, float]) -> str:
    return ", ".join(f"{m} {x:.2f}" for m, x in values.items())


def _widest(spreads: dict[str, list[float]]) -> str:
    """The method whose per-round ratios spread widest, as ``name lo-hi``."""
    if not spreads:
        return "-"
    m = max(spreads, key=lambda k: spreads[k][1] - spreads[k][0])
    return f"{m} {spreads[m][0]:.2f}-{spreads[m][1]:.2f}"


def _study_lines(r: dict) -> list[str]:
    run = r["run"]
    lines = [f"vs_study (the study's fp32 step / ktmu's step): {_fmt_ratios(r['vs_study'])}",
             f"  model-FLOP ratio of the two designs ({r['study_flop_method']}): {r['study_flop_ratio']:.2f}; "
             f"vs_study is {100 * r['vs_study_of_flop_ratio']:.0f} % of it",
             f"  by ktmu's configuration ({r['study_flop_method']}): {_fmt_ratios(r['vs_study_by_variant'])}",
             f"  whole run ({run['epochs']} epochs x {run['steps_per_epoch']} steps): vs_study_run {_fmt_ratios(r['vs_study_run'])}",
             f"  with the study's {r['study_tests_per_run']} forget-test passes ({r['study_test_seconds']:.1f} s each): "
             + _fmt_ratios(r["vs_study_run_with_tests"])]
    return lines


def format_perf(r: dict) -> str:
    """The perf record as a short text report."""
    lines = [f"model {r['model']} on {r['device']} ({r['precision']}, train {r['train']}), batch {r['batch_size']}, "
             f"{r['repeats']} interleaved rounds, load average {r['timing']['load_average']}",
             f"plain cross-entropy step: {r['step_seconds']['plain-ce'] * 1000:.1f} ms",
             "step_ratio (method step / plain step, median of rounds): " + _fmt_ratios(r["step_ratio"]),
             f"  worst {max(r['step_ratio'].values()):.2f}; widest spread {_widest(r['step_ratio_spread'])}; worst per forward-backward "
             f"pass {max(r['step_ratio_per_gradient'].values()):.2f} (sharpness-aware methods take 2 a step, tar-merge-mmd 1 + its attack's "
             "steps + 1)"]
    near = [m for m, y in r.get("step_ratio_yardstick", {}).items() if y != "plain-ce"]
    if near:
        lines.append(f"  {', '.join(near)}: against a plain step on the same forget and neighbour images "
                     f"({r['step_seconds']['plain-ce+neighbours'] * 1000:.1f} ms)")
    for name, v in r.get("variants", {}).items():
        extra = f", compiling {v['compile_seconds']:.1f} s (not in the step)" if v.get("compile_seconds") is not None else ""
        mfu = f", MFU {100 * v['mfu']:.1f} %" if v.get("mfu") else ""
        lines.append(f"variant {name}: plain step {v['plain_step_seconds'] * 1000:.1f} ms, speedup {v['speedup']['ratio']:.2f} "
                     f"({v['speedup']['spread'][0]:.2f}-{v['speedup']['spread'][1]:.2f}){mfu}{extra}")
    if r.get("vs_study"):
        lines += _study_lines(r)
    o = r["overhead_per_epoch"]
    lines += [f"epoch_overhead_ratio (nhl-kl, outside the steps / steps): {r['epoch_overhead_ratio']:.3f} "
              f"(with --selection study: {r['epoch_overhead_ratio_study_selection']:.3f}; with a session's shared reference: "
              f"{r['epoch_overhead_ratio_shared_reference']:.3f}); scoring {r['scoring_ratio']:.3f} "
              f"against its floor {r['scoring_floor']:.3f} (one no-grad image pass over {o['forget_images']} forget images)",
              "  " + ", ".join(f"{k} {v:.2f} s" for k, v in r["overhead_seconds"].items()) + f"; steps {r['overhead_run']['steps_seconds']:.2f} s",
              f"eval_ratio (evaluation / bare image forward throughput): {r['eval_ratio']:.3f}  "
              f"({r['eval_images_per_s']:.0f} vs {r['bare_images_per_s']:.0f} images/s)"
              + "".join(f"\n  --image-pipeline {k}: eval_ratio {v['eval_ratio']:.3f} ({v['images_per_s']:.0f} images/s"
                        f"{', preprocessed once' if v['cached'] else ', streamed'})" for k, v in r.get("eval_by_image_pipeline", {}).items()),
              f"plain step: {r['train_images_per_s']:.1f} images/s, {r['step_tflops']:.3f} TFLOP per step"
              + (f", MFU {100 * r['mfu']:.1f} % of the device's {r['precision']} peak ({r['mfu_peak_tflops']:.0f} TFLOP/s)" if r.get("mfu") else ""),
              "attention ops: " + "; ".join(f"{k}: {', '.join(v) or 'none fused'}" for k, v in r["attention_ops"].items()),
              f"peak memory: {r['peak_mem_mb']:.0f} MB"]
    if r.get("host_syncs_per_step") is not None:
        lines.append("host syncs per step: " + _fmt_ratios(r["host_syncs_per_step"]))
    if r.get("profile"):
        p = r["profile"]
        lines.append(f"profile of the plain step: {p['wall_ms_per_step']:.1f} ms, kernel time by kind "
                     + ", ".join(f"{k} {100 * v:.0f} %" for k, v in p["by_kind"].items())
                     + (f", device busy {100 * p['busy_share']:.0f} % of the wall time" if p.get("busy_share") is not None else ""))
        lines += [f"  {row['name'][:70]:70s} {row['ms']:8.2f} ms {100 * row['share']:5.1f} %" for row in p["rows"]]
    lines += [f"note: {n}" for n in r.get("notes", [])]
    return "\n".join(lines)
