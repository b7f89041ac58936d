"""The reference study's unlearning loop, rebuilt as the baseline that ``ktmu perf --baseline study`` times beside ktmu's.

The study (Tan & Gong, 2025; code: github.com/1yuwen/Knowledge-Tracing-MU, ``Unlearning/helper.py``
``Unlearn_training`` and ``model/Network.py`` ``UnlearningCLIP`` / ``ZeroshotCLIP``) takes each step like this,
and so does :class:`StudyLoop`:

* one random template; every fine and every coarse class prompt under it is tokenized again and encoded
  through the trainable text tower, with gradients, at the tokenizer's full context (77 tokens for
  CLIP: no padding is dropped);
* the frozen original model (a second copy of the weights) encodes the batch's images again, every step
  and for every method; its class text features are the template ensemble, computed once at the start;
* loss, backward, AdamW (eps 1e-6, weight decay 1e-5), all in fp32;
* the loss terms and both accuracies read back to the host (its progress bar and logging);
* after an epoch it keeps (step-time forget fine accuracy strictly lower than before, or ">=" for
  relabel, SalUn and task vectors), the whole model state is copied to the CPU (its ``torch.save``).

The loss is ktmu's method on the :class:`~ktmu.methods.Batch` this design builds, so where the two
designs agree (one template, a frozen reference) the losses are the same (``tests/test_perf.py``).
Left out, each of which would only make the study slower: its row-by-row Python masking of the logits, the
logging calls themselves, the disk write, and its forget-test evaluation every 8 iterations and after each
epoch (which re-encodes the whole template ensemble for every test batch; :func:`study_tests_seconds`
estimates it apart). Like ktmu it trains in eval mode (the study calls ``train()``, which differs only for
models with dropout or batch norm; CLIP's ViTs have neither).
"""
from __future__ import annotations

import copy
import math
import random
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch

from ktmu.backbones import Backbone
from ktmu.backbones.encode import class_text_features
from ktmu.concepts import Hierarchy
from ktmu.data.stream import iter_batches
from ktmu.engine.forget_set import ForgetSet
from ktmu.engine.selection import STUDY_KEEPS_HIGHEST
from ktmu.methods import Batch, UnlearningMethod
from ktmu.methods.terms import cross_entropy
from ktmu.prompts import eval_templates, train_templates

STUDY_EPS = 1e-6  # the study's AdamW epsilon (Unlearning/trainer.py)
STUDY_WEIGHT_DECAY = 1e-5  # its -decay default
STUDY_TEST_EVERY = 8  # its log_interval: a forget-test evaluation every 8 iterations (besides one per epoch)
STUDY_TEST_BATCH = 128  # its test batch size


@contextmanager
def fp32(*backbones: Backbone) -> Iterator[None]:
    """Run ``backbones`` in fp32 inside the block (the study trains in fp32 whatever ktmu's precision)."""
    before = [b.precision for b in backbones]
    for b in backbones:
        b.precision = "fp32"
    try:
        yield
    finally:
        for b, p in zip(backbones, before):
            b.precision = p


def frozen_copy(backbone: Backbone) -> Backbone:
    """A second, frozen, eager copy of ``backbone`` as it is now (the study's ``ZeroshotCLIP``), sharing tokenizer and preprocessing."""
    mode = backbone.compiled
    if mode:
        backbone.uncompile()  # a compiled forward does not deep-copy
    try:
        original = copy.deepcopy(backbone, {id(backbone._tokenizer): backbone._tokenizer, id(backbone.preprocess): backbone.preprocess})
    finally:
        if mode:
            backbone.compile(mode)
    for p in original.model.parameters():
        p.requires_grad_(False)
    original.model.eval()
    return original


def state_on_host(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of the whole model state (what the study saves whenever it keeps an epoch)."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def read_back(*values: torch.Tensor) -> list[float]:
    """Each value on the host (the study's progress bar and logging read these every step: each read waits for the device)."""
    return [float(v.item()) for v in values]


@dataclass
class StudyEpoch:
    """What one epoch of the study's loop cost: its steps, the state copy when it was kept, and its step-time accuracy."""

    steps_seconds: float
    copy_seconds: float
    kept: bool
    fine_acc: float
    step_seconds: list[float] = field(default_factory=list)  # each step's wall time


class StudyLoop:
    """The study's per-step design on a ktmu backbone, forget set and method (see the module docstring).

    ``original`` is the frozen original model (:func:`frozen_copy`); several loops may share one.
    """

    def __init__(self, backbone: Backbone, original: Backbone, method: UnlearningMethod, forget: ForgetSet, world: Hierarchy,
                 lr: float, batch_size: int = 32, seed: int = 0, workers: int = 0) -> None:
        self.backbone, self.original, self.method, self.forget, self.world = backbone, original, method, forget, world
        self.batch_size, self.seed, self.workers = batch_size, seed, workers
        self.templates = train_templates(world)
        with fp32(original):
            ensemble = eval_templates(world)
            self.ref_fine_text = class_text_features(original, world.fine_names, ensemble)
            self.ref_coarse_text = class_text_features(original, world.coarse_names, ensemble)
        self.params = dict(backbone.named_trainable_parameters())
        self.lr = lr
        self.highest = method.name in STUDY_KEEPS_HIGHEST
        # SalUn multiplies every gradient by its saliency mask each step; the multiply is what costs, not the mask's values.
        self.masks = ({k: torch.ones_like(p) for k, p in self.params.items()} if method.update_mask_fraction() is not None else None)
        self.reset()

    def reset(self) -> None:
        """A fresh optimizer, seeded draws and best score: the start of a run (the caller loads the original weights)."""
        self.optimizer = torch.optim.AdamW(self.params.values(), lr=self.lr, eps=STUDY_EPS, weight_decay=STUDY_WEIGHT_DECAY)
        self.rng = random.Random(self.seed)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.best = -math.inf if self.highest else math.inf

    def text(self, names: list[str], template: str) -> torch.Tensor:
        """Class features under ``template``, tokenized and encoded now at full context, with gradients when the text trains."""
        return self.backbone.encode_texts_full_context([template.format(n) for n in names])

    def batch(self, images: torch.Tensor, positions: torch.Tensor, template: str) -> Batch:
        """The method's view of a forget batch under the study's design: ``template``'s logits against the original's ensemble logits."""
        b, o = self.backbone, self.original
        fine_text, coarse_text = self.text(self.world.fine_names, template), self.text(self.world.coarse_names, template)
        img = b.encode_image(images)
        scale = b.logit_scale()
        with torch.no_grad():
            ref_img = o.encode_image(images)
            ref_scale = o.logit_scale()
            extra = {"ref_fine_logits": ref_scale * ref_img @ self.ref_fine_text.T, "ref_coarse_logits": ref_scale * ref_img @ self.ref_coarse_text.T}
        if self.method.needs_features:
            names = self.text(list(self.forget.names), template) if self.forget.names else None
            extra.update(image_features=img, ref_image_features=ref_img, fine_text=fine_text, coarse_text=coarse_text,
                         forgotten_name_text=names, logit_scale=scale)
        return self.forget.batch(positions, scale * img @ fine_text.T, scale * img @ coarse_text.T, generator=self.generator, **extra)

    def step(self, images: torch.Tensor, positions: torch.Tensor) -> tuple[int, int]:
        """One step; returns (fine-correct, images) of the batch, read back to the host as the study's logging does."""
        batch = self.batch(images, positions, self.rng.choice(self.templates))
        terms = self.method.loss(batch)
        with torch.no_grad():  # what it logs every step: the loss terms, both cross-entropies, both accuracies
            hits = (batch.fine_logits.argmax(1) == batch.fine_target).sum()
            logged = read_back(*terms.values(), cross_entropy(batch.fine_logits, batch.fine_target).mean(),
                               cross_entropy(batch.coarse_logits, batch.coarse_target).mean(), hits,
                               (batch.coarse_logits.argmax(1) == batch.coarse_target).float().mean())
        self.optimizer.zero_grad()
        terms["loss"].backward()
        if self.masks is not None:
            for k, p in self.params.items():
                if p.grad is not None:
                    p.grad.mul_(self.masks[k])
        self.optimizer.step()
        return int(logged[len(terms) + 2]), len(positions)

    def epoch(self, steps: int | None = None, clock: Callable[[], float] = time.perf_counter) -> StudyEpoch:
        """One seeded pass over the forget set (or its first ``steps`` batches), then the study's keep-and-copy, timed by ``clock``."""
        order = torch.randperm(len(self.forget), generator=self.generator)
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)][:steps]
        device = self.backbone.device
        hits = seen = 0
        each: list[float] = []
        with fp32(self.backbone, self.original):
            t0 = clock()
            for images, pos in iter_batches(self.forget.source, batches, device, self.workers):
                s0 = clock()
                h, n = self.step(images, pos)
                each.append(clock() - s0)
                hits, seen = hits + h, seen + n
            t1 = clock()
        acc = 100.0 * hits / max(1, seen)
        kept = acc >= self.best if self.highest else acc < self.best
        if kept:  # its torch.save(model.state_dict()): the whole state to the CPU (the file write is left out)
            self.best = acc
            state_on_host(self.backbone.model)
        return StudyEpoch(t1 - t0, clock() - t1, kept, acc, each)


def study_tests_seconds(template_seconds: float, templates: int, image_seconds: float, test_images: int) -> float:
    """One forget-test evaluation of the study's loop: per test batch every template's class prompts again, plus the images' forward.

    ``template_seconds``: one template's fine and coarse prompts at full context without gradients;
    ``image_seconds``: one image's inference forward.
    """
    batches = math.ceil(test_images / STUDY_TEST_BATCH)
    return batches * templates * template_seconds + test_images * image_seconds


def study_tests_per_run(epochs: int, steps_per_epoch: int) -> int:
    """How many forget-test evaluations the study's loop runs: every 8th iteration, counted over the run, and one per epoch."""
    return epochs * steps_per_epoch // STUDY_TEST_EVERY + epochs
