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
"""
from __future__ import annotations

import math
from typing import Mapping

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
