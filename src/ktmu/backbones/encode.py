"""Encoding helpers over any :class:`Backbone`: class-name text features (a template ensemble, or one template at a time for training) and streamed image features."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ktmu.data.stream import ImageSource, chunked, iter_batches
from ktmu.runtime.dist import Dist, get_dist
from ktmu.prompts import TEMPLATES
from ktmu.backbones.base import Backbone

TEXT_BATCH = 1024  # prompts per text forward: 10 templates x 113 dog classes fit in two


FROZEN_TEXT_ENTRIES = 256  # cached feature tables per backbone (a table: classes x D floats); far above one session's needs


def frozen_text(backbone: Backbone, key: tuple, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
    """``compute()``, remembered on the backbone (per device and precision) under ``key`` while no text weight can change; afresh when one trains.

    A frozen text tower's features change only when its weights are replaced, and every such
    replacement (load_weights, restore, load_trainable, set_trainable) empties the cache.
    """
    if backbone.text_trainable:
        return compute()
    cache = backbone.frozen_text_cache
    key = (str(backbone.device), backbone.precision, *key)
    if key not in cache:
        if len(cache) >= FROZEN_TEXT_ENTRIES:
            cache.clear()
        cache[key] = compute()
    return cache[key]


@torch.no_grad()
def class_text_features(backbone: Backbone, names: Sequence[str], templates: Sequence[str] = TEMPLATES) -> torch.Tensor:
    """One unit vector per class: the normalised mean of its template captions' features (computed once while the text tower is frozen)."""
    prompts = [t.format(n) for n in names for t in templates]

    def compute() -> torch.Tensor:
        feats = torch.cat([backbone.encode_texts(prompts[i : i + TEXT_BATCH]) for i in range(0, len(prompts), TEXT_BATCH)])
        return torch.nn.functional.normalize(feats.reshape(len(names), len(templates), -1).mean(1), dim=-1)

    return frozen_text(backbone, ("ensemble", len(templates), *prompts), compute)


class TemplateTextFeatures:
    """Unit text features of class names under each prompt template, one template at a time: what a training step reads.

    Every template's captions are tokenized once. When no text weight trains (``backbone.text_trainable``
    is False when this is built), each template's features are computed once, here, and every call
    returns them; otherwise every call encodes again, with gradients, through the current text weights.
    The unlearning trainer, the original's reference outputs and the relearning attack all use this.
    """

    def __init__(self, backbone: Backbone, names: Sequence[str], templates: Sequence[str]) -> None:
        self.backbone = backbone
        self.tokens = [backbone.tokenize([t.format(n) for n in names]) for t in templates]
        self.fixed: list[torch.Tensor] | None = None
        if not backbone.text_trainable:  # frozen text: each template's features once, not every step (nor every run)
            with torch.no_grad():
                self.fixed = [frozen_text(backbone, ("template", t, *names), lambda tok=tok: backbone.encode_text(tok))
                              for t, tok in zip(templates, self.tokens)]

    def __len__(self) -> int:
        return len(self.tokens)

    def __call__(self, template: int) -> torch.Tensor:
        """(classes, D) features under template ``template`` (an index into the templates)."""
        if self.fixed is not None:
            return self.fixed[template]
        return self.backbone.encode_text(self.tokens[template])

    @torch.no_grad()
    def stacked(self) -> torch.Tensor:
        """(templates, classes, D) float32 features of every template, on the CPU, without gradients."""
        return torch.stack([self(t).float().cpu() for t in range(len(self))])


@torch.no_grad()
def embed_source(
    backbone: Backbone,
    source: ImageSource,
    positions: Sequence[int] | np.ndarray | None = None,
    batch_size: int = 256,
    workers: int = 0,
    dist: Dist | None = None,
    progress: bool = False,
    desc: str = "embed",
) -> torch.Tensor:
    """Unit image features (on CPU, float32) of ``positions`` of a source (all by default), in eval mode.

    Under several processes each embeds its contiguous shard and the shards are gathered, so every
    process returns the same tensor in position order.
    """
    dist = dist or get_dist()
    positions = np.arange(len(source)) if positions is None else np.asarray(positions)
    mine = positions[dist.shard(len(positions))]
    was_training = backbone.model.training
    backbone.model.eval()
    out = []
    chunks = chunked(mine, batch_size)
    for images, _ in tqdm(iter_batches(source, chunks, backbone.device, workers), total=len(chunks), desc=desc, leave=False,
                          disable=not (progress and dist.is_main)):
        out.append(backbone.encode_image(images).float())
    backbone.model.train(was_training)
    dim = out[0].shape[1] if out else _feature_dim(backbone)
    local = torch.cat(out) if out else torch.empty(0, dim, device=backbone.device)
    return dist.gather_cat(local).cpu()


def _feature_dim(backbone: Backbone) -> int:
    return int(backbone.encode_texts(["a"]).shape[1])
