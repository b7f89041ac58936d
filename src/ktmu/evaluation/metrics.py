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
Which accuracies each goal forgets and keeps is :data:`ktmu.engine.goals.GOAL_TABLE`; every function
here reads it.

The study's functions (:func:`summarize` and its helpers) are kept exactly as they are, since
they reproduce its tables. Below them are chance-aware versions (:func:`summarize_chance_aware`)
that measure every accuracy from chance rather than from 0 and never report 100 for a ratio
that is undefined. The checks that say when the numbers describe nothing (collapse, unchanged
weights, an original that never knew the concept) are :mod:`ktmu.evaluation.flags`.
"""
from __future__ import annotations

import math
from typing import Mapping

from ktmu.engine.goals import goal_spec

KEYS = ("forget_coarse", "forget_fine", "retain_coarse", "retain_fine")  # every goal's accuracy dicts hold these


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
    """``{"quality", "utility", "qu"}`` in percent from two accuracy dicts keyed by :data:`KEYS`.

    Quality is the mean :func:`relative_drop` of the goal's forgotten accuracies, Utility the mean
    :func:`retention` of its kept ones (:data:`ktmu.engine.goals.GOAL_TABLE`).
    """
    _check_accuracies(original, unlearned)
    spec = goal_spec(goal)
    o, u = original, unlearned
    drops = [relative_drop(o[k], u[k]) for k in spec.forgotten]
    kept = [retention(o[k], u[k]) for k in spec.kept_in(o, u)]
    quality, utility = sum(drops) / len(drops), sum(kept) / len(kept)
    return {"quality": quality, "utility": utility, "qu": harmonic_mean(quality, utility)}


def _check_accuracies(original: Mapping[str, float], unlearned: Mapping[str, float]) -> None:
    for name, acc in (("original", original), ("unlearned", unlearned)):
        missing = [k for k in KEYS if k not in acc or acc[k] is None or math.isnan(acc[k])]
        if missing:
            raise ValueError(f"{name} accuracies lack {', '.join(missing)} (percent values for each of {', '.join(KEYS)}).")


# ---- chance-aware metrics ----------------------------------------------------------------------
# The study's ratios treat 0 % as "knows nothing" and cap every ratio at 100 %. On a k-way choice
# "knows nothing" is chance, 100/k %, so a model that never knew a concept (or an untrained one)
# scores a perfect Quality for staying at chance, and a kept accuracy that falls *below* chance
# still reads as a positive retention. The functions below measure every accuracy from chance
# instead and return nan, never 100, where a ratio has nothing to divide by.

# An original accuracy less than 10 % of the way from chance to perfect is no knowledge to measure
# a ratio against: the ratio would divide by (almost) nothing and turn noise into +-100s. The same
# margin is :func:`ktmu.evaluation.flags.knows_concept`'s second condition.
MIN_RESCALED_KNOWN = 10.0


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


def chance_aware_parts(original: Mapping[str, float], unlearned: Mapping[str, float], goal: str,
                       n_fine: int, n_coarse: int) -> dict[str, dict[str, float]]:
    """The per-accuracy terms behind :func:`summarize_chance_aware`: ``{"quality": {...}, "kept": {...}}``.

    Each maps an accuracy key (see :data:`KEYS`, plus ``forget_kept_coarse``) to its chance-aware
    Quality or retention, fine accuracies against ``n_fine`` classes and coarse ones against
    ``n_coarse``. Useful for reports: a nan entry is an accuracy whose original was at or near
    chance (less than :data:`MIN_RESCALED_KNOWN` % of the way to perfect).
    """
    _check_accuracies(original, unlearned)
    spec = goal_spec(goal)
    o, u = original, unlearned
    k = {key: n_fine if level == "fine" else n_coarse for key, level in spec.levels().items()}
    return {
        "quality": {key: quality_chance_aware(o[key], u[key], k[key]) for key in spec.forgotten},
        "kept": {key: retention_chance_aware(o[key], u[key], k[key]) for key in spec.kept_in(o, u)},
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


def run_summary(original: Mapping[str, float], unlearned: Mapping[str, float], goal: str, n_fine: int, n_coarse: int) -> dict[str, float]:
    """A run's scores as results.json holds them: :func:`summarize`'s and :func:`summarize_chance_aware`'s keys in one dict."""
    return {**summarize(original, unlearned, goal), **summarize_chance_aware(original, unlearned, goal, n_fine, n_coarse)}


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
