"""The one unlearning loop that serves every loss-based method.

Per step: one forget-set batch (split across processes under ``accelerate launch``), one randomly
chosen prompt template (as in the study), text features for all fine and coarse class names under
that template (computed once per template when no text weight trains), and the method's loss on
the resulting logits. The frozen original model's outputs are computed once (the forget images are
not augmented and the original never changes) and only when the method needs them. Weights are
trained in eval mode: batch-norm statistics of a forget-set-only stream would otherwise drift and
damage every other concept.

Lean state: the original trainable weights are held once (by the caller, on the device), the best
epoch's weights are copied into one preallocated buffer on the device, and task-vector arithmetic
runs in place where the weights live; nothing is copied to the CPU.

Checkpoint selection uses forget-set data only, as in the study. ``selection="ours"`` (default):
after each epoch the candidate weights (for task vectors, the negated ones) are scored by
zero-shot accuracy (template ensemble) on the forget train images at the forgotten level (fine
for a fine goal; coarse for a coarse goal; their mean for a hybrid goal), and the epoch with the
lowest score is kept; ties go to the earliest epoch, which has moved the weights least.
``selection="study"``: the study's rule, with no extra pass: the epoch's average fine accuracy
on the forget batches it trained on, read from the training logits (one template, weights as
they were before each step); most methods keep the lowest (strictly lower than before), the
methods in :data:`STUDY_KEEPS_HIGHEST` keep the highest (">= best so far", a quirk of its code
that ktmu reproduces rather than fixes; for task vectors it scores the fine-tuned, not the
negated, weights).
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from ktmu.backbones import Backbone
from ktmu.backbones.encode import class_text_features, embed_source
from ktmu.concepts import Hierarchy
from ktmu.data.stream import chunked, iter_batches
from ktmu.runtime.dist import Dist, DistError, get_dist
from ktmu.engine.forget_set import ForgetSet, class_mask
from ktmu.methods import UnlearningMethod
from ktmu.methods.masks import saliency_mask
from ktmu.prompts import eval_templates, train_templates
from ktmu.engine.schedule import warmup_cosine_scheduler
from ktmu.engine.config import TrainConfig
from ktmu.errors import KtmuError

__all__ = ["STUDY_KEEPS_HIGHEST", "ForgetSet", "Reference", "TrainConfig", "TrainLog", "TrainingError", "class_mask", "compute_reference",
           "cosine_per_epoch", "forget_scores", "selection_rule", "unlearn"]

# The study's selection keeps the epoch with the highest step-time forget accuracy (">=") for these
# methods and the lowest (strictly lower) for every other one (study.yaml, checkpoint_selection).
STUDY_KEEPS_HIGHEST = frozenset({"task-vector", "relabel", "salun"})


class TrainingError(KtmuError, ValueError):
    """Training that cannot go on (e.g. a non-finite loss); the message says what to change."""


@dataclass
class Reference:
    """The original model's outputs on the forget set: image features and per-template text features."""

    image: torch.Tensor  # (N, D) unit features, CPU
    fine_text: torch.Tensor  # (T, F, D)
    coarse_text: torch.Tensor  # (T, C, D)
    scale: torch.Tensor  # ()

    def logits(self, positions: torch.Tensor, template: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        img = self.image[positions]
        return ((self.scale * img @ self.fine_text[template].T).to(device), (self.scale * img @ self.coarse_text[template].T).to(device))


@dataclass
class TrainLog:
    epochs: list[dict] = field(default_factory=list)
    selected_epoch: int = 0
    selection_rule: str = ""  # the rule that chose selected_epoch, in words
    lr: float = 0.0
    seconds: dict[str, float] = field(default_factory=dict)  # steps, scoring, reference, saliency, other


def cosine_per_epoch(epoch: int, epochs: int) -> float:
    """Multiplier of the peak rate during ``epoch`` (0-based) for the study's schedule: cosine stepped once per epoch.

    As torch's ``CosineAnnealingLR(T_max=epochs)`` stepped after each epoch: 1 in the first epoch,
    0.5 (1 + cos(pi epoch / epochs)) later. Example: epochs 8 -> 1.0, 0.962, 0.854, ..., 0.038 in the last.
    """
    return 0.5 * (1 + math.cos(math.pi * epoch / max(1, epochs)))


def selection_rule(selection: str, method: str, goal: str) -> str:
    """The checkpoint-selection rule of a run, in words (for results.json)."""
    if selection == "study":
        keep = "highest (>= best so far)" if method in STUDY_KEEPS_HIGHEST else "lowest (strictly lower than before)"
        return f"the study's: {keep} epoch-average forget-train fine accuracy, from the training steps' logits"
    level = {"fine": "fine accuracy", "coarse": "coarse accuracy", "hybrid": "mean of fine accuracy and coarse accuracy of forgotten coarse concepts"}[goal]
    return f"lowest forget-train {level} ({goal} goal), earliest on ties"


def _goal(forget: ForgetSet) -> str:
    """The request's goal as the forget set shows it (as :func:`forget_scores` reads it)."""
    return "fine" if not forget.forget_coarse.any() else "coarse" if forget.forget_coarse.all() else "hybrid"


def _template_tokens(backbone: Backbone, names: list[str], templates: tuple[str, ...]) -> list:
    return [backbone.tokenize([t.format(n) for n in names]) for t in templates]


@torch.no_grad()
def compute_reference(backbone: Backbone, forget: ForgetSet, world: Hierarchy, batch_size: int = 256, workers: int = 0) -> Reference:
    """The frozen original's forget-set image features and per-template class text features (computed once)."""
    image = embed_source(backbone, forget.source, batch_size=batch_size, workers=workers)
    fine = torch.stack([backbone.encode_text(tok).float().cpu() for tok in _template_tokens(backbone, world.fine_names, train_templates(world))])
    coarse = torch.stack([backbone.encode_text(tok).float().cpu() for tok in _template_tokens(backbone, world.coarse_names, train_templates(world))])
    return Reference(image, fine, coarse, backbone.logit_scale().detach().float().cpu())


@torch.no_grad()
def forget_scores(backbone: Backbone, forget: ForgetSet, world: Hierarchy, batch_size: int = 256, workers: int = 0) -> dict[str, float]:
    """Zero-shot (template ensemble) accuracies on the forget-set images, and the selection score.

    ``forget_fine``: fine accuracy on all of them; ``forget_coarse``: coarse accuracy on all of
    them; ``score``: what checkpoint selection minimises, mirroring Quality: fine accuracy for a
    fine goal, coarse accuracy for a coarse goal, their mean (coarse over the images whose coarse
    label is forgotten) for a hybrid goal.
    """
    feats = embed_source(backbone, forget.source, batch_size=batch_size, workers=workers)
    fine = (feats @ class_text_features(backbone, world.fine_names, eval_templates(world)).float().cpu().T).argmax(1) == forget.fine
    coarse = (feats @ class_text_features(backbone, world.coarse_names, eval_templates(world)).float().cpu().T).argmax(1) == forget.coarse
    pct = lambda hits: float(hits.float().mean() * 100) if len(hits) else float("nan")  # noqa: E731
    out = {"forget_fine": pct(fine), "forget_coarse": pct(coarse)}
    forgotten = forget.forget_coarse
    if not forgotten.any():
        out["score"] = out["forget_fine"]
    elif forgotten.all():
        out["score"] = out["forget_coarse"]
    else:
        out["score"] = (out["forget_fine"] + pct(coarse[forgotten])) / 2
    return out


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


def unlearn(
    backbone: Backbone,
    method: UnlearningMethod,
    forget: ForgetSet,
    world: Hierarchy,
    cfg: TrainConfig = TrainConfig(),
    progress: bool = True,
    original: dict[str, torch.Tensor] | None = None,
    reference: Reference | None = None,
) -> TrainLog:
    """Unlearn in place; on return the backbone holds the selected epoch's weights.

    ``original``: the trainable weights to start from and to negate against (the caller's single
    copy; taken from the backbone when None). ``reference``: the original's outputs on the forget
    set, reused across runs when given (computed here only when the method needs them).
    """
    dist = get_dist()
    t_start = time.perf_counter()
    seconds = {"steps": 0.0, "scoring": 0.0, "reference": 0.0, "saliency": 0.0}
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    lr = cfg.lr if cfg.lr is not None else method.lr
    epochs = cfg.epochs if cfg.epochs is not None else method.epochs
    n = len(forget)
    _check_batches(n, cfg.batch_size, dist)
    model = backbone.model
    model.eval()
    device = backbone.device
    params = dict(backbone.named_trainable_parameters())
    if original is None:
        original = backbone.copy_trainable()

    fine_tokens = _template_tokens(backbone, world.fine_names, train_templates(world))
    coarse_tokens = _template_tokens(backbone, world.coarse_names, train_templates(world))
    name_tokens = _template_tokens(backbone, list(forget.names), train_templates(world)) if method.needs_features and forget.names else None
    fixed_text = None
    if not backbone.text_trainable:  # frozen text: each template's class features once, not every step
        with torch.no_grad():
            fixed_text = [(backbone.encode_text(f), backbone.encode_text(c)) for f, c in zip(fine_tokens, coarse_tokens)]

    t0 = time.perf_counter()
    if (method.needs_reference or method.needs_features) and reference is None:
        reference = compute_reference(backbone, forget, world, workers=cfg.workers)
    seconds["reference"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    fraction = method.update_mask_fraction()
    masks = _saliency_masks(backbone, method, forget, world, params, fraction, cfg, dist) if fraction is not None else None
    seconds["saliency"] = time.perf_counter() - t0

    opt = torch.optim.AdamW(params.values(), lr=lr, weight_decay=cfg.weight_decay, eps=cfg.adam_eps)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total = max(1, steps_per_epoch * epochs)
    per_epoch = cfg.schedule == "cosine-epoch"
    if per_epoch:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: cosine_per_epoch(e, epochs))
    else:
        sched = warmup_cosine_scheduler(opt, max(1, int(cfg.warmup_frac * total)), total)
    scaler = torch.amp.GradScaler(device.type) if backbone.precision == "amp-fp16" else None
    study = cfg.selection == "study"
    highest = study and method.name in STUDY_KEEPS_HIGHEST
    log = TrainLog(lr=lr, selection_rule=selection_rule(cfg.selection, method.name, _goal(forget)))
    best_acc, best = (-math.inf if highest else math.inf), None
    bar = tqdm(total=total, desc=f"unlearn {method.name}", leave=False, disable=not (progress and dist.is_main))
    for epoch in range(1, epochs + 1):
        t_epoch = time.perf_counter()
        order = torch.randperm(n, generator=gen)
        steps = [order[s * cfg.batch_size : (s + 1) * cfg.batch_size] for s in range(steps_per_epoch)]
        mine = [dist.split_batch(b) for b in steps]
        sums = torch.zeros(0)
        keys: list[str] = []
        hits = torch.zeros(2)  # forget images this epoch trained on: fine-correct under the step's logits, seen
        for b, (images, pos) in zip(steps, iter_batches(forget.source, mine, device, cfg.workers)):
            t = rng.randrange(len(fine_tokens))
            if fixed_text is not None:
                fine_text, coarse_text = fixed_text[t]
            else:
                fine_text, coarse_text = backbone.encode_text(fine_tokens[t]), backbone.encode_text(coarse_tokens[t])
            img = backbone.encode_image(images)
            scale = backbone.logit_scale()
            extra = {}
            if reference is not None and method.needs_reference:
                extra["ref_fine_logits"], extra["ref_coarse_logits"] = reference.logits(pos, t, device)
            if method.needs_features:
                extra.update(image_features=img, ref_image_features=reference.image[pos].to(device), fine_text=fine_text, coarse_text=coarse_text,
                             forgotten_name_text=backbone.encode_text(name_tokens[t]) if name_tokens else None, logit_scale=scale)
            batch = forget.batch(pos, scale * img @ fine_text.T, scale * img @ coarse_text.T, generator=gen, **extra)
            terms = method.loss(batch)
            with torch.no_grad():
                seen = torch.tensor([float((batch.fine_logits.argmax(1) == batch.fine_target).sum()), float(len(pos))])
            share = len(pos) / len(b) * dist.world  # the all-reduce sums: weight each process by its share of the batch
            loss = terms["loss"].float() * share / dist.world
            opt.zero_grad(set_to_none=True)
            (scaler.scale(loss) if scaler else loss).backward()
            dist.all_reduce_grads_(params.values())
            if masks is not None:
                for k, p in params.items():
                    if p.grad is not None:
                        p.grad.mul_(masks[k])
            values = torch.cat([torch.stack([v.detach().float().cpu() * len(pos) / len(b) for v in terms.values()]), seen])
            dist.all_reduce_sum_(values)  # one all-reduce for the loss terms and the hit counts
            values, seen = values[:-2], values[-2:]
            if not torch.isfinite(values[0]):
                raise TrainingError(
                    f"the {method.name} loss became {float(values[0])} at epoch {epoch}; no model was written. "
                    f"Lower the learning rate (now {lr:g}) or check the method's settings."
                )
            if scaler:
                scaler.step(opt)
                scaler.update()
            else:
                opt.step()
            if not per_epoch:
                sched.step()
            keys = list(terms)
            sums = values if not len(sums) else sums + values
            hits += seen
            bar.update(1)
        if per_epoch:
            sched.step()
        seconds["steps"] += time.perf_counter() - t_epoch

        t0 = time.perf_counter()
        current = None
        step_acc = float(hits[0] / hits[1] * 100)
        record = {"epoch": epoch, "forget_train_fine_acc_steps": step_acc}
        if study:  # the study's rule: no extra pass; finalize (task vectors) only an epoch that is kept
            acc = step_acc
            keep = acc >= best_acc if highest else acc < best_acc
            if keep and method.rewrites_weights:
                current = backbone.copy_trainable()
                method.finalize_(params, original)
        else:
            if method.rewrites_weights:
                current = backbone.copy_trainable()
                method.finalize_(params, original)
            scores = forget_scores(backbone, forget, world, workers=cfg.workers)
            acc = scores["score"]
            keep = acc < best_acc
            record.update(forget_train_fine_acc=scores["forget_fine"], forget_train_coarse_acc=scores["forget_coarse"])
        record.update(selection_score=acc, **{k: float(v) / steps_per_epoch for k, v in zip(keys, sums)})
        log.epochs.append(record)
        bar.set_postfix(epoch=epoch, forget_acc=f"{acc:.1f}", loss=f"{record['loss']:.3f}")
        if keep:
            best_acc, log.selected_epoch = acc, epoch
            if best is None:
                best = backbone.copy_trainable()
            else:
                with torch.no_grad():
                    for k, p in params.items():
                        best[k].copy_(p)
        if current is not None:
            backbone.load_trainable(current)
        seconds["scoring"] += time.perf_counter() - t0
    bar.close()
    backbone.load_trainable(best if best is not None else original)
    seconds["total"] = time.perf_counter() - t_start
    seconds["other"] = seconds["total"] - sum(v for k, v in seconds.items() if k != "total")
    log.seconds = {k: round(v, 4) for k, v in seconds.items()}
    return log
