"""The soft-prompt attack: with every weight frozen, learn a new text feature for each forgotten class.

A method that moved the forgotten concept's *name* away from its images (or the images away from
the name) while the images still form their own cluster can be undone without touching a weight:
an attacker who holds a few labelled images only has to find the point in the joint embedding
space where that cluster lies. The attack learns one free vector per forgotten class in the joint
embedding space (the space of the model's unit text and image features), initialised at the class's
canonical text feature (the template ensemble the evaluation uses), by cross-entropy over every
fine class on the relearning attack's images (:mod:`ktmu.audit.relearn`: unseen images of the
forgotten concepts with kept-concept ones), every other class's text feature fixed and every
weight frozen. The learned vector is renormalised to unit length before each use, so it competes
with the other classes' features on the model's own cosine scale (times the model's temperature).
Then D_f test fine accuracy is measured zero-shot with the learned vectors in place of the
forgotten classes' text features.

Why a vector in the joint space rather than a CoOp-style context of token embeddings: it needs
nothing from a backbone but its image features, its class text features and its temperature, so it
works for every backbone kind (open_clip, Hugging Face, the mini-CLIP, whose text tower is a frozen
MiniLM ktmu cannot feed embeddings into); and it is the strongest prompt a text tower could
produce, since any prompt's output is such a vector.

Budget (:class:`SoftPromptConfig`): full-batch Adam on the attack's image features (computed once),
``steps`` = 200 at ``lr`` = 0.01. Adam moves each of the vector's coordinates by about ``lr`` per step
(a coordinate of a 256-d unit vector is about 0.06), so the vector can cross the sphere many times
over; on the mini-CLIP (shirt, the 160 images of the forget attack) the attack's D_f accuracy after
200 steps is within 0.3 points of 400 steps' for the original, nhl-kl and the oracle (67.4 / 56.3 /
16.3 against 67.4 / 56.4 / 16.6), and costs a quarter of a second. The attack draws nothing: it is
deterministic given the images. On the original it lands below the name's own accuracy (67.4
against 80.3): 16 images of the concept are a small sample to fit a class vector to; what the
number is for is the comparison with the oracle's under the same attack.

Hand-worked case (tests): features one-hot per class, the forgotten class's text feature pointing
away from its images (-e_c) -> zero-shot recall 0 before, 100 after the attack; the forgotten
class's images on a sibling's feature -> no vector separates them, at most the sibling's share.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ktmu.evaluation.arrays import as_numpy


@dataclass(frozen=True)
class SoftPromptConfig:
    """The soft-prompt attack's fixed budget, the same for every model audited."""

    steps: int = 200  # full-batch Adam steps: levelled off on the mini-CLIP (within 0.3 points of 400; module doc)
    lr: float = 0.01  # per-coordinate step of Adam, about a sixth of a 256-d unit vector's coordinate

    def __post_init__(self) -> None:
        if self.steps < 1 or not self.lr > 0:
            raise ValueError(f"the soft-prompt attack needs at least 1 step and a positive learning rate; got {self.steps}, {self.lr}.")


@dataclass(frozen=True)
class SoftPromptResult:
    """The learned text features and what they read."""

    text: torch.Tensor  # (K, D) unit class text features with the learned rows in place of the forgotten classes'
    loss: tuple[float, float]  # the attack's cross-entropy at its first and last step
    train_accuracy: tuple[float, float]  # fine accuracy on the attack's images before and after, percent


def soft_prompt_attack(features: Any, labels: Any, class_text: Any, forgotten: Sequence[int], scale: float,
                       cfg: SoftPromptConfig = SoftPromptConfig()) -> SoftPromptResult:
    """Learn unit text vectors for the ``forgotten`` classes on ``features`` (N, D) with fine ``labels``; the rest fixed (module doc).

    ``class_text``: (K, D) the model's unit class text features; ``scale``: its logit scale.
    """
    x = torch.as_tensor(as_numpy(features, np.float32))
    y = torch.as_tensor(as_numpy(labels).astype(np.int64))
    text = F.normalize(torch.as_tensor(as_numpy(class_text, np.float32)), dim=-1)
    rows = torch.as_tensor(sorted(set(int(c) for c in forgotten)), dtype=torch.long)
    if x.ndim != 2 or len(x) != len(y) or not len(x):
        raise ValueError(f"the soft-prompt attack needs (N, D) image features with one label each; got {tuple(x.shape)} and {len(y)} labels.")
    if text.ndim != 2 or text.shape[1] != x.shape[1] or not len(rows) or rows.max() >= len(text) or rows.min() < 0:
        raise ValueError(f"class text features must be (K, {x.shape[1]}) and the forgotten classes in 0..K-1; "
                         f"got {tuple(text.shape)} and {rows.tolist()}.")
    learned = torch.nn.Parameter(text[rows].clone())
    opt = torch.optim.Adam([learned], lr=cfg.lr)

    def logits() -> torch.Tensor:
        full = text.index_put((rows,), F.normalize(learned, dim=-1))
        return scale * x @ full.T

    losses, accs = [], []
    for step in range(cfg.steps + 1):
        with torch.enable_grad():  # also when called under no_grad: the attack's own vector needs its gradient
            out = logits()
            loss = F.cross_entropy(out, y)
        if step in (0, cfg.steps):
            losses.append(float(loss.detach()))
            accs.append(float((out.detach().argmax(1) == y).float().mean() * 100))
        if step == cfg.steps:
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        final = text.index_put((rows,), F.normalize(learned.detach(), dim=-1))
    return SoftPromptResult(final, (losses[0], losses[-1]), (accs[0], accs[-1]))


@dataclass(frozen=True)
class SoftPromptRun:
    """The soft-prompt attack on one model: zero-shot accuracies with the learned text features, and how the attack went."""

    d_f_fine: float  # D_f test fine accuracy with the learned vectors (percent)
    d_r_fine: float  # D_r test fine accuracy with them: what the learned vectors take from kept concepts
    loss: tuple[float, float]  # the attack's cross-entropy at its first and last step
    train_accuracy: tuple[float, float]  # on the attack's images, before and after (percent)
    images: int
    hits: np.ndarray  # per-image D_f hits with the learned vectors (never written out)


def soft_prompt_run(features: Any, labels: Any, class_text: Any, forgotten: Sequence[int], scale: float, test_features: Any,
                    test_labels: Any, d_f: Any, cfg: SoftPromptConfig = SoftPromptConfig()) -> SoftPromptRun:
    """:func:`soft_prompt_attack` on the attack's ``features``/``labels``, scored zero-shot on the test split (``d_f``: its D_f mask)."""
    res = soft_prompt_attack(features, labels, class_text, forgotten, scale, cfg)
    hits = zero_shot_hits(test_features, test_labels, res.text)
    mask = as_numpy(d_f).astype(bool)
    pct = lambda h: 100.0 * float(h.mean()) if len(h) else float("nan")  # noqa: E731
    return SoftPromptRun(pct(hits[mask]), pct(hits[~mask]), res.loss, res.train_accuracy, len(as_numpy(labels)), hits[mask])


def zero_shot_hits(features: Any, labels: Any, class_text: Any) -> np.ndarray:
    """0/1 zero-shot hits of image ``features`` against ``class_text`` (the nearest class text feature)."""
    x = torch.as_tensor(as_numpy(features, np.float32))
    text = torch.as_tensor(as_numpy(class_text, np.float32))
    return ((x @ text.T).argmax(1).numpy() == as_numpy(labels).astype(int))
