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

from ktmu.backbones import Backbone
from ktmu.backbones.encode import class_text_features
from ktmu.concepts import Hierarchy
from ktmu.prompts import eval_templates

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


def alias_hits(
    backbone: Backbone,
    image_feats: torch.Tensor,
    fine_labels: torch.Tensor,
    world: Hierarchy,
    forget_fine: Sequence[int],
    kind: NameKind = "held_out",
    templates: Sequence[str] | None = None,
) -> dict[int, tuple[list[str], torch.Tensor]]:
    """Per forgotten concept with such names: its names and the (N_test, names) 0/1 hits of every test image under each swap.

    Column j: the zero-shot fine prediction of each image is right when the concept's class text
    uses its j-th name (every other class keeps its canonical name). Concepts without such names
    are left out.
    """
    field = _FIELD[kind]
    feats = image_feats.float().cpu()
    labels = torch.as_tensor(fine_labels)
    templates = eval_templates(world) if templates is None else templates  # as the evaluation captions the world
    base = class_text_features(backbone, world.fine_names, templates).float().cpu()
    out: dict[int, tuple[list[str], torch.Tensor]] = {}
    for c in forget_fine:
        names = list(getattr(world.fine[c], field))
        if not names:
            continue
        alternatives = class_text_features(backbone, names, templates).float().cpu()
        columns = []
        for feat in alternatives:
            text = base.clone()
            text[c] = feat
            columns.append(predict(feats, text) == labels)
        out[c] = (names, torch.stack(columns, dim=1))
    return out


def alias_record(hits: dict[int, tuple[list[str], torch.Tensor]], fine_labels: torch.Tensor, world: Hierarchy,
                 forget_fine: Sequence[int], kind: NameKind = "held_out") -> dict:
    """The alias probe's record from :func:`alias_hits` (see :func:`alias_probe`)."""
    field = _FIELD[kind]
    labels = torch.as_tensor(fine_labels)
    d_f = torch.isin(labels, torch.as_tensor(list(forget_fine), dtype=labels.dtype))
    concepts: dict[str, dict] = {}
    missing = [world.fine[c].name for c in forget_fine if c not in hits]
    for c in forget_fine:
        if c not in hits:
            continue
        names, table = hits[c]
        mine = labels == c
        rows = {name: {"d_f_fine": percent(table[mine, j]), "d_r_fine": percent(table[~d_f, j])} for j, name in enumerate(names)}
        worst = max(rows, key=lambda n: rows[n]["d_f_fine"])  # the first of equal values
        concepts[world.fine[c].name] = {"names": rows, "worst_name": worst, "worst": rows[worst]["d_f_fine"], "images": int(mine.sum())}
    if not concepts:
        return skipped(f"the world file gives no {field} for {', '.join(map(repr, missing))}")
    weights = np.array([r["images"] for r in concepts.values()], dtype=np.float64)
    worst = np.array([r["worst"] for r in concepts.values()], dtype=np.float64)
    out: dict = {"worst": float((weights * worst).sum() / weights.sum()) if weights.sum() else float("nan"), "concepts": concepts}
    if missing:
        out["skipped_concepts"] = {n: f"the world file gives no {field} for {n!r}" for n in missing}
    return out


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
    hits = alias_hits(backbone, image_feats, fine_labels, world, forget_fine, kind, templates)
    return alias_record(hits, fine_labels, world, forget_fine, kind)


def template_hits(backbone: Backbone, image_feats: torch.Tensor, fine_labels: torch.Tensor, world: Hierarchy,
                  templates: Sequence[str]) -> torch.Tensor:
    """(N_test, templates) 0/1 hits: each test image's zero-shot fine prediction with each single template."""
    feats = image_feats.float().cpu()
    labels = torch.as_tensor(fine_labels)
    columns = [predict(feats, class_text_features(backbone, world.fine_names, (t,)).float().cpu()) == labels for t in templates]
    return torch.stack(columns, dim=1) if columns else torch.zeros(len(labels), 0, dtype=torch.bool)


def template_record(hits: torch.Tensor, fine_labels: torch.Tensor, forget_fine: Sequence[int], templates: Sequence[str]) -> dict:
    """The template probe's record from :func:`template_hits` (see :func:`template_probe`)."""
    if not templates:
        return skipped("no templates given")
    labels = torch.as_tensor(fine_labels)
    d_f = torch.isin(labels, torch.as_tensor(list(forget_fine), dtype=labels.dtype))
    rows = {t: {"d_f_fine": percent(hits[d_f, j]), "d_r_fine": percent(hits[~d_f, j])} for j, t in enumerate(templates)}
    worst = max(rows, key=lambda t: rows[t]["d_f_fine"])
    return {"worst": rows[worst]["d_f_fine"], "worst_template": worst,
            "mean": float(np.mean([r["d_f_fine"] for r in rows.values()])), "templates": rows}


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
    return template_record(template_hits(backbone, image_feats, fine_labels, world, templates), fine_labels, forget_fine, templates)
