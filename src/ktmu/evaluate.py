"""Zero-shot evaluation: class-name text features computed once per evaluation, images embedded once per model."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .backbones import Backbone
from .data import ConceptDataset
from .prompts import TEMPLATES

ECE_BINS = 15  # the usual choice for expected calibration error (Guo et al., 2017)


@torch.no_grad()
def class_text_features(backbone: Backbone, names: Sequence[str], templates: Sequence[str] = TEMPLATES) -> torch.Tensor:
    """One unit vector per class: the normalised mean of its template captions' features."""
    prompts = [t.format(n) for n in names for t in templates]
    feats = backbone.encode_texts(prompts).reshape(len(names), len(templates), -1).mean(1)
    return torch.nn.functional.normalize(feats, dim=-1)


def preprocess_images(dataset: ConceptDataset, preprocess, indices: Sequence[int] | None = None, progress: bool = False, desc: str = "images") -> torch.Tensor:
    """Stack ``preprocess(image)`` for the chosen items into one tensor."""
    idx = range(len(dataset)) if indices is None else indices
    it = tqdm(idx, desc=f"preprocess {desc}", leave=False, disable=not progress)
    return torch.stack([preprocess(dataset.load_image(int(i))) for i in it])


@torch.no_grad()
def embed_images(backbone: Backbone, images: torch.Tensor, batch_size: int = 1000, progress: bool = False, desc: str = "embed") -> torch.Tensor:
    """Unit image features for a preprocessed image tensor, in eval mode, batch by batch."""
    was_training = backbone.model.training
    backbone.model.eval()
    chunks = range(0, len(images), batch_size)
    out = [backbone.encode_image(images[i : i + batch_size]).cpu() for i in tqdm(chunks, desc=desc, leave=False, disable=not progress)]
    backbone.model.train(was_training)
    return torch.cat(out) if out else torch.empty(0)


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor, bins: int = ECE_BINS) -> float:
    """ECE of the top-1 prediction: confidence-weighted gap between accuracy and confidence."""
    conf, pred = probs.max(dim=1)
    correct = (pred == labels).float()
    edges = torch.linspace(0, 1, bins + 1)
    ece = torch.zeros(())
    for lo, hi in zip(edges[:-1], edges[1:]):
        in_bin = (conf > lo) & (conf <= hi)
        if in_bin.any():
            ece += in_bin.float().mean() * (correct[in_bin].mean() - conf[in_bin].mean()).abs()
    return float(ece)


def accuracy(pred: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy in percent (nan for an empty set)."""
    return float((pred == labels).float().mean() * 100) if len(labels) else float("nan")


@dataclass
class WorldEval:
    """Zero-shot predictions of one model on one labelled split."""

    fine_pred: torch.Tensor
    coarse_pred: torch.Tensor
    fine_labels: torch.Tensor
    coarse_labels: torch.Tensor
    fine_probs: torch.Tensor
    fine_names: list[str] = field(default_factory=list)
    has_coarse: bool = True

    def subset(self, mask: np.ndarray | torch.Tensor) -> "WorldEval":
        m = torch.as_tensor(mask, dtype=torch.bool)
        return WorldEval(self.fine_pred[m], self.coarse_pred[m], self.fine_labels[m], self.coarse_labels[m], self.fine_probs[m], self.fine_names, self.has_coarse)

    @property
    def fine_acc(self) -> float:
        return accuracy(self.fine_pred, self.fine_labels)

    @property
    def coarse_acc(self) -> float:
        return accuracy(self.coarse_pred, self.coarse_labels)

    def summary(self) -> dict:
        per_class = {n: accuracy(self.fine_pred[self.fine_labels == i], self.fine_labels[self.fine_labels == i]) for i, n in enumerate(self.fine_names)}
        out = {"fine_acc": self.fine_acc, "per_class": per_class, "ece": expected_calibration_error(self.fine_probs, self.fine_labels)}
        if self.has_coarse:
            out = {"coarse_acc": self.coarse_acc, **out}
        return out


class ZeroShotEvaluator:
    """Evaluates any number of models of one image preprocessing on one labelled split.

    Images are preprocessed once at construction; each :meth:`evaluate` embeds them once and
    computes the class-name text features once.
    """

    def __init__(self, dataset: ConceptDataset, preprocess, templates: Sequence[str] = TEMPLATES, progress: bool = False) -> None:
        self.dataset = dataset
        self.templates = tuple(templates)
        self.progress = progress
        self.images = preprocess_images(dataset, preprocess, progress=progress, desc=dataset.hierarchy.name)
        self.fine_labels = torch.as_tensor(dataset.fine_labels)
        self.coarse_labels = torch.as_tensor(dataset.coarse_labels)

    @torch.no_grad()
    def evaluate(self, backbone: Backbone) -> WorldEval:
        world = self.dataset.hierarchy
        image_feats = embed_images(backbone, self.images, progress=self.progress, desc=f"embed {world.name}")
        scale = backbone.logit_scale().detach().cpu()
        fine_text = class_text_features(backbone, world.fine_names, self.templates).cpu()
        coarse_text = class_text_features(backbone, world.coarse_names, self.templates).cpu()
        fine_logits = scale * image_feats @ fine_text.T
        coarse_logits = image_feats @ coarse_text.T
        return WorldEval(
            fine_pred=fine_logits.argmax(1),
            coarse_pred=coarse_logits.argmax(1),
            fine_labels=self.fine_labels,
            coarse_labels=self.coarse_labels,
            fine_probs=fine_logits.softmax(1),
            fine_names=world.fine_names,
            has_coarse=len(world.coarse) > 1,
        )
