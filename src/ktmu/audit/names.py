"""Name and prompt probes: is a forgotten concept still found under another of its names, or another prompt?

The study measures forgetting with the concept's canonical name and the training templates. A
method can lower exactly that score while the concept stays reachable:

* **alias leak** (:func:`alias_probe`): the forgotten concept's class text is built from one of
  its *other* names (every other class keeps its canonical name; template ensemble as in
  evaluation), and the fine accuracy on the concept's test images is measured per name. Held-out
  names (``Concept.audit_names``, which no method sees) are the headline; the method-visible
  aliases (``Concept.aliases``) are reported separately, since a method may have pushed them down
  on purpose.
* **template worst case** (:func:`template_probe`): the fine accuracy on D_f test with each
  single template, for the training templates and for held-out ones
  (:data:`ktmu.prompts.AUDIT_TEMPLATES`).

"Worst" is always from the forgetting's point of view: the name or template under which the most
of the concept is still found (the highest accuracy). Accuracies are in percent; a probe that
cannot be run returns ``{"skipped": reason}``, never a silent zero.
"""
from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
import torch

from ..backbones import Backbone
from ..backbones.encode import class_text_features
from ..concepts import Hierarchy
from ..prompts import eval_templates

NameKind = Literal["held_out", "method_visible"]
_FIELD = {"held_out": "audit_names", "method_visible": "aliases"}


def skipped(reason: str) -> dict:
    """The record of a probe that was not run, and why."""
    return {"skipped": reason}


def is_skipped(entry: object) -> bool:
    return isinstance(entry, dict) and "skipped" in entry


def percent(hits: torch.Tensor) -> float:
    """Accuracy in percent of 0/1 hits (nan for none)."""
    return float(hits.float().mean() * 100) if len(hits) else float("nan")


def predict(image_feats: torch.Tensor, text_feats: torch.Tensor) -> torch.Tensor:
    """Zero-shot class of each image: the nearest class text feature (the logit scale does not change the argmax)."""
    return (image_feats.float() @ text_feats.float().T).argmax(1)


def alias_probe(
    backbone: Backbone,
    image_feats: torch.Tensor,
    fine_labels: torch.Tensor,
    world: Hierarchy,
    forget_fine: Sequence[int],
    kind: NameKind = "held_out",
    templates: Sequence[str] | None = None,
) -> dict:
    """Fine accuracy of each forgotten concept's test images when its class text uses each of its other names.

    ``image_feats``/``fine_labels``: the whole test split (so the D_r accuracy under each swap is
    reported too). Per concept: ``names`` -> ``{"d_f_fine", "d_r_fine"}`` (its own test images, and
    every image of a kept concept), the ``worst_name`` and its accuracy ``worst``. The probe's
    ``worst`` pools the concepts' worst accuracies weighted by their test images. Concepts without
    such names are listed in ``skipped_concepts``; when no concept has any, the whole probe is
    skipped with the reason.
    """
    field = _FIELD[kind]
    feats = image_feats.float().cpu()
    labels = torch.as_tensor(fine_labels)
    templates = eval_templates(world) if templates is None else templates  # as the evaluation captions the world
    base = class_text_features(backbone, world.fine_names, templates).float().cpu()
    d_f = torch.isin(labels, torch.as_tensor(list(forget_fine), dtype=labels.dtype))
    concepts: dict[str, dict] = {}
    missing: list[str] = []
    for c in forget_fine:
        concept = world.fine[c]
        names = list(getattr(concept, field))
        if not names:
            missing.append(concept.name)
            continue
        alternatives = class_text_features(backbone, names, templates).float().cpu()
        mine = labels == c
        rows = {}
        for name, feat in zip(names, alternatives):
            text = base.clone()
            text[c] = feat
            hit = predict(feats, text) == labels
            rows[name] = {"d_f_fine": percent(hit[mine]), "d_r_fine": percent(hit[~d_f])}
        worst = max(rows, key=lambda n: rows[n]["d_f_fine"])  # the first of equal values
        concepts[concept.name] = {"names": rows, "worst_name": worst, "worst": rows[worst]["d_f_fine"], "images": int(mine.sum())}
    if not concepts:
        return skipped(f"the world file gives no {field} for {', '.join(map(repr, missing))}")
    weights = np.array([r["images"] for r in concepts.values()], dtype=np.float64)
    worst = np.array([r["worst"] for r in concepts.values()], dtype=np.float64)
    out: dict = {"worst": float((weights * worst).sum() / weights.sum()) if weights.sum() else float("nan"), "concepts": concepts}
    if missing:
        out["skipped_concepts"] = {n: f"the world file gives no {field} for {n!r}" for n in missing}
    return out


def template_probe(
    backbone: Backbone,
    image_feats: torch.Tensor,
    fine_labels: torch.Tensor,
    world: Hierarchy,
    forget_fine: Sequence[int],
    templates: Sequence[str],
) -> dict:
    """Fine accuracy on D_f test (and D_r test) with each single template; the worst (highest D_f) one and the mean."""
    if not templates:
        return skipped("no templates given")
    feats = image_feats.float().cpu()
    labels = torch.as_tensor(fine_labels)
    d_f = torch.isin(labels, torch.as_tensor(list(forget_fine), dtype=labels.dtype))
    rows = {}
    for t in templates:
        hit = predict(feats, class_text_features(backbone, world.fine_names, (t,)).float().cpu()) == labels
        rows[t] = {"d_f_fine": percent(hit[d_f]), "d_r_fine": percent(hit[~d_f])}
    worst = max(rows, key=lambda t: rows[t]["d_f_fine"])
    return {"worst": rows[worst]["d_f_fine"], "worst_template": worst,
            "mean": float(np.mean([r["d_f_fine"] for r in rows.values()])), "templates": rows}
