"""How hard a fine concept is to forget without hurting its siblings, measured on train data only.

Two measures per fine concept, from the original model:
* ``sibling_confusion``: mean zero-shot probability that its own train images put on its sibling
  fine concepts (same coarse parent). High means the model separates it from its siblings by a
  thin margin, so pushing it away easily drags the siblings along.
* ``text_similarity``: cosine similarity between its class text feature and the closest sibling's.
Concepts with no sibling score 0 on both. The world file's ``levels`` pick easy / medium /
difficult requests from this ranking (``ktmu levels`` prints it).
"""
from __future__ import annotations

import numpy as np
import torch

from ktmu.backbones import Backbone
from ktmu.data import ConceptDataset
from ktmu.backbones.encode import class_text_features, embed_source
from ktmu.data.stream import image_source
from ktmu.prompts import eval_templates

PER_CLASS = 500  # train images per concept: enough for a stable mean, 10x faster than all 6,000


@torch.no_grad()
def sibling_difficulty(backbone: Backbone, train: ConceptDataset, per_class: int = PER_CLASS, seed: int = 0, workers: int = 0,
                       progress: bool = False) -> list[dict]:
    """One record per fine concept, most difficult first."""
    world = train.hierarchy
    rng = np.random.default_rng(seed)
    idx = np.concatenate([rng.permutation(np.flatnonzero(train.fine_labels == f))[:per_class] for f in range(len(world.fine))])
    feats = embed_source(backbone, image_source(train, backbone.preprocess, idx), workers=workers, progress=progress, desc="embed train")
    text = class_text_features(backbone, world.fine_names, eval_templates(world)).float().cpu()
    probs = (backbone.logit_scale().float().cpu() * feats @ text.T).softmax(1)
    labels = torch.as_tensor(train.fine_labels[idx])
    parents = world.fine_to_coarse()
    out = []
    for f, concept in enumerate(world.fine):
        sibs = [s for s in range(len(world.fine)) if s != f and parents[s] == parents[f]]
        mine = labels == f
        confusion = float(probs[mine][:, sibs].sum(1).mean()) if sibs else 0.0
        similarity = float((text[f] @ text[sibs].T).max()) if sibs else 0.0
        accuracy = float((probs[mine].argmax(1) == f).float().mean() * 100)
        out.append({"concept": concept.name, "siblings": [world.fine_names[s] for s in sibs], "sibling_confusion": confusion, "text_similarity": similarity, "train_acc": accuracy})
    return sorted(out, key=lambda r: (-r["sibling_confusion"], -r["text_similarity"]))
