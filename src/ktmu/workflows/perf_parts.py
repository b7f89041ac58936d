"""The measurements of ``ktmu perf``, one function per part of its record (:mod:`ktmu.workflows.perf` puts them together)."""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Callable

import torch

from ktmu.backbones.speed import attention_ops
from ktmu.data.device_preprocess import DevicePreprocess, pipeline_preprocess
from ktmu.data.stream import CachedImageSource, chunked, image_source, iter_batches
from ktmu.engine.trainer import StepInputs
from ktmu.evaluation.zero_shot import ZeroShotEvaluator
from ktmu.methods import METHODS
from ktmu.prompts import eval_templates, train_templates
from ktmu.workflows.perf import Bench, method_named, yardstick
from ktmu.workflows.perf_timing import Config, applied, base_config, interleaved, median, summary, variant_configs
from ktmu.workflows.perf_world import count_flops, device_peak
from ktmu.workflows.study_loop import (StudyLoop, fp32, frozen_copy, study_tests_per_run, study_tests_seconds)

FLOP_METHOD = "nhl-kl"  # the study's method: the design whose FLOPs and whole run are compared


@dataclass
class StudyBaseline:
    """The study's loop per method, with what its runs cost besides the steps."""

    loops: dict[str, StudyLoop]
    copy_seconds: list[float] = field(default_factory=list)  # the state copied to the CPU after a kept epoch
    template_seconds: float = 0.0  # one template's fine and coarse prompts, full context, no gradients (its test passes)


def _study(bench: Bench, methods: list[str]) -> StudyBaseline:
    """The study's loop for each method, sharing one frozen original, and its one-template text cost."""
    backbone = bench.backbone
    backbone.load_trainable(bench.original)
    original = frozen_copy(backbone)
    text = [p.requires_grad for n, p in backbone.model.named_parameters() if n.startswith(backbone.towers.get("text", ()))]
    if not any(text):
        bench.notes.append(f"--baseline study: {backbone.name} trains no text weight here, so the study's gradient through the text tower "
                           "does not apply; its per-step text encoding (every prompt, full context, no cache) is timed as it runs")
    elif not all(text):
        bench.notes.append(f"--baseline study: {backbone.name} trains only {sum(text)} of its text tower's {len(text)} weight tensors (the rest "
                           "is frozen, e.g. mini-clip's MiniLM), so the study's gradient runs through the trainable part only; every prompt "
                           "still goes through the whole text tower at full context each step, with no cache, as in the study")
    loops = {m: StudyLoop(backbone, original, method_named(m), bench.forget, bench.world, lr=1e-7, batch_size=bench.opts.batch_size,
                          workers=bench.runtime.workers) for m in methods}
    prompts = [t.format(n) for t in train_templates(bench.world)[:1] for n in (*bench.world.fine_names, *bench.world.coarse_names)]
    times, clock = [], bench.clock
    with fp32(original), torch.no_grad():
        for _ in range(3):
            t0 = clock()
            original.encode_texts_full_context(prompts)
            bench.sync()
            times.append(clock() - t0)
    return StudyBaseline(loops, template_seconds=median(times))


def _ktmu_cell(bench: Bench, config: Config, method: str, totals: dict) -> Callable[[], float]:
    def cell() -> float:
        with applied(bench.backbone, config):
            parts, total, _ = bench.timed_run(method)
        totals.setdefault((config.name, method), []).append(total)
        return parts.per_step(bench.device)
    return cell


def _study_cell(bench: Bench, study: StudyBaseline, method: str) -> Callable[[], float]:
    def cell() -> float:
        bench.backbone.load_trainable(bench.original)
        loop = study.loops[method]
        loop.reset()
        epoch = loop.epoch(bench.opts.steps, bench.clock)
        if epoch.kept:
            study.copy_seconds.append(epoch.copy_seconds)
        if bench.device.type == "cuda":  # as ktmu's cells: the steps' mean on CUDA, the fastest step on CPU
            return epoch.steps_seconds / bench.opts.steps
        return min(epoch.step_seconds)
    return cell


def steps_part(bench: Bench, progress: bool) -> dict:
    """Step times of every method, of the variants, and of the study's loop, timed in interleaved rounds."""
    opts, rt = bench.opts, bench.runtime
    methods = list(opts.methods or METHODS.names())
    base = base_config(rt.precision)
    configs = variant_configs(base, opts.variants, opts.precisions, rt.compile, bench.device)
    totals: dict = {}
    sticks = {m: yardstick(m) for m in methods}
    plains = sorted(set(sticks.values()) | {"plain-ce"}, key=len)
    cells = {("base", m): _ktmu_cell(bench, base, m, totals) for m in (*plains, *methods)}
    for c in configs:
        cells.update({(c.name, m): _ktmu_cell(bench, c, m, totals) for m in ("plain-ce", FLOP_METHOD)})
    studied = [m for m in methods if not method_named(m).needs_neighbours]  # the study's protocol trains on no neighbour image
    if opts.baseline == "study" and len(studied) < len(methods):
        bench.notes.append("--baseline study: the study's loop has no neighbour images, so vs_study leaves out "
                           + ", ".join(m for m in methods if m not in studied))
    if opts.baseline == "study" and studied:
        bench.study = _study(bench, studied)
        cells.update({("study", m): _study_cell(bench, bench.study, m) for m in studied})
    warm = {}
    for c in (base, *configs):  # compiles, allocates, fills caches; a compiled config's first run holds its compile time
        with applied(bench.backbone, c):
            warm[c.name] = bench.timed_run("plain-ce")[1]
            bench.run(FLOP_METHOD)
    if bench.study:
        _study_cell(bench, bench.study, studied[0])()
    times = interleaved({f"{a}/{b}": f for (a, b), f in cells.items()}, opts.repeats, progress)
    t = {tuple(k.split("/", 1)): v for k, v in times.items()}
    plain = t[("base", "plain-ce")]
    out: dict = {
        "step_ratio": {m: summary(t[("base", m)], t[("base", sticks[m])])["ratio"] for m in methods},
        "step_ratio_spread": {m: summary(t[("base", m)], t[("base", sticks[m])])["spread"] for m in methods},
        "step_ratio_yardstick": sticks,
        # over the forward-backward passes a step takes by design (2 for sharpness-aware methods: the ascent, then the step)
        "step_ratio_per_gradient": {m: round(summary(t[("base", m)], t[("base", sticks[m])])["ratio"] / _gradients(m), 3) for m in methods},  # the plain step each ratio divides by: with the neighbour images for methods that read them
        "step_seconds": {m: round(median(t[("base", m)]), 5) for m in (*plains, *methods)},
        "variants": {c.name: _variant(c, t, plain, totals, warm) for c in configs},
    }
    if bench.study:
        out["study_step_seconds"] = {m: round(median(t[("study", m)]), 5) for m in studied}
        out["vs_study"] = {m: summary(t[("study", m)], t[("base", m)])["ratio"] for m in studied}
        out["vs_study_spread"] = {m: summary(t[("study", m)], t[("base", m)])["spread"] for m in studied}
        study_method = FLOP_METHOD if FLOP_METHOD in studied else studied[0]
        out["vs_study_by_variant"] = {"base": out["vs_study"][study_method], **{
            c.name: summary(t[("study", study_method)], t[(c.name, FLOP_METHOD)])["ratio"] for c in configs if study_method == FLOP_METHOD}}
    return out


def _gradients(method: str) -> float:
    """Forward-backward passes per step: 2 for a sharpness-aware method (its ascent step), 1 + (the attack's steps + 1) / its
    ``every`` for a method that simulates a relearning attack (each of those on half the batch), else 1."""
    m = method_named(method)
    adversary = m.relearning_adversary()
    return (2 if m.sharpness_radius() else 1) + ((adversary.steps + 1) / adversary.every if adversary is not None else 0)


def _variant(c: Config, t: dict, plain: list[float], totals: dict, warm: dict) -> dict:
    v = {"precision": "tf32" if c.tf32 else c.precision, "compile": c.compile, "adamw": c.adamw, "channels_last": c.channels_last,
         "plain_step_seconds": round(median(t[(c.name, "plain-ce")]), 5), f"{FLOP_METHOD}_step_seconds": round(median(t[(c.name, FLOP_METHOD)]), 5),
         "speedup": summary(plain, t[(c.name, "plain-ce")])}
    if c.compile:  # the warm-up run compiled (training and scoring graphs); its excess over the same cell's timed runs
        v["compile_seconds"] = round(warm[c.name] - median(totals[(c.name, "plain-ce")]), 2)
    return v


def _floor(bench: Bench) -> float:
    """Seconds of the floor of ktmu's checkpoint scoring: one no-grad image forward over the forget set, batched as scoring batches."""
    b = bench.backbone
    b.model.eval()
    chunks = chunked(range(len(bench.forget)), 256)  # forget_scores' batch size
    bench.sync()
    clock = bench.clock
    t0 = clock()
    with torch.no_grad():
        for images, _ in iter_batches(bench.forget.source, chunks, b.device, bench.runtime.workers):
            b.encode_image(images)
    bench.sync()
    return clock() - t0


def overhead_part(bench: Bench, progress: bool) -> dict:
    """nhl-kl runs of ``--epochs`` x ``--steps`` under both selection rules, and the scoring floor, in interleaved rounds."""
    opts = bench.opts
    runs: dict[str, list[dict[str, float]]] = {"ours": [], "study": []}

    def run_cell(rule: str) -> Callable[[], float]:
        def cell() -> float:
            parts, total, seconds = bench.timed_run(FLOP_METHOD, bench.config(opts.epochs, rule), shared_reference=False)  # as one run
            runs[rule].append({"steps": parts.total("_train_epoch"), "scoring": parts.total("_select"),
                               "reference": parts.total("compute_reference"), "total": total, "trainer": seconds})
            return total
        return cell

    floors = interleaved({"ours": run_cell("ours"), "study": run_cell("study"), "floor": lambda: _floor(bench)}, opts.repeats, progress)["floor"]
    ours, study = runs["ours"], runs["study"]
    outside = lambda s: (s["total"] - s["steps"]) / s["steps"]  # noqa: E731
    ratios = [outside(s) for s in ours]
    mid = ours[sorted(range(len(ours)), key=lambda i: ratios[i])[len(ours) // 2]]  # the median round, for the breakdown
    return {
        "epoch_overhead_ratio": round(median(ratios), 3),
        "epoch_overhead_ratio_study_selection": round(median([outside(s) for s in study]), 3),
        # the same without the reference pass, which a session computes once for all its methods and seeds
        "epoch_overhead_ratio_shared_reference": round(median([(s["total"] - s["steps"] - s["reference"]) / s["steps"] for s in ours]), 3),
        "scoring_floor": round(median([f / (s["steps"] / opts.epochs) for f, s in zip(floors, ours)]), 3),
        "scoring_ratio": round(median([s["scoring"] / s["steps"] for s in ours]), 3),
        "overhead_seconds": {k: round(v, 3) for k, v in mid["trainer"].items() if k not in ("steps", "total")},  # the trainer's wall clock
        "overhead_run": {"method": FLOP_METHOD, "epochs": opts.epochs, "steps_per_epoch": opts.steps, "steps_seconds": round(mid["steps"], 3)},
        "overhead_per_epoch": {"floor_seconds": round(median(floors), 4), "scoring_seconds": round(median([s["scoring"] for s in ours]) / opts.epochs, 4),
                               "reference_seconds": round(median([s["reference"] for s in ours]), 4),
                               "other_seconds_per_run": round(median([s["total"] - s["steps"] - s["scoring"] - s["reference"] for s in ours]), 4),
                               "forget_images": len(bench.forget)},
    }


def whole_run_part(bench: Bench, record: dict) -> dict:
    """ktmu's and the study's seconds for a whole run of ``--run-epochs`` x ``--run-steps``, from the measured parts.

    ktmu: the steps, each epoch's scoring (its image pass scaled to the run's forget set, its text part
    as measured), the once-per-run reference pass (methods that read it) and the run's other
    bookkeeping (mostly set-up, counted once). The study:
    the steps and a state copy per epoch (its forget accuracy falls, so it keeps most epochs); with its
    forget-test passes besides. Saliency masks are left out of both (the study loads a precomputed one).
    """
    from ktmu.engine.reference import reads_reference

    study: StudyBaseline | None = bench.study  # type: ignore[assignment]
    if study is None:
        return {}
    opts, o = bench.opts, record["overhead_per_epoch"]
    epochs, steps = opts.run_epochs, opts.run_steps
    scale = steps * opts.batch_size / o["forget_images"]  # the run's forget set over the measured one
    scoring = o["floor_seconds"] * scale + max(0.0, o["scoring_seconds"] - o["floor_seconds"])
    copy = median(study.copy_seconds) if study.copy_seconds else 0.0
    per_image = o["floor_seconds"] / o["forget_images"]
    test = study_tests_seconds(study.template_seconds, len(eval_templates(bench.world)), per_image, opts.study_test_images)
    tests = study_tests_per_run(epochs, steps) * test
    ktmu_run, study_run = {}, {}
    for m, step in record["step_seconds"].items():
        if m not in record["study_step_seconds"]:  # the yardsticks, and methods the study's loop has no counterpart of
            continue
        reference = o["reference_seconds"] * scale if reads_reference(method_named(m)) else 0.0
        ktmu_run[m] = epochs * (steps * step + scoring) + reference + o["other_seconds_per_run"]
        study_run[m] = epochs * (steps * record["study_step_seconds"][m] + copy)
    return {
        "run": {"epochs": epochs, "steps_per_epoch": steps, "forget_images": steps * opts.batch_size, "study_test_images": opts.study_test_images},
        "ktmu_run_seconds": {m: round(v, 1) for m, v in ktmu_run.items()},
        "study_run_seconds": {m: round(v, 1) for m, v in study_run.items()},
        "vs_study_run": {m: round(study_run[m] / ktmu_run[m], 3) for m in ktmu_run},
        "study_test_seconds": round(test, 2), "study_tests_per_run": study_tests_per_run(epochs, steps),
        "vs_study_run_with_tests": {m: round((study_run[m] + tests) / ktmu_run[m], 3) for m in ktmu_run},
        "study_copy_seconds": round(copy, 4),
    }


def _first_batch(bench: Bench) -> tuple[torch.Tensor, torch.Tensor]:
    pos = torch.arange(min(bench.opts.batch_size, len(bench.forget)))
    return bench.forget.source.finish(bench.forget.source.images(pos).to(bench.device)), pos


def _ktmu_loss(bench: Bench, method: str) -> Callable[[], torch.Tensor]:
    m = method_named(method)
    inputs = StepInputs.build(bench.backbone, m, bench.forget, bench.world, bench.reference, torch.Generator().manual_seed(0))
    images, pos = _first_batch(bench)
    return lambda: m.loss(inputs.batch(images, pos, 0))["loss"]


def flops_part(bench: Bench, record: dict) -> dict:
    """Model FLOPs of ktmu's plain step (MFU, here and per variant), of both designs' step, and the attention ops that run."""
    b = bench.backbone
    b.load_trainable(bench.original)
    flops = count_flops(_ktmu_loss(bench, "plain-ce"), b)
    plain = record["step_seconds"]["plain-ce"]
    peak = device_peak(bench.device, bench.runtime.precision)
    out: dict = {"step_tflops": round(flops / 1e12, 4), "train_images_per_s": round(bench.opts.batch_size / plain, 2),
                 "mfu": round(flops / plain / peak, 4) if peak else None, "mfu_peak_tflops": round(peak / 1e12, 1) if peak else None}
    for v in record["variants"].values():
        vpeak = device_peak(bench.device, v["precision"])
        v["mfu"] = round(flops / v["plain_step_seconds"] / vpeak, 4) if vpeak else None
    study: StudyBaseline | None = bench.study  # type: ignore[assignment]
    if study is not None:
        m = FLOP_METHOD if FLOP_METHOD in study.loops else next(iter(study.loops))
        loop, (images, pos) = study.loops[m], _first_batch(bench)
        with fp32(b, loop.original):
            study_flops = count_flops(lambda: loop.method.loss(loop.batch(images, pos, loop.templates[0]))["loss"], b)
        ratio = study_flops / count_flops(_ktmu_loss(bench, m), b)
        out.update(study_flop_method=m, study_flop_ratio=round(ratio, 3), vs_study_of_flop_ratio=round(record["vs_study"][m] / ratio, 3))
    images, _ = _first_batch(bench)
    tokens = b.tokenize([t.format(n) for t in train_templates(bench.world)[:1] for n in bench.world.fine_names])
    out["attention_ops"] = {"image": attention_ops(lambda: b.encode_image(images)), "text": attention_ops(lambda: b.encode_text(tokens))}
    b.model.zero_grad(set_to_none=True)
    return out


def evaluation_part(bench: Bench) -> dict:
    """A full zero-shot evaluation against the bare image forward over the same preprocessed images, in interleaved rounds.

    Under ``--image-pipeline device`` the evaluation is timed under both pipelines in the same rounds
    (``eval_by_image_pipeline``); ``eval_ratio`` is the run's own pipeline's.
    """
    b, rt = bench.backbone, bench.runtime
    b.load_trainable(bench.original)
    host = pipeline_preprocess(b.preprocess, "host")
    pipelines = {"host": host, **({"device": b.preprocess} if isinstance(b.preprocess, DevicePreprocess) else {})}
    evs = {k: ZeroShotEvaluator(bench.evalset, p, batch_size=rt.eval_batch_size, workers=rt.workers) for k, p in pipelines.items()}
    for ev in evs.values():
        ev.evaluate(b)  # first evaluation: preprocessing cache (small in-memory splits), workers' start and warm-up
    src = evs["host"].source
    pixels = src.tensor if isinstance(src, CachedImageSource) else image_source(bench.evalset, host, cache_mb=float("inf")).tensor
    b.model.eval()

    clock = bench.clock

    def evaluate(ev: ZeroShotEvaluator) -> Callable[[], float]:
        def cell() -> float:
            t0 = clock()
            ev.evaluate(b)
            return clock() - t0
        return cell

    def bare() -> float:
        t0 = clock()
        with torch.no_grad():
            for i in range(0, len(pixels), rt.eval_batch_size):
                b.encode_image(pixels[i : i + rt.eval_batch_size].to(b.device))
        bench.sync()
        return clock() - t0

    t = interleaved({**{k: evaluate(ev) for k, ev in evs.items()}, "bare": bare}, bench.opts.repeats)
    for ev in evs.values():
        ev.source.close()
    n, own = len(bench.evalset), list(evs)[-1]
    out = {"eval_ratio": summary(t["bare"], t[own])["ratio"], "eval_ratio_spread": summary(t["bare"], t[own])["spread"],
           "eval_images_per_s": round(n / median(t[own]), 1), "bare_images_per_s": round(n / median(t["bare"]), 1)}
    if len(evs) > 1:
        out["eval_by_image_pipeline"] = {k: {"eval_ratio": summary(t["bare"], t[k])["ratio"], "spread": summary(t["bare"], t[k])["spread"],
                                             "images_per_s": round(n / median(t[k]), 1), "cached": isinstance(ev.source, CachedImageSource)}
                                         for k, ev in evs.items()}
    return out


def syncs_part(bench: Bench) -> dict[str, float] | None:
    """On CUDA: host synchronisations per training step (torch's sync debug mode, counted inside the trainer's step), else None."""
    if bench.device.type != "cuda":
        return None
    import ktmu.engine.trainer as trainer

    real, counts = trainer._train_step, []

    def counted(*args, **kwargs):  # noqa: ANN002, ANN003 - the trainer's own step, counted
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                return real(*args, **kwargs)
            finally:
                torch.cuda.set_sync_debug_mode("default")
                counts.append(sum("synchroniz" in str(w.message) for w in caught))

    trainer._train_step = counted
    out = {}
    try:
        for m in ("plain-ce", FLOP_METHOD):
            counts.clear()
            bench.run(m, bench.config(1, "study"))
            out[m] = round(sum(counts) / max(1, len(counts)), 2)
    finally:
        trainer._train_step = real
    return out
