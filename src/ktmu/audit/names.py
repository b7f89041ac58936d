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

from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
import torch

from ktmu.audit.seeds import ProbeHits, WorstHits
from ktmu.backbones import Backbone
from ktmu.backbones.encode import class_text_features
from ktmu.concepts import Hierarchy
from ktmu.prompts import AUDIT_TEMPLATES, eval_templates, train_templates

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


@dataclass(frozen=True)
class NameProbes:
    """Every name-level probe of one model: canonical names, held-out and visible aliases, templates, and the D_f hits for intervals."""

    name: dict  # d_f_fine, d_f_coarse, d_r_fine, d_r_coarse, per_class_fine (percent)
    fine_pred: torch.Tensor  # (N_test,) canonical zero-shot fine predictions
    per_class: np.ndarray  # (K,) canonical fine accuracy per class
    text_features: torch.Tensor  # (K, D) canonical class text features (template ensemble)
    aliases: dict
    templates: dict
    hits: ProbeHits


def name_probes(backbone: Backbone, feats: torch.Tensor, fine_labels: torch.Tensor, coarse_labels: torch.Tensor, world: Hierarchy,
                forget_fine: Sequence[int], strata: Sequence[np.ndarray]) -> NameProbes:
    """The name-level probes on the test split's image ``feats`` (``strata``: each forgotten concept's D_f images, for the alias hits)."""
    labels = torch.as_tensor(fine_labels)
    d_f = torch.isin(labels, torch.as_tensor(list(forget_fine), dtype=labels.dtype))
    text = class_text_features(backbone, world.fine_names, eval_templates(world)).float().cpu()
    pred = predict(feats, text)
    coarse_pred = predict(feats, class_text_features(backbone, world.coarse_names, eval_templates(world)).float().cpu())
    hit, coarse_hit = pred == labels, coarse_pred == torch.as_tensor(coarse_labels)
    per_class = np.array([percent(hit[labels == i]) for i in range(len(world.fine))])
    name = {"d_f_fine": percent(hit[d_f]), "d_f_coarse": percent(coarse_hit[d_f]), "d_r_fine": percent(hit[~d_f]),
            "d_r_coarse": percent(coarse_hit[~d_f]), "per_class_fine": dict(zip(world.fine_names, per_class.tolist()))}
    swaps = {kind: alias_hits(backbone, feats, labels, world, forget_fine, kind) for kind in ("held_out", "method_visible")}
    aliases = {kind: alias_record(h, labels, world, forget_fine, kind) for kind, h in swaps.items()}
    per_template = {"training": train_templates(world), "held_out": AUDIT_TEMPLATES}
    table = {kind: template_hits(backbone, feats, labels, world, ts) for kind, ts in per_template.items()}
    templates = {kind: template_record(table[kind], labels, forget_fine, ts) for kind, ts in per_template.items()}
    alias_hit = None
    if not is_skipped(aliases["held_out"]):
        positions = dict(zip(forget_fine, strata))
        held_out = swaps["held_out"]
        alias_hit = WorstHits(tuple(positions[c] for c in held_out), tuple(h[d_f].numpy()[positions[c]] for c, (_, h) in held_out.items()))
    hits = ProbeHits(name=WorstHits.of(hit[d_f].numpy()), held_out_alias=alias_hit,
                     held_out_template=None if is_skipped(templates["held_out"]) else WorstHits.columns(table["held_out"][d_f].numpy()))
    return NameProbes(name, pred, per_class, text, aliases, templates, hits)
