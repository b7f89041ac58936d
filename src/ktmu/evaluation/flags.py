"""Checks that say when a run's numbers describe nothing: a collapsed model, unchanged weights, an original that never knew the concept.

* :func:`knows_concept`: the original's D_f accuracy at a forgotten level is clearly above chance.
  :func:`unknown_concept_reasons` applies it to every accuracy the goal forgets
  (:data:`ktmu.engine.goals.GOAL_TABLE`) and to the original's own collapse: the one test behind
  ``ktmu unlearn``'s refusal, ``ktmu audit``'s refusal and the ``original_knows_concept`` flag.
* :func:`collapse_check`: the model predicts near chance or mostly one class on D_r.
* :func:`weights_changed`: the largest weight difference (0 means nothing was trained).
* :func:`run_flags` / :func:`flags_for`: all of them as the :class:`RunFlags` of a results.json record.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

from ktmu.engine.goals import D_F, D_F_FORGOTTEN_COARSE, Accuracy, goal_spec
from ktmu.evaluation.metrics import MIN_RESCALED_KNOWN, chance_rescaled

if TYPE_CHECKING:
    import torch

KNOWN_P_VALUE = 0.01  # knows_concept: one-sided binomial test against chance
COLLAPSE_RESCALED = 10.0  # collapse_check: D_r fine accuracy within 10 % of the way above chance


def binomial_tail(successes: int, n: int, p: float) -> float:
    """P(X >= successes) for X ~ Binomial(n, p), summed exactly in log space.

    Example: 16 or more heads in 20 fair tosses: (4845 + 1140 + 190 + 20 + 1) / 2^20 = 0.00591.
    """
    if successes <= 0:
        return 1.0
    if successes > n:
        return 0.0
    if p <= 0.0 or p >= 1.0:
        return 0.0 if p <= 0.0 else 1.0
    log_p, log_q = math.log(p), math.log1p(-p)
    base = math.lgamma(n + 1)
    logs = [base - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q for i in range(successes, n + 1)]
    top = max(logs)
    return min(1.0, math.exp(top) * math.fsum(math.exp(v - top) for v in logs))


def knows_concept(acc: float, k: int, n_images: int) -> tuple[bool, str]:
    """Whether the original model clearly knows a concept: its D_f accuracy is well above chance. Returns (bool, reason).

    Rule: with x = round(acc / 100 * n_images) correct of n_images on a k-way choice, the model
    knows the concept when BOTH (a) a one-sided binomial test rejects chance, P(X >= x | n, 1/k)
    < 0.01, and (b) the accuracy is at least 10 % of the way from chance to perfect
    (:func:`ktmu.evaluation.metrics.chance_rescaled` >= 10, e.g. >= 19 % on 10 classes, >= 55 % on 2). (a) guards small
    test sets, (b) large ones, where a statistically real but tiny lead is still no knowledge.
    No images, k = 1 or a nan accuracy: False (nothing to tell).

    Examples: 75 % of 20 images, k = 2: p = 0.0207 -> False; 80 % of 20: p = 0.0059, rescaled 60 -> True;
    15 % of 10,000 images, k = 10: p < 1e-50 but rescaled 5.6 -> False.
    """
    if n_images < 1:
        return False, "there are no D_f test images, so whether the original model knows the concept cannot be measured"
    if k < 2:
        return False, "a one-class choice has no chance level to beat"
    if math.isnan(acc):
        return False, "the original D_f accuracy is not a number"
    chance = 100.0 / k
    correct = min(n_images, max(0, round(acc / 100.0 * n_images)))
    p_value = binomial_tail(correct, n_images, 1.0 / k)
    lead = chance_rescaled(acc, k)
    facts = (f"original D_f accuracy {acc:.1f} % on {n_images} images vs chance {chance:.1f} % "
             f"({k} classes): {lead:.1f} % of the way from chance to perfect, one-sided binomial p = {p_value:.2g}")
    if p_value >= KNOWN_P_VALUE:
        return False, f"{facts}; not clearly above chance (needs p < {KNOWN_P_VALUE})"
    if lead < MIN_RESCALED_KNOWN:
        return False, f"{facts}; too close to chance (needs >= {MIN_RESCALED_KNOWN:.0f} %)"
    return True, f"{facts}; the original model knows the concept"


def collapse_share_threshold(n_kept: int) -> float:
    """The share of D_r predictions on one class above which a model counts as collapsed.

    Halfway between a balanced split over the ``n_kept`` classes of D_r (1 / n_kept each) and
    every image on one class: (1 + 1 / n_kept) / 2. That is "most" in a sense that scales with the
    world: 0.75 for 2 kept classes, 0.667 for 3, 0.556 for 9, just over 0.5 for many.
    """
    return (1.0 + 1.0 / n_kept) / 2.0


def collapse_check(retain_fine_acc: float, n_fine: int, top_class_share: float | None = None, *,
                   n_kept: int | None = None, min_rescaled: float = COLLAPSE_RESCALED) -> tuple[bool, str]:
    """Whether a model has collapsed, from its D_r-test fine accuracy and prediction spread. Returns (bool, reason).

    Collapsed when either holds:
    * D_r fine accuracy is at or near chance: :func:`ktmu.evaluation.metrics.chance_rescaled` (k = ``n_fine``, the classes
      predicted among) <= ``min_rescaled`` (10: e.g. <= 19 % on 10 classes);
    * one fine class takes ``top_class_share`` >= :func:`collapse_share_threshold` of the D_r
      predictions, with ``n_kept`` the number of fine classes D_r holds (default ``n_fine``). Not
      tested when D_r holds a single class: then a perfect model predicts one class too.

    Examples: 94.5 % on 10 classes, share 0.12 -> not collapsed; 11.1 % on 10 classes -> collapsed
    (rescaled 1.2); 60 %, share 0.6 with 9 kept classes -> collapsed (0.6 >= 0.556).
    """
    if not isinstance(n_fine, int) or n_fine < 1:
        raise ValueError(f"n_fine must be a whole number >= 1, got {n_fine!r}.")
    kept = n_fine if n_kept is None else n_kept
    reasons = []
    lead = chance_rescaled(retain_fine_acc, n_fine)
    if not math.isnan(lead) and lead <= min_rescaled:
        reasons.append(f"D_r fine accuracy {retain_fine_acc:.1f} % is only {lead:.1f} % of the way from chance "
                       f"({100.0 / n_fine:.1f} %, {n_fine} classes) to perfect (collapsed at <= {min_rescaled:g} %)")
    if top_class_share is not None and kept >= 2:
        threshold = collapse_share_threshold(kept)
        if top_class_share >= threshold:
            reasons.append(f"one fine class takes {100 * top_class_share:.1f} % of the D_r predictions "
                           f"(collapsed at >= {100 * threshold:.1f} % with {kept} kept classes)")
    if reasons:
        return True, "; ".join(reasons)
    return False, f"D_r fine accuracy {retain_fine_acc:.1f} % and prediction spread look healthy"


def weights_changed(original: Mapping[str, torch.Tensor], unlearned: Mapping[str, torch.Tensor]) -> float:
    """The largest absolute difference between two state dicts (0.0 means the weights are unchanged).

    Both must hold the same names and shapes. A value that became nan or inf counts as an infinite
    change; equal values (also equal infinities, or nan where the original was nan) count as none.
    Example: {"w": [1, 2]} vs {"w": [1, 2.5]} -> 0.5.
    """
    import torch  # only here: the rest of this module is plain numbers

    if set(original) != set(unlearned):
        diff = sorted(set(original) ^ set(unlearned))
        raise ValueError(f"the state dicts differ in names ({', '.join(diff[:5])}); compare the same model's weights.")
    largest = 0.0
    for name, before in original.items():
        after = unlearned[name]
        if before.shape != after.shape:
            raise ValueError(f"weight {name} changed shape {tuple(before.shape)} -> {tuple(after.shape)}.")
        a, b = before.detach().to("cpu", torch.float64), after.detach().to("cpu", torch.float64)
        same = (a == b) | (torch.isnan(a) & torch.isnan(b))
        if bool(same.all()):
            continue
        delta = torch.nan_to_num((b - a).abs()[~same], nan=math.inf)
        largest = max(largest, float(delta.max()))
    return largest


@dataclass
class RunFlags:
    """Warnings for a results.json record; :meth:`record` gives the JSON form.

    Keys of the record:
    * ``collapsed``: the unlearned model predicts near chance or mostly one class on D_r
      (:func:`collapse_check`); its Utility terms then describe a broken model.
    * ``unchanged``: the unlearned weights equal the original's (:func:`weights_changed` == 0),
      e.g. a learning rate of 0; any Quality it shows was there before unlearning.
    * ``original_knows_concept``: the original model's D_f accuracy at the forgotten level(s) is
      clearly above chance (:func:`knows_concept`) and the original is not itself collapsed; when
      False, Quality measures nothing (the chance-aware Quality is nan).
    * ``reasons``: one sentence per raised warning (``collapsed`` or ``unchanged`` True,
      ``original_knows_concept`` False); empty for a clean run.
    """

    collapsed: bool
    unchanged: bool
    original_knows_concept: bool
    reasons: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no warning is raised."""
        return not self.collapsed and not self.unchanged and self.original_knows_concept

    def record(self) -> dict[str, Any]:
        return {"collapsed": self.collapsed, "unchanged": self.unchanged,
                "original_knows_concept": self.original_knows_concept, "reasons": list(self.reasons)}


def _forgotten_images(acc: Accuracy, goal: str, n_forget_images: int, n_forget_coarse_images: int | None) -> int:
    """How many D_f test images the forgotten accuracy ``acc`` was measured on."""
    if acc.images == D_F:
        return n_forget_images
    if acc.images == (D_F_FORGOTTEN_COARSE,):
        if n_forget_coarse_images is None:
            raise ValueError(f"a {goal} goal needs n_forget_coarse_images (D_f test images under forgotten coarse concepts).")
        return n_forget_coarse_images
    raise NotImplementedError(f"no image count for an accuracy measured on {acc.images}")


def _unknown_concept(original: Mapping[str, float], goal: str, *, n_fine: int, n_coarse: int, n_forget_images: int,
                     n_forget_coarse_images: int | None, original_top_class_share: float | None, n_kept: int | None) -> list[str]:
    """Why the original's accuracies cannot show that it knows what the goal forgets; empty when they do (:func:`run_flags`'s arguments)."""
    reasons = []
    for key in goal_spec(goal).forgotten:
        acc = goal_spec(goal).accuracy(key)
        k = n_fine if acc.level == "fine" else n_coarse
        ok, why = knows_concept(original[key], k, _forgotten_images(acc, goal, n_forget_images, n_forget_coarse_images))
        if not ok:
            reasons.append(f"original model does not know the forgotten {acc.level} concept: {why}")
    if original_top_class_share is not None:
        collapsed, why = collapse_check(original["retain_fine"], n_fine, original_top_class_share, n_kept=n_kept)
        if collapsed:
            reasons.append(f"the original model is itself collapsed, so its D_f accuracy says nothing: {why}")
    return reasons


def run_flags(original: Mapping[str, float], unlearned: Mapping[str, float], goal: str, *, n_fine: int,
              n_coarse: int, n_forget_images: int, top_class_share: float | None, weight_change: float,
              n_forget_coarse_images: int | None = None, original_top_class_share: float | None = None,
              n_kept: int | None = None) -> RunFlags:
    """The :class:`RunFlags` of one unlearning run.

    ``original``/``unlearned`` are accuracy dicts as for :func:`ktmu.evaluation.metrics.summarize`;
    ``n_forget_images`` is the number of D_f test images; ``top_class_share`` the largest fraction
    of D_r test images the unlearned model predicts as one fine class (``original_top_class_share``
    the same for the original, optional); ``weight_change`` is :func:`weights_changed`. The concept
    check reads the goal's forgotten accuracies: D_f fine accuracy (fine goal), D_f coarse accuracy
    (coarse goal), both for a hybrid goal, where ``n_forget_coarse_images`` (the images under
    forgotten coarse concepts, on which its D_f coarse accuracy is measured) is required.
    """
    reasons = _unknown_concept(original, goal, n_fine=n_fine, n_coarse=n_coarse, n_forget_images=n_forget_images,
                               n_forget_coarse_images=n_forget_coarse_images, original_top_class_share=original_top_class_share,
                               n_kept=n_kept)
    knows = not reasons
    collapsed, why = collapse_check(unlearned["retain_fine"], n_fine, top_class_share, n_kept=n_kept)
    if collapsed:
        reasons.append(f"the unlearned model collapsed: {why}")
    unchanged = weight_change == 0.0
    if unchanged:
        reasons.append("the unlearned weights equal the original's (nothing was trained, e.g. lr 0): "
                       "its scores are the original model's")
    return RunFlags(collapsed=collapsed, unchanged=unchanged, original_knows_concept=knows, reasons=reasons)


def _counts(record: Mapping[str, Any]) -> dict[str, Any]:
    """The image and class counts of an evaluator record (:meth:`ktmu.evaluation.protocol.UnlearningEvaluator.evaluate`) the checks need."""
    return {"n_fine": record["n_fine"], "n_coarse": record["n_coarse"], "n_forget_images": record["d_f_test_images"],
            "n_forget_coarse_images": record.get("d_f_forgotten_coarse_images"), "n_kept": record.get("d_r_fine_classes")}


def flags_for(original: Mapping[str, Any], unlearned: Mapping[str, Any], goal: str, weight_change: float) -> RunFlags:
    """The :class:`RunFlags` of a run from the evaluator records of the original and the unlearned model."""
    return run_flags(original, unlearned, goal, top_class_share=unlearned["retain_fine_top_share"], weight_change=weight_change,
                     original_top_class_share=original["retain_fine_top_share"], **_counts(unlearned))


def unknown_concept_reasons(original: Mapping[str, Any], goal: str) -> list[str]:
    """Why the original model does not clearly know what the request forgets, from its evaluator record; empty when it does.

    The one test of "the original knows the concept": every accuracy the goal forgets passes
    :func:`knows_concept`, and the original is not itself collapsed on D_r (:func:`collapse_check`).
    ``ktmu unlearn`` and ``ktmu audit`` refuse a request with reasons (unless ``--force``), and a run's
    ``original_knows_concept`` flag is False exactly when there are some.
    """
    return _unknown_concept(original, goal, original_top_class_share=original["retain_fine_top_share"], **_counts(original))
