"""The study's metrics as pure functions of accuracies (percent).

For a fine goal (Tan & Gong, 2025):
* Quality = relative drop of D_f-test fine accuracy, 100 * (orig - new) / orig, clipped to [0, 100].
* Utility = mean of three retention ratios, each new/orig capped at 100 %: D_f-test coarse,
  D_r-test coarse and D_r-test fine.
* Q-U = harmonic mean of Quality and Utility.

For a coarse goal the forgotten level is coarse: Quality is the relative drop of D_f-test coarse
accuracy and Utility keeps D_r-test coarse and fine (D_f images have nothing left to keep).
For a hybrid goal Quality averages the fine drop on all of D_f and the coarse drop on the images
under forgotten coarse concepts (``forget_coarse``); Utility keeps D_r coarse and fine, plus the
coarse accuracy of forgotten fine concepts whose parent stays (``forget_kept_coarse``), if given.

The study's functions (:func:`summarize` and its helpers) are kept exactly as they are, since
they reproduce its tables. Below them are chance-aware versions (:func:`summarize_chance_aware`)
that measure every accuracy from chance rather than from 0 and never report 100 for a ratio
that is undefined, plus run checks (:func:`knows_concept`, :func:`collapse_check`,
:func:`weights_changed`, :func:`run_flags`) that say when the numbers describe nothing.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    import torch

KEYS = ("forget_coarse", "forget_fine", "retain_coarse", "retain_fine")


def relative_drop(original: float, unlearned: float) -> float:
    """100 * (original - unlearned) / original, clipped to [0, 100]; 100 when original is 0."""
    if original <= 0:
        return 100.0
    return min(100.0, max(0.0, 100.0 * (original - unlearned) / original))


def retention(original: float, unlearned: float) -> float:
    """100 * unlearned / original, capped at 100; 100 when original is 0."""
    if original <= 0:
        return 100.0
    return min(100.0, max(0.0, 100.0 * unlearned / original))


def harmonic_mean(a: float, b: float) -> float:
    return 0.0 if a + b <= 0 else 2 * a * b / (a + b)


def summarize(original: Mapping[str, float], unlearned: Mapping[str, float], goal: str = "fine") -> dict[str, float]:
    """``{"quality", "utility", "qu"}`` in percent from two accuracy dicts keyed by :data:`KEYS`."""
    for name, acc in (("original", original), ("unlearned", unlearned)):
        missing = [k for k in KEYS if k not in acc or acc[k] is None or math.isnan(acc[k])]
        if missing:
            raise ValueError(f"{name} accuracies lack {', '.join(missing)} (percent values for each of {', '.join(KEYS)}).")
    o, u = original, unlearned
    kept = [retention(o["retain_coarse"], u["retain_coarse"]), retention(o["retain_fine"], u["retain_fine"])]
    if goal == "fine":
        quality = relative_drop(o["forget_fine"], u["forget_fine"])
        kept.insert(0, retention(o["forget_coarse"], u["forget_coarse"]))
    elif goal == "coarse":
        quality = relative_drop(o["forget_coarse"], u["forget_coarse"])
    elif goal == "hybrid":
        quality = (relative_drop(o["forget_fine"], u["forget_fine"]) + relative_drop(o["forget_coarse"], u["forget_coarse"])) / 2
        if "forget_kept_coarse" in o and "forget_kept_coarse" in u:
            kept.insert(0, retention(o["forget_kept_coarse"], u["forget_kept_coarse"]))
    else:
        raise ValueError(f"unknown goal {goal!r}; use fine, coarse or hybrid.")
    utility = sum(kept) / len(kept)
    return {"quality": quality, "utility": utility, "qu": harmonic_mean(quality, utility)}


# ---- chance-aware metrics ----------------------------------------------------------------------
# The study's ratios treat 0 % as "knows nothing" and cap every ratio at 100 %. On a k-way choice
# "knows nothing" is chance, 100/k %, so a model that never knew a concept (or an untrained one)
# scores a perfect Quality for staying at chance, and a kept accuracy that falls *below* chance
# still reads as a positive retention. The functions below measure every accuracy from chance
# instead and return nan, never 100, where a ratio has nothing to divide by.

# An original accuracy less than 10 % of the way from chance to perfect is no knowledge to measure
# a ratio against: the ratio would divide by (almost) nothing and turn noise into +-100s. The same
# margin is knows_concept's second condition.
MIN_RESCALED_KNOWN = 10.0
KNOWN_P_VALUE = 0.01  # knows_concept: one-sided binomial test against chance
COLLAPSE_RESCALED = 10.0  # collapse_check: D_r fine accuracy within 10 % of the way above chance


def chance_rescaled(acc: float, k: int) -> float:
    """Accuracy (percent) rescaled so that chance on a k-way choice is 0 and perfect is 100.

    ``100 * (acc - c) / (100 - c)`` with chance ``c = 100 / k``; negative below chance, nan when
    k = 1 (one class: every answer is right, nothing to rescale). Examples: 55 % on 10 classes ->
    (55 - 10) / 90 = 50; 10 % on 10 classes -> 0; 0 % on 10 classes -> -11.1; 25 % on 2 classes -> -50.
    """
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"the number of classes must be a whole number >= 1, got {k!r}.")
    if k == 1:
        return math.nan
    chance = 100.0 / k
    return 100.0 * (acc - chance) / (100.0 - chance)


def quality_chance_aware(original: float, unlearned: float, k: int, min_original: float = MIN_RESCALED_KNOWN) -> float:
    """Chance-aware Quality of one forgotten accuracy: how much of the original's lead over chance is gone.

    ``100 * (orig - new) / (orig - c)``, capped at 100, with chance ``c = 100 / k``:
    100 when the accuracy ends at chance, 0 when unchanged, negative when it rose.
    Below chance it stays 100: a model that *avoids* the forgotten class still tells it apart (the
    avoidance is information about the concept), so it must not score better than one that
    guesses; and the cap keeps Quality on the 0-100 scale the harmonic mean Q-U expects.
    nan when the original is at, below or barely above chance (:func:`chance_rescaled` below
    ``min_original``, 10 by default): it never clearly knew the concept, so nothing measurable
    could be forgotten, and dividing by a lead of almost nothing would only magnify noise.

    Examples (k = 10, chance 10 %): 80 -> 10 gives 100; 80 -> 45 gives 50; 80 -> 0 gives 100
    (114 before the cap); 80 -> 90 gives -14.3; 10 -> 0 gives nan; 15 -> 0 gives nan (lead 5.6 < 10).
    """
    ro, ru = chance_rescaled(original, k), chance_rescaled(unlearned, k)
    if math.isnan(ro) or ro <= 0 or ro < min_original:
        return math.nan
    return min(100.0, 100.0 * (ro - ru) / ro)


def retention_chance_aware(original: float, unlearned: float, k: int, min_original: float = MIN_RESCALED_KNOWN) -> float:
    """Chance-aware retention of one kept accuracy: how much of the original's lead over chance is left.

    ``100 * (new - c) / (orig - c)`` with chance ``c = 100 / k``, capped at 100 above and not at
    all below: a kept accuracy that falls below chance gives a negative retention. A gain over the
    original counts as 100, as in the study: inside Utility's mean a gain on one kept accuracy must
    not pay for a loss on another. nan when the original is at, below or barely above chance
    (:func:`chance_rescaled` below ``min_original``, 10 by default): there was no knowledge to keep.

    Examples (k = 10, chance 10 %): 90 -> 50 gives 50 (the study's ratio: 55.6); 90 -> 10 gives 0;
    90 -> 5 gives -6.25; 90 -> 95 gives 100; 8 -> 50 gives nan.
    """
    ro, ru = chance_rescaled(original, k), chance_rescaled(unlearned, k)
    if math.isnan(ro) or ro <= 0 or ro < min_original:
        return math.nan
    return min(100.0, 100.0 * ru / ro)


def combined_chance_aware(quality: float, utility: float) -> float:
    """Chance-aware Q-U: the harmonic mean when both are positive, else the smaller of the two.

    The harmonic mean is meaningless for negative inputs; the smaller value keeps a negative
    score visible and meets the harmonic mean continuously at 0. nan if either is nan.
    Examples: (100, 50) -> 66.7; (0, 100) -> 0; (-20, 90) -> -20; (nan, 90) -> nan.
    """
    if math.isnan(quality) or math.isnan(utility):
        return math.nan
    if quality <= 0 or utility <= 0:
        return min(quality, utility)
    return 2 * quality * utility / (quality + utility)


def _check_accuracies(original: Mapping[str, float], unlearned: Mapping[str, float]) -> None:
    for name, acc in (("original", original), ("unlearned", unlearned)):
        missing = [k for k in KEYS if k not in acc or acc[k] is None or math.isnan(acc[k])]
        if missing:
            raise ValueError(f"{name} accuracies lack {', '.join(missing)} (percent values for each of {', '.join(KEYS)}).")


def chance_aware_parts(original: Mapping[str, float], unlearned: Mapping[str, float], goal: str,
                       n_fine: int, n_coarse: int) -> dict[str, dict[str, float]]:
    """The per-accuracy terms behind :func:`summarize_chance_aware`: ``{"quality": {...}, "kept": {...}}``.

    Each maps an accuracy key (see :data:`KEYS`, plus ``forget_kept_coarse``) to its chance-aware
    Quality or retention, fine accuracies against ``n_fine`` classes and coarse ones against
    ``n_coarse``. Useful for reports: a nan entry is an accuracy whose original was at or near
    chance (less than :data:`MIN_RESCALED_KNOWN` % of the way to perfect).
    """
    _check_accuracies(original, unlearned)
    o, u = original, unlearned
    k = {"forget_fine": n_fine, "retain_fine": n_fine, "forget_coarse": n_coarse, "retain_coarse": n_coarse,
         "forget_kept_coarse": n_coarse}
    if goal == "fine":
        forgotten, kept = ["forget_fine"], ["forget_coarse", "retain_coarse", "retain_fine"]
    elif goal == "coarse":
        forgotten, kept = ["forget_coarse"], ["retain_coarse", "retain_fine"]
    elif goal == "hybrid":
        forgotten, kept = ["forget_fine", "forget_coarse"], ["retain_coarse", "retain_fine"]
        if "forget_kept_coarse" in o and "forget_kept_coarse" in u:
            kept.insert(0, "forget_kept_coarse")
    else:
        raise ValueError(f"unknown goal {goal!r}; use fine, coarse or hybrid.")
    return {
        "quality": {key: quality_chance_aware(o[key], u[key], k[key]) for key in forgotten},
        "kept": {key: retention_chance_aware(o[key], u[key], k[key]) for key in kept},
    }


def summarize_chance_aware(original: Mapping[str, float], unlearned: Mapping[str, float], goal: str,
                           n_fine: int, n_coarse: int) -> dict[str, float]:
    """``{"quality_ca", "utility_ca", "qu_ca"}``: :func:`summarize` with every accuracy measured from chance.

    The same terms as :func:`summarize` for each goal (fine, coarse, hybrid), each computed by
    :func:`quality_chance_aware` / :func:`retention_chance_aware` with k = ``n_fine`` for fine
    accuracies and k = ``n_coarse`` for coarse ones; Q-U by :func:`combined_chance_aware`.

    * Quality is nan when any forgotten accuracy's original was at or near chance (see
      :func:`quality_chance_aware`): the request named knowledge the model did not have, and
      forgetting it cannot be scored. A hybrid Quality is the mean of its two terms.
    * Utility is the mean over the kept accuracies whose original was clearly above chance
      (knowledge the model never had cannot be lost; a 1-class level, such as a world with one
      coarse concept, has none), nan when there is none.

    Example (fine goal, 10 fine / 5 coarse classes): original D_f fine 80, D_f coarse 90,
    D_r coarse 95, D_r fine 90 -> unlearned 10, 90, 95, 50: Quality 100 (ended at chance);
    retentions 100, 100 and (50 - 10) / (90 - 10) = 50, Utility 83.3; Q-U 90.9.
    """
    parts = chance_aware_parts(original, unlearned, goal, n_fine, n_coarse)
    drops = list(parts["quality"].values())
    quality = math.nan if any(math.isnan(q) for q in drops) else sum(drops) / len(drops)
    kept = [r for r in parts["kept"].values() if not math.isnan(r)]
    utility = sum(kept) / len(kept) if kept else math.nan
    return {"quality_ca": quality, "utility_ca": utility, "qu_ca": combined_chance_aware(quality, utility)}


def worst_kept_class(original: Mapping[str, float], unlearned: Mapping[str, float], k: int) -> tuple[str, float]:
    """The kept class with the lowest chance-aware retention, and that retention (percent).

    ``original``/``unlearned`` map class names to per-class accuracy (only kept classes; pass
    k = the number of classes predicted among). Classes whose original was at chance are skipped;
    ``("", nan)`` when none is left. A mean over D_r hides a sibling that fell from 70 % to 37 %;
    this names it. Example (k = 4, chance 25 %): {"a": 70, "b": 95} -> {"a": 37, "b": 100} gives
    ("a", 26.7): (37 - 25) / (70 - 25).
    """
    worst = ("", math.nan)
    for name, before in original.items():
        if name not in unlearned:
            raise ValueError(f"class {name!r} has an original accuracy but no unlearned one.")
        r = retention_chance_aware(before, unlearned[name], k)
        if not math.isnan(r) and (math.isnan(worst[1]) or r < worst[1]):
            worst = (name, r)
    return worst


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
    (:func:`chance_rescaled` >= 10, e.g. >= 19 % on 10 classes, >= 55 % on 2). (a) guards small
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
    * D_r fine accuracy is at or near chance: :func:`chance_rescaled` (k = ``n_fine``, the classes
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


def run_flags(original: Mapping[str, float], unlearned: Mapping[str, float], goal: str, *, n_fine: int,
              n_coarse: int, n_forget_images: int, top_class_share: float | None, weight_change: float,
              n_forget_coarse_images: int | None = None, original_top_class_share: float | None = None,
              n_kept: int | None = None) -> RunFlags:
    """The :class:`RunFlags` of one unlearning run.

    ``original``/``unlearned`` are accuracy dicts as for :func:`summarize`; ``n_forget_images``
    is the number of D_f test images; ``top_class_share`` the largest fraction of D_r test images
    the unlearned model predicts as one fine class (``original_top_class_share`` the same for the
    original, optional); ``weight_change`` is :func:`weights_changed`. The concept check uses the
    forgotten level: D_f fine accuracy (fine goal), D_f coarse accuracy (coarse goal), both for a
    hybrid goal, where ``n_forget_coarse_images`` (the images under forgotten coarse concepts) is required.
    """
    reasons: list[str] = []
    if goal == "fine":
        checks = [("fine", original["forget_fine"], n_fine, n_forget_images)]
    elif goal == "coarse":
        checks = [("coarse", original["forget_coarse"], n_coarse, n_forget_images)]
    elif goal == "hybrid":
        if n_forget_coarse_images is None:
            raise ValueError("a hybrid goal needs n_forget_coarse_images (D_f test images under forgotten coarse concepts).")
        checks = [("fine", original["forget_fine"], n_fine, n_forget_images),
                  ("coarse", original["forget_coarse"], n_coarse, n_forget_coarse_images)]
    else:
        raise ValueError(f"unknown goal {goal!r}; use fine, coarse or hybrid.")
    knows = True
    for level, acc, k, n in checks:
        ok, why = knows_concept(acc, k, n)
        if not ok:
            knows = False
            reasons.append(f"original model does not know the forgotten {level} concept: {why}")
    if original_top_class_share is not None:
        orig_collapsed, why = collapse_check(original["retain_fine"], n_fine, original_top_class_share, n_kept=n_kept)
        if orig_collapsed:
            knows = False
            reasons.append(f"the original model is itself collapsed, so its D_f accuracy says nothing: {why}")
    collapsed, why = collapse_check(unlearned["retain_fine"], n_fine, top_class_share, n_kept=n_kept)
    if collapsed:
        reasons.append(f"the unlearned model collapsed: {why}")
    unchanged = weight_change == 0.0
    if unchanged:
        reasons.append("the unlearned weights equal the original's (nothing was trained, e.g. lr 0): "
                       "its scores are the original model's")
    return RunFlags(collapsed=collapsed, unchanged=unchanged, original_knows_concept=knows, reasons=reasons)
