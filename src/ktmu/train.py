"""The one unlearning loop that serves every loss-based method.

Per step: one forget-set batch, one randomly chosen prompt template (as in the study), text
features for all fine and coarse class names under that template, and the method's loss on the
resulting logits. The frozen original model's outputs are computed once before training (the
forget images are not augmented and the original never changes) and only when the method needs
them. Weights are trained in eval mode: batch-norm statistics of a forget-set-only stream would
otherwise drift and damage every other concept.

Checkpoint selection uses forget-set data only, as in the study: after each epoch the candidate
weights (for task vectors, the negated ones) are scored by zero-shot accuracy on the forget train
images at the forgotten level (fine for a fine goal, as in the study; coarse for a coarse goal;
their mean for a hybrid goal), and the epoch with the lowest score is kept; ties go to the
earliest epoch, which has moved the weights least.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Sequence

import torch
from tqdm.auto import tqdm

from .backbones import Backbone
from .concepts import Hierarchy
from .data import ConceptDataset
from .evaluate import class_text_features, embed_images, preprocess_images
from .methods import Batch, UnlearningMethod
from .methods.salun import saliency_mask
from .prompts import TEMPLATES
from .request import MAX_PER_CONCEPT, UnlearningRequest, forget_set_indices
from .train_config import TrainConfig


def class_mask(indices: Sequence[int], n: int) -> torch.Tensor:
    """A (n,) boolean mask with ``indices`` set."""
    mask = torch.zeros(n, dtype=torch.bool)
    mask[list(indices)] = True
    return mask


@dataclass
class ForgetSet:
    """Preprocessed forget images with their labels and which coarse labels are forgotten."""

    images: torch.Tensor
    fine: torch.Tensor
    coarse: torch.Tensor
    forget_coarse: torch.Tensor  # (N,) whether each image's coarse label is forgotten
    fine_classes: torch.Tensor | None = None  # (F,) bool: every fine class the request forgets
    coarse_classes: torch.Tensor | None = None  # (C,) bool: every coarse class the request forgets

    @classmethod
    def from_request(cls, request: UnlearningRequest, train: ConceptDataset, preprocess, max_per_concept: int = MAX_PER_CONCEPT, seed: int = 0) -> "ForgetSet":
        """The proxy forget set of a request: preprocessed train images of its forgotten fine concepts only."""
        idx = forget_set_indices(request, train, max_per_concept, seed)
        coarse = torch.as_tensor(train.coarse_labels[idx])
        return cls(
            images=preprocess_images(train, preprocess, idx),
            fine=torch.as_tensor(train.fine_labels[idx]),
            coarse=coarse,
            forget_coarse=torch.isin(coarse, torch.as_tensor(request.forget_coarse)),
            fine_classes=class_mask(request.forget_fine, len(train.hierarchy.fine)),
            coarse_classes=class_mask(request.forget_coarse, len(train.hierarchy.coarse)),
        )

    def batch(self, idx, fine_logits: torch.Tensor, coarse_logits: torch.Tensor, **kw) -> Batch:
        """The method's view of images ``idx`` given their logits."""
        dev = fine_logits.device
        to = lambda t: None if t is None else t.to(dev)  # noqa: E731
        return Batch(fine_logits, coarse_logits, self.fine[idx].to(dev), self.coarse[idx].to(dev), self.forget_coarse[idx].to(dev),
                     fine_forgotten=to(self.fine_classes), coarse_forgotten=to(self.coarse_classes), **kw)

    def __len__(self) -> int:
        return len(self.images)


@dataclass
class _Reference:
    """The original model's outputs on the forget set, per template."""

    image: torch.Tensor  # (N, D)
    fine_text: torch.Tensor  # (T, F, D)
    coarse_text: torch.Tensor  # (T, C, D)
    scale: torch.Tensor


@dataclass
class TrainLog:
    epochs: list[dict] = field(default_factory=list)
    selected_epoch: int = 0
    lr: float = 0.0


def _text_tokens(backbone: Backbone, world: Hierarchy) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [
        (backbone.tokenize([t.format(n) for n in world.fine_names]), backbone.tokenize([t.format(n) for n in world.coarse_names]))
        for t in TEMPLATES
    ]


@torch.no_grad()
def _reference(backbone: Backbone, forget: ForgetSet, tokens: list[tuple[torch.Tensor, torch.Tensor]]) -> _Reference:
    image = embed_images(backbone, forget.images, batch_size=256)
    fine = torch.stack([backbone.encode_text(f).cpu() for f, _ in tokens])
    coarse = torch.stack([backbone.encode_text(c).cpu() for _, c in tokens])
    return _Reference(image, fine, coarse, backbone.logit_scale().detach().cpu())


@torch.no_grad()
def forget_scores(backbone: Backbone, forget: ForgetSet, world: Hierarchy) -> dict[str, float]:
    """Zero-shot (template ensemble) accuracies on the forget-set images, and the selection score.

    ``forget_fine``: fine accuracy on all of them; ``forget_coarse``: coarse accuracy on all of
    them; ``score``: what checkpoint selection minimises, mirroring Quality: fine accuracy for a
    fine goal, coarse accuracy for a coarse goal, their mean (coarse over the images whose coarse
    label is forgotten) for a hybrid goal.
    """
    feats = embed_images(backbone, forget.images, batch_size=256)
    fine = (feats @ class_text_features(backbone, world.fine_names).cpu().T).argmax(1) == forget.fine
    coarse = (feats @ class_text_features(backbone, world.coarse_names).cpu().T).argmax(1) == forget.coarse
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


def _saliency(backbone: Backbone, method: UnlearningMethod, forget: ForgetSet, world: Hierarchy, params: dict, batch_size: int) -> dict[str, torch.Tensor]:
    """Gradient magnitude of the method's saliency loss over the whole forget set -> boolean masks."""
    grads = {n: torch.zeros_like(p) for n, p in params.items()}
    fine_text = class_text_features(backbone, world.fine_names)
    coarse_text = class_text_features(backbone, world.coarse_names)
    for i in range(0, len(forget), batch_size):
        sl = slice(i, i + batch_size)
        img = backbone.encode_image(forget.images[sl])
        scale = backbone.logit_scale()
        batch = forget.batch(sl, scale * img @ fine_text.T, scale * img @ coarse_text.T)
        g = torch.autograd.grad(method.saliency_loss(batch), list(params.values()), allow_unused=True)  # type: ignore[attr-defined]
        for (n, _), gi in zip(params.items(), g):
            if gi is not None:
                grads[n] += gi
    return saliency_mask(grads, method.saliency_fraction)  # type: ignore[attr-defined]


def unlearn(
    backbone: Backbone,
    method: UnlearningMethod,
    forget: ForgetSet,
    world: Hierarchy,
    cfg: TrainConfig = TrainConfig(),
    progress: bool = True,
) -> TrainLog:
    """Unlearn in place; on return the backbone holds the selected epoch's weights."""
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    lr = cfg.lr if cfg.lr is not None else method.lr
    epochs = cfg.epochs if cfg.epochs is not None else method.epochs
    model = backbone.model
    model.eval()

    tokens = _text_tokens(backbone, world)
    ref = _reference(backbone, forget, tokens) if method.needs_reference else None
    original = backbone.snapshot()
    params = dict(backbone.named_trainable_parameters())
    masks = _saliency(backbone, method, forget, world, params, cfg.batch_size) if hasattr(method, "saliency_fraction") else None

    opt = torch.optim.AdamW(params.values(), lr=lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(forget) / cfg.batch_size)
    total = max(1, steps_per_epoch * epochs)
    warmup = max(1, int(cfg.warmup_frac * total))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / total)))
    )
    finalize = getattr(method, "finalize", None)
    log = TrainLog(lr=lr)
    best_acc, best_state = math.inf, original
    bar = tqdm(total=total, desc=f"unlearn {method.name}", leave=False, disable=not progress)
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(forget), generator=gen)
        sums: dict[str, float] = {}
        for s in range(steps_per_epoch):
            b = order[s * cfg.batch_size : (s + 1) * cfg.batch_size]
            t = rng.randrange(len(TEMPLATES))
            fine_text = backbone.encode_text(tokens[t][0])
            coarse_text = backbone.encode_text(tokens[t][1])
            img = backbone.encode_image(forget.images[b])
            scale = backbone.logit_scale()
            batch = forget.batch(b, scale * img @ fine_text.T, scale * img @ coarse_text.T, generator=gen)
            if ref is not None:
                batch.ref_fine_logits = (ref.scale * ref.image[b] @ ref.fine_text[t].T).to(img.device)
                batch.ref_coarse_logits = (ref.scale * ref.image[b] @ ref.coarse_text[t].T).to(img.device)
            terms = method.loss(batch)
            opt.zero_grad(set_to_none=True)
            terms["loss"].backward()
            if masks is not None:
                for n, p in params.items():
                    if p.grad is not None:
                        p.grad.mul_(masks[n])
            opt.step()
            sched.step()
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            bar.update(1)
        current = backbone.snapshot() if finalize else None
        if finalize:
            backbone.restore(finalize(original, current))
        scores = forget_scores(backbone, forget, world)
        acc = scores["score"]
        record = {"epoch": epoch, "forget_train_fine_acc": scores["forget_fine"], "forget_train_coarse_acc": scores["forget_coarse"],
                  "selection_score": acc, **{k: v / steps_per_epoch for k, v in sums.items()}}
        log.epochs.append(record)
        bar.set_postfix(epoch=epoch, forget_acc=f"{acc:.1f}", loss=f"{record['loss']:.3f}")
        if acc < best_acc:
            best_acc, best_state, log.selected_epoch = acc, backbone.snapshot(), epoch
        if finalize:
            backbone.restore(current)  # type: ignore[arg-type]
    bar.close()
    backbone.restore(best_state)
    return log
