"""The one unlearning loop that serves every loss-based method.

Per step: one forget-set batch (split across processes under ``accelerate launch``), one randomly
chosen prompt template (as in the study), text features for all fine and coarse class names under
that template (:class:`ktmu.backbones.encode.TemplateTextFeatures`: computed once per template
when no text weight trains), and the method's loss on the resulting logits (:class:`StepInputs`
builds the step's :class:`ktmu.methods.Batch`). Two method hooks change the step itself: a
sharpness radius (the gradient is taken at the worst nearby weights) and a relearning adversary (a
simulated fine-tuning attack whose tamper-loss gradient joins the step's: :func:`_resist_relearning`).
The frozen original model's outputs are computed
once (:mod:`ktmu.engine.reference`) and only when the method needs them. Weights are trained in
eval mode: batch-norm statistics of a forget-set-only stream would otherwise drift and damage
every other concept. The optimiser, grad scaler, masks and all-reduce are
:class:`ktmu.engine.core.TrainerCore`; the learning rate follows :class:`ktmu.engine.schedule.LrSchedule`.

After each epoch a checkpoint-selection rule (:mod:`ktmu.engine.selection`: ktmu's or the
study's, from forget-set data only) decides whether the epoch's weights are the best so far.

Lean state: the original trainable weights are held once (by the caller, on the device), the best
epoch's weights are copied into one preallocated buffer on the device, and task-vector arithmetic
runs in place where the weights live; nothing is copied to the CPU.
"""
from __future__ import annotations

import math
import random
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ktmu.backbones import Backbone
from ktmu.backbones.encode import TemplateTextFeatures, class_text_features
from ktmu.concepts import Hierarchy
from ktmu.data.stream import chunked, iter_batches
from ktmu.engine.config import TrainConfig
from ktmu.engine.core import TrainerCore
from ktmu.engine.forget_set import ForgetSet, class_mask
from ktmu.engine.neighbours import NeighbourSet
from ktmu.engine.reference import Reference, compute_reference, reads_reference
from ktmu.engine.schedule import LrSchedule, cosine_per_epoch
from ktmu.engine.selection import (STUDY_KEEPS_HIGHEST, BestWeights, Candidate, Selection, forget_scores, make_selection,
                                   resolve_selection, selection_rule)
from ktmu.errors import KtmuError
from ktmu.methods import Batch, NeighbourBatch, UnlearningMethod
from ktmu.methods.base import Adversary
from ktmu.methods.masks import saliency_mask
from ktmu.prompts import eval_templates, train_templates
from ktmu.runtime.dist import Dist, DistError, get_dist

# ForgetSet, class_mask, Reference, compute_reference, cosine_per_epoch, forget_scores, selection_rule and
# STUDY_KEEPS_HIGHEST live next door (forget_set, reference, schedule, selection) and stay importable from here.
__all__ = ["STUDY_KEEPS_HIGHEST", "ForgetSet", "Reference", "StepInputs", "TrainConfig", "TrainLog", "TrainingError", "class_mask",
           "compute_reference", "cosine_per_epoch", "forget_scores", "selection_rule", "unlearn"]


class TrainingError(KtmuError, ValueError):
    """Training that cannot go on (e.g. a non-finite loss); the message says what to change."""


@dataclass
class TrainLog:
    """What an unlearning run did: one record per epoch, the kept epoch and the rule that chose it, the rate, the time."""

    epochs: list[dict] = field(default_factory=list)
    selected_epoch: int = 0
    selection_rule: str = ""  # the rule that chose selected_epoch, in words
    selection: str = ""  # its name (TrainConfig.selection, or the method's own rule in place of "ours")
    lr: float = 0.0
    seconds: dict[str, float] = field(default_factory=dict)  # steps, scoring, reference, saliency, total, other


class Timer:
    """Seconds spent in each named part of a run; ``other`` is what the parts do not cover."""

    def __init__(self, *parts: str) -> None:
        self.start = time.perf_counter()
        self.seconds = dict.fromkeys(parts, 0.0)

    @contextmanager
    def part(self, name: str) -> Iterator[None]:
        """Count the time spent in the ``with`` block towards part ``name``."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - t0

    def report(self) -> dict[str, float]:
        """The parts, ``total`` and ``other``, rounded to 0.1 ms."""
        seconds = dict(self.seconds)
        seconds["total"] = time.perf_counter() - self.start
        seconds["other"] = seconds["total"] - sum(v for k, v in seconds.items() if k != "total")
        return {k: round(v, 4) for k, v in seconds.items()}


@dataclass
class StepInputs:
    """Everything a step's :class:`Batch` is built from besides the step's images, and the one place it is built.

    ``fine``/``coarse``: the class-name text features per training template; ``names``: those of
    every method-visible name of the forgotten concepts (feature methods only); ``reference``: the
    original's forget-set outputs (methods that read them only). A further stream of images per
    step (e.g. images of kept sibling concepts) belongs here, drawn and encoded in :meth:`batch`.
    """

    backbone: Backbone
    method: UnlearningMethod
    forget: ForgetSet
    fine: TemplateTextFeatures
    coarse: TemplateTextFeatures
    names: TemplateTextFeatures | None
    reference: Reference | None
    generator: torch.Generator  # for methods that draw random labels
    neighbours: NeighbourSet | None = None  # given only to methods with needs_neighbours

    @classmethod
    def build(cls, backbone: Backbone, method: UnlearningMethod, forget: ForgetSet, world: Hierarchy, reference: Reference | None,
              generator: torch.Generator, neighbours: NeighbourSet | None = None) -> "StepInputs":
        """The inputs of a run of ``method``: the training templates' text features, computed once where the text is frozen."""
        templates = train_templates(world)
        names = TemplateTextFeatures(backbone, list(forget.names), templates) if method.needs_features and forget.names else None
        return cls(backbone, method, forget, TemplateTextFeatures(backbone, world.fine_names, templates),
                   TemplateTextFeatures(backbone, world.coarse_names, templates), names, reference, generator,
                   neighbours if method.needs_neighbours else None)

    def batch(self, images: torch.Tensor, positions: torch.Tensor, template: int, near: tuple[torch.Tensor, torch.Tensor] | None = None) -> Batch:
        """The method's view of the forget images at ``positions`` (``images``, preprocessed) under training template ``template``.

        ``near``: the step's neighbour images and their positions in the neighbour set; they go
        through the image tower in the same forward pass as the forget images.
        """
        backbone, method = self.backbone, self.method
        fine_text, coarse_text = self.fine(template), self.coarse(template)
        both = backbone.encode_image(images if near is None else torch.cat([images, near[0]]))
        img = both[: len(images)]
        scale = backbone.logit_scale()
        extra: dict = {}
        if self.reference is not None and method.needs_reference:
            extra["ref_fine_logits"], extra["ref_coarse_logits"] = self.reference.logits(positions, template, backbone.device)
        if method.needs_features:
            extra.update(image_features=img, ref_image_features=self.reference.image[positions].to(backbone.device), fine_text=fine_text,
                         coarse_text=coarse_text, forgotten_name_text=self.names(template) if self.names is not None else None,
                         logit_scale=scale)
        if near is not None:
            extra["neighbours"] = self._neighbour_batch(both[len(images):], near[1], template, fine_text, coarse_text, scale)
        return self.forget.batch(positions, scale * img @ fine_text.T, scale * img @ coarse_text.T, generator=self.generator, **extra)

    def _neighbour_batch(self, img: torch.Tensor, positions: torch.Tensor, template: int, fine_text: torch.Tensor, coarse_text: torch.Tensor,
                         scale: torch.Tensor) -> NeighbourBatch:
        dev = img.device
        source = self.neighbours.source
        out = NeighbourBatch(scale * img @ fine_text.T, scale * img @ coarse_text.T, source.fine[positions].to(dev), source.coarse[positions].to(dev))
        if self.reference is not None and self.method.needs_reference:
            out.ref_fine_logits, out.ref_coarse_logits = self.reference.neighbour_logits(positions, template, dev)
        if self.method.needs_features:
            out.image_features = img
            out.ref_image_features = self.reference.neighbour_image[positions].to(dev)
        return out


class NeighbourStream:
    """The neighbour images of each step: ``size`` of them, in a seeded order that runs through the whole set before repeating.

    Every process takes the whole neighbour batch (its terms are then the same on every process
    and weigh 1 in total after the trainer's share-weighted all-reduce). Its generator is its own,
    so a run without neighbours draws exactly what it drew before they existed.
    """

    def __init__(self, neighbours: NeighbourSet, size: int, seed: int, device: torch.device) -> None:
        self.neighbours, self.size, self.device = neighbours, min(size, len(neighbours)), device
        self.generator = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, 4]).generate_state(1)[0]))
        self.order: list[int] = []

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next step's neighbour images (on the device) and their positions in the neighbour set."""
        if len(self.order) < self.size:
            self.order += torch.randperm(len(self.neighbours), generator=self.generator).tolist()
        batch, self.order = self.order[: self.size], self.order[self.size :]
        return next(iter_batches(self.neighbours.source, [batch], self.device, 0))


def _saliency_masks(backbone: Backbone, method: UnlearningMethod, forget: ForgetSet, world: Hierarchy, params: dict[str, torch.nn.Parameter],
                    fraction: float, cfg: TrainConfig, dist: Dist) -> dict[str, torch.Tensor]:
    """Gradient magnitude of the method's saliency loss over the whole forget set -> boolean masks.

    Gradients accumulate in the parameters' own ``.grad`` (no second copy of the weights).
    """
    for p in params.values():
        p.grad = None
    fine_text = class_text_features(backbone, world.fine_names, eval_templates(world))
    coarse_text = class_text_features(backbone, world.coarse_names, eval_templates(world))
    chunks = [torch.as_tensor(c) for c in chunked(range(len(forget)), cfg.batch_size)]
    mine = [dist.split_batch(c) for c in chunks]
    for chunk, (images, pos) in zip(chunks, iter_batches(forget.source, mine, backbone.device, cfg.workers)):
        img = backbone.encode_image(images)
        scale = backbone.logit_scale()
        batch = forget.batch(pos, scale * img @ fine_text.T, scale * img @ coarse_text.T)
        (method.saliency_loss(batch) * len(pos) / len(chunk)).backward()  # the sum over batches of each batch's mean
    dist.all_reduce_grads_(params.values())
    grads = {k: (p.grad if p.grad is not None else torch.zeros_like(p)) for k, p in params.items()}
    masks = saliency_mask(grads, fraction)
    for p in params.values():
        p.grad = None
    return masks


def _check_batches(n: int, batch_size: int, dist: Dist) -> None:
    smallest = n % batch_size or batch_size
    if min(smallest, batch_size, n) < dist.world:
        raise DistError(
            f"{dist.world} processes but a forget batch of {min(smallest, n)} image(s): every process needs at least one image per step. "
            f"Launch at most {min(smallest, n)} processes, or raise --batch-size / --max-per-concept."
        )


@dataclass
class _Run:
    """One unlearning run's moving parts, as :func:`unlearn` assembled them."""

    backbone: Backbone
    method: UnlearningMethod
    forget: ForgetSet
    cfg: TrainConfig
    dist: Dist
    inputs: StepInputs
    core: TrainerCore
    schedule: LrSchedule
    rng: random.Random  # picks each step's template
    generator: torch.Generator  # the epochs' orders, then the methods' random draws
    lr: float
    epochs: int
    steps_per_epoch: int
    near: NeighbourStream | None = None  # the neighbour images of each step (methods with needs_neighbours)
    steps_done: int = 0  # training steps taken so far (a simulated relearning attack may run on every N-th only)


def _train_step(run: _Run, batch_positions: torch.Tensor, images: torch.Tensor, pos: torch.Tensor) -> tuple[list[str], torch.Tensor]:
    """One step on this process's ``images`` (at forget-set ``pos``) of the batch ``batch_positions``.

    Returns the loss terms' names and, on the device, this process's share of their batch means
    followed by its fine-correct count under the step's logits. Nothing is read back to the host
    here (a read would wait for the device every step): :func:`_train_epoch` sums the steps and
    reads, all-reduces and checks the sums once per epoch.
    """
    template = run.rng.randrange(len(run.inputs.fine))
    near = run.near.next() if run.near is not None else None
    batch = run.inputs.batch(images, pos, template, near)
    terms = run.method.loss(batch)
    share = len(pos) / len(batch_positions)  # the all-reduce sums: weight each process by its share of the batch
    run.core.backward(terms["loss"], share)
    radius = run.method.sharpness_radius()
    if radius:  # sharpness-aware: the step takes the gradient at the worst nearby weights (same images, template and neighbours)
        with run.core.perturbed(radius):
            run.core.backward(run.method.loss(run.inputs.batch(images, pos, template, near))["loss"], share)
    adversary = run.method.relearning_adversary()
    if adversary is not None:  # the tamper loss joins the logged terms ("loss" stays what the step minimised first)
        # every process needs two images to split (the same test on every process: the attack's all-reduces must match)
        splits = len(batch_positions) >= 2 * run.dist.world
        attacked = splits and run.steps_done % adversary.every == 0
        tamper = _resist_relearning(run, adversary, images, pos, template, near, share) if attacked else terms["loss"].new_zeros(())
        terms = {**terms, "tamper": tamper}
    run.steps_done += 1
    with torch.no_grad():
        hits = (batch.fine_logits.argmax(1) == batch.fine_target).sum().float()
        values = torch.stack([*(v.detach().float() * len(pos) / len(batch_positions) for v in terms.values()), hits])
    run.core.step()
    run.schedule.after_step()
    return list(terms), values


def _resist_relearning(run: _Run, adversary: Adversary, images: torch.Tensor, pos: torch.Tensor, template: int,
                       near: tuple[torch.Tensor, torch.Tensor] | None, share: float) -> torch.Tensor:
    """Add the tamper loss's gradient at relearned weights to the step's gradient (first order; see ``relearning_adversary``); the tamper loss.

    The attack: ``adversary.steps`` Adam steps of cross-entropy on the true fine labels of the first
    half of the step's forget images (and of the first ``adversary.neighbours`` of its neighbour images, all
    when None), from the step's weights, with an optimiser of its own. At the attacked weights the method's
    :meth:`tamper_loss` on the other half (without the neighbours: no further pass over them) is
    differentiated; then the step's weights come back, their gradient the step's plus ``weight`` x that
    one (scaled and masked as the step's is). The attack's own steps use no grad scaler: under amp-fp16 its
    smallest gradients may underflow, which weakens the simulated attack, not the step.
    """
    params = run.core.params
    saved = {k: p.detach().clone() for k, p in params.items()}
    grads = {k: p.grad.clone() for k, p in params.items() if p.grad is not None}
    half = len(pos) // 2
    if near is not None and adversary.neighbours is not None:
        near = (near[0][: adversary.neighbours], near[1][: adversary.neighbours])
    attack = torch.optim.Adam(params.values(), lr=adversary.lr)
    for _ in range(adversary.steps):
        attack.zero_grad(set_to_none=True)
        b = run.inputs.batch(images[:half], pos[:half], template, near)
        loss = F.cross_entropy(b.fine_logits.float(), b.fine_target)
        if b.neighbours is not None:
            loss = loss + F.cross_entropy(b.neighbours.fine_logits.float(), b.neighbours.fine_target)
        (loss * share).backward()
        run.dist.all_reduce_grads_(params.values())
        attack.step()
    attack.zero_grad(set_to_none=True)
    tamper = run.method.tamper_loss(run.inputs.batch(images[half:], pos[half:], template)).float()
    weighted, scaler = tamper * adversary.weight * share, run.core.scaler
    (scaler.scale(weighted) if scaler is not None else weighted).backward()  # on the step's gradient scale (amp-fp16)
    run.dist.all_reduce_grads_(params.values())
    with torch.no_grad():
        for k, p in params.items():
            p.copy_(saved[k])
            if p.grad is not None and run.core.masks is not None:
                p.grad.mul_(run.core.masks[k])  # the step's gradient was masked already
            if k in grads:
                p.grad = grads[k] if p.grad is None else p.grad.add_(grads[k])
    return tamper.detach()


def _train_epoch(run: _Run, epoch: int, bar: tqdm) -> tuple[dict[str, float], float]:
    """One pass over the forget set in a seeded order: the epoch's mean loss terms and its step-time forget fine accuracy.

    A non-finite loss stops the run at the end of the epoch it appears in (no model is written).
    """
    n, size = len(run.forget), run.cfg.batch_size
    order = torch.randperm(n, generator=run.generator)
    steps = [order[s * size : (s + 1) * size] for s in range(run.steps_per_epoch)]
    mine = [run.dist.split_batch(b) for b in steps]
    sums: torch.Tensor | None = None
    seen = 0  # forget images this process trained on this epoch (a host count: no device read)
    keys: list[str] = []
    for b, (images, pos) in zip(steps, iter_batches(run.forget.source, mine, run.backbone.device, run.cfg.workers)):
        keys, values = _train_step(run, b, images, pos)
        sums = values if sums is None else sums + values
        seen += len(pos)
        bar.update(1)
    if sums is None:  # an internal bug: _check_batches gives every process at least one image per step
        raise RuntimeError(f"epoch {epoch} ran no training step")
    totals = torch.cat([sums, sums.new_tensor([float(seen)])])
    run.dist.all_reduce_sum_(totals)  # one all-reduce per epoch for the loss terms and the hit counts
    totals = totals.cpu()  # the epoch's one read-back
    if not torch.isfinite(totals[0]):
        raise TrainingError(
            f"the {run.method.name} loss became {float(totals[0])} at epoch {epoch}; no model was written. "
            f"Lower the learning rate (now {run.lr:g}) or check the method's settings."
        )
    run.schedule.after_epoch()
    losses, hits = totals[:-2], totals[-2:]  # hits: forget images this epoch trained on: fine-correct under the step's logits, seen
    return {k: float(v) / run.steps_per_epoch for k, v in zip(keys, losses)}, float(hits[0] / hits[1] * 100)


def check_neighbours(method: UnlearningMethod | type[UnlearningMethod], images: int) -> None:
    """Refuse a method that needs neighbour exemplars when it would get none (``images``: how many it gets), before anything runs."""
    if method.needs_neighbours and images == 0:
        raise TrainingError(f"method {method.name!r} learns from neighbour exemplars (images of the kept concepts next to the forgotten "
                            "ones): add --neighbours K (e.g. --neighbours 16), or pick a method that needs none.")


def _start(backbone: Backbone, method: UnlearningMethod, forget: ForgetSet, world: Hierarchy, cfg: TrainConfig, dist: Dist,
           reference: Reference | None, timer: Timer, neighbours: NeighbourSet | None = None) -> _Run:
    """The run's seeded generators, text features, the original's outputs (when the method reads them), saliency masks, optimiser and schedule."""
    gen = torch.Generator().manual_seed(cfg.seed)
    lr = cfg.lr if cfg.lr is not None else method.lr
    epochs = cfg.epochs if cfg.epochs is not None else method.epochs
    params = dict(backbone.named_trainable_parameters())
    near = neighbours if method.needs_neighbours else None
    with timer.part("reference"):
        if reads_reference(method) and (reference is None or (near is not None and reference.neighbour_image is None)):
            reference = compute_reference(backbone, forget, world, workers=cfg.workers, neighbours=near)
    inputs = StepInputs.build(backbone, method, forget, world, reference, gen, near)
    with timer.part("saliency"):
        fraction = method.update_mask_fraction()
        masks = _saliency_masks(backbone, method, forget, world, params, fraction, cfg, dist) if fraction is not None else None
    core = TrainerCore(backbone, params, lr, weight_decay=cfg.weight_decay, eps=cfg.adam_eps, masks=masks, dist=dist)
    steps_per_epoch = math.ceil(len(forget) / cfg.batch_size)
    schedule = LrSchedule(core.optimizer, cfg.schedule, epochs, steps_per_epoch, cfg.warmup_frac)
    stream = NeighbourStream(near, cfg.neighbour_batch_size, cfg.seed, backbone.device) if near is not None else None
    return _Run(backbone, method, forget, cfg, dist, inputs, core, schedule, random.Random(cfg.seed), gen, lr, epochs, steps_per_epoch, stream)


def _select(run: _Run, selection: Selection, best: BestWeights, log: TrainLog, epoch: int, losses: dict[str, float], step_acc: float,
            original: dict[str, torch.Tensor], bar: tqdm) -> None:
    """Score the epoch's weights by the selection rule, log the epoch, and copy the weights to ``best`` when they are kept."""
    candidate = Candidate(run.backbone, run.method, run.core.params, original)
    verdict = selection.consider(candidate, step_acc)
    record = {"epoch": epoch, "forget_train_fine_acc_steps": step_acc, **verdict.record, "selection_score": verdict.score, **losses}
    log.epochs.append(record)
    bar.set_postfix(epoch=epoch, forget_acc=f"{verdict.score:.1f}", loss=f"{record['loss']:.3f}")
    if verdict.keep:
        log.selected_epoch = epoch
        best.store()
    candidate.restore()


def unlearn(
    backbone: Backbone,
    method: UnlearningMethod,
    forget: ForgetSet,
    world: Hierarchy,
    cfg: TrainConfig = TrainConfig(),
    progress: bool = True,
    original: dict[str, torch.Tensor] | None = None,
    reference: Reference | None = None,
    neighbours: NeighbourSet | None = None,
) -> TrainLog:
    """Unlearn in place; on return the backbone holds the selected epoch's weights.

    ``original``: the trainable weights to start from and to negate against (the caller's single
    copy; taken from the backbone when None). ``reference``: the original's outputs on the forget
    set (and on ``neighbours``), reused across runs when given (computed here only when the method
    needs them). ``neighbours``: the neighbour exemplars (``--neighbours K``), read only by methods
    with ``needs_neighbours``.
    """
    dist = get_dist()
    timer = Timer("steps", "scoring", "reference", "saliency")
    torch.manual_seed(cfg.seed)
    _check_batches(len(forget), cfg.batch_size, dist)
    check_neighbours(method, len(neighbours) if neighbours is not None else 0)
    backbone.model.eval()
    if original is None:
        original = backbone.copy_trainable()
    run = _start(backbone, method, forget, world, cfg, dist, reference, timer, neighbours)
    rule = resolve_selection(cfg.selection, method)
    selection = make_selection(rule, method, backbone, forget, world, cfg.workers)
    log = TrainLog(lr=run.lr, selection_rule=selection.rule, selection=rule)
    best = BestWeights(backbone, run.core.params)
    bar = tqdm(total=max(1, run.steps_per_epoch * run.epochs), desc=f"unlearn {method.name}", leave=False,
               disable=not (progress and dist.is_main))
    for epoch in range(1, run.epochs + 1):
        with timer.part("steps"):
            losses, step_acc = _train_epoch(run, epoch, bar)
        with timer.part("scoring"):
            _select(run, selection, best, log, epoch, losses, step_acc, original, bar)
    bar.close()
    run.core.release()
    best.load(original)
    log.seconds = timer.report()
    return log

