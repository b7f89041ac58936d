"""Zero-shot evaluation: class-name text features computed once per evaluation, images streamed once per model."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ktmu.backbones import Backbone
from ktmu.backbones.encode import class_text_features, embed_source
from ktmu.data import ConceptDataset
from ktmu.data.stream import image_source
from ktmu.prompts import eval_templates

ECE_BINS = 15  # the usual choice for expected calibration error (Guo et al., 2017)


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

    @property
    def top_class_share(self) -> float:
        """The largest fraction of these images predicted as one fine class (1.0 = every image the same class)."""
        if not len(self.fine_pred):
            return float("nan")
        return float(torch.bincount(self.fine_pred).max()) / len(self.fine_pred)

    def summary(self) -> dict:
        per_class = {n: accuracy(self.fine_pred[self.fine_labels == i], self.fine_labels[self.fine_labels == i]) for i, n in enumerate(self.fine_names)}
        out = {"fine_acc": self.fine_acc, "per_class": per_class, "ece": expected_calibration_error(self.fine_probs, self.fine_labels)}
        if self.has_coarse:
            out = {"coarse_acc": self.coarse_acc, **out}
        return out


class ZeroShotEvaluator:
    """Evaluates any number of models of one image preprocessing on one labelled split.

    The split is streamed (or, when small and in memory, preprocessed once); each
    :meth:`evaluate` embeds its images once and computes the class-name text features once.
    """

    def __init__(self, dataset: ConceptDataset, preprocess, templates: Sequence[str] | None = None, progress: bool = False,
                 batch_size: int = 256, workers: int = 0) -> None:
        self.dataset = dataset
        self.templates = tuple(templates) if templates is not None else eval_templates(dataset.hierarchy)  # the world's own, else generic
        self.progress = progress
        self.batch_size = batch_size
        self.workers = workers
        self.source = image_source(dataset, preprocess, progress=progress)
        self.fine_labels = self.source.fine
        self.coarse_labels = self.source.coarse

    def features(self, backbone: Backbone) -> torch.Tensor:
        """Unit image features of the whole split (float32, CPU)."""
        return embed_source(backbone, self.source, batch_size=self.batch_size, workers=self.workers, progress=self.progress,
                            desc=f"embed {self.dataset.hierarchy.name}")

    @torch.no_grad()
    def evaluate(self, backbone: Backbone, image_feats: torch.Tensor | None = None) -> WorldEval:
        """Zero-shot predictions; ``image_feats`` reuses features already computed for this model."""
        world = self.dataset.hierarchy
        image_feats = self.features(backbone) if image_feats is None else image_feats
        scale = backbone.logit_scale().detach().float().cpu()
        fine_text = class_text_features(backbone, world.fine_names, self.templates).float().cpu()
        coarse_text = class_text_features(backbone, world.coarse_names, self.templates).float().cpu()
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


def evaluate_datasets(backbone: Backbone, items: Sequence[ConceptDataset | tuple[ConceptDataset, Sequence[str]]], progress: bool = False,
                      batch_size: int = 256, workers: int = 0) -> dict:
    """``{"model", "domains": {name: {"coarse_acc"?, "fine_acc", "per_class", "ece"}}}`` (percentages), one entry per split."""
    out = {}
    for item in items:
        dataset, templates = item if isinstance(item, tuple) else (item, None)
        ev = ZeroShotEvaluator(dataset, backbone.preprocess, templates, progress=progress, batch_size=batch_size, workers=workers)
        out[dataset.hierarchy.name] = ev.evaluate(backbone).summary()
    return {"model": backbone.name, "domains": out}


def evaluate_domains(backbone: Backbone, domains: Sequence[str], progress: bool = False) -> dict:
    """The same for registered zero-shot domains that ship with ktmu (e.g. ``fashion``, ``digits``)."""
    from ktmu.data.domains import DOMAINS

    return evaluate_datasets(backbone, [(DOMAINS.get(d).open(), DOMAINS.get(d).templates) for d in domains], progress=progress)
