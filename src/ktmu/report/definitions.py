"""What every number on a report page means, in words (the page's last section), so it can be read without the docs.

Each entry is (term, definition); the definitions restate the rules of :mod:`ktmu.evaluation.metrics`,
:mod:`ktmu.evaluation.intervals` and :mod:`ktmu.audit` as they compute them.
"""
from __future__ import annotations

DEFINITIONS: tuple[tuple[str, str], ...] = (
    ("D_f, D_r", "D_f test: the world's test images of the forgotten fine concepts; D_r test: all its other test images. "
                 "Accuracies are zero-shot (class names under the template ensemble), in percent, coarse or fine level."),
    ("Quality", "How much was forgotten. Fine goal: the relative drop of D_f fine accuracy, 100 × (original − unlearned) / "
                "original, clipped to [0, 100] (100 = fully forgotten). Coarse goal: the same on D_f coarse accuracy. Hybrid: "
                "the mean of the fine drop on D_f and the coarse drop on the images under forgotten coarse concepts."),
    ("Utility", "How much was kept: the mean of retention ratios, unlearned / original capped at 100 %. Fine goal: D_f coarse, "
                "D_r coarse and D_r fine; coarse goal: D_r coarse and D_r fine; hybrid: D_r coarse, D_r fine and the coarse "
                "accuracy of forgotten fine concepts whose parent is kept."),
    ("Q-U", "The harmonic mean of Quality and Utility (the study's single score; high only when both are high)."),
    ("Q-U* (chance-aware Q-U)", "Q-U with every accuracy measured from chance instead of from 0: an accuracy a on a k-way choice "
                                "becomes 100 × (a − 100/k) / (100 − 100/k). Quality* = how much of the original's lead over chance "
                                "is gone (capped at 100), Utility* = how much is left (negative below chance); undefined (-) when "
                                "the original barely beat chance. A model that collapses to chance cannot score well on it."),
    ("Zero-shot", "Fine accuracy on a domain the request does not touch (for the embedded fashion world: handwritten digits). "
                  "The zero-shot drop is original − unlearned, in points."),
    ("flags", "COLLAPSED: the unlearned model predicts near chance, or mostly one class, on D_r; its Utility describes a broken "
              "model. UNCHANGED: its weights equal the original's. UNKNOWN-CONCEPT: the original did not clearly know the "
              "forgotten concept (a one-sided binomial test against chance), so forgetting it measures nothing."),
    ("± (intervals)", "Runs over several seeds show mean ± half the width of a 95 % interval: a paired, stratified bootstrap "
                      "over test images (1,000 resamples; original and unlearned scored on the same resample), each seed's "
                      "replicates centred on that seed's value and pooled over seeds. It says where one run of the method "
                      "lands, so it is wider than an interval for the mean."),
    ("Pareto front", "The runs that no other run of the same request beats on both Quality and Utility."),
    ("alias leak (held-out alias)", "D_f fine accuracy when the forgotten concept is named by the worst of its held-out names, "
                                    "names no method saw while unlearning (e.g. 'blouse' for shirt)."),
    ("held-out template", "D_f fine accuracy under the worst of prompt templates that no method saw."),
    ("probe recall", "A linear probe (logistic regression) trained on frozen image features of the auditor's own train images "
                     "(outside the proxy forget set and any neighbour images the method saw): the share of D_f test images it still "
                     "assigns to the forgotten concepts. High recall means the concept is still in the image features, whatever its name now says."),
    ("relearn", "D_f fine accuracy after a short fine-tune (the relearning budget, 200 steps by default) on a few unseen images of "
                "the forgotten concepts with kept-concept ones; the 'kept only' attack fine-tunes on kept concepts alone. The curve "
                "is measured at 0, 10, 25, 50, 100 and 200 steps; relearn@50 (and retain@50 for the kept-only attack) is the value "
                "after 50 steps, the headline number; 'steps to half' the first measured step with half the original's D_f accuracy."),
    ("MLP / kNN recall", "Two more probes on the same frozen image features and train images as the linear probe: a one-hidden-layer "
                         "MLP, and the majority label of the 10 nearest train images by cosine similarity. Each reports the share of "
                         "D_f test images it assigns to the forgotten concepts; a concept made linearly unreadable can still be read "
                         "by them."),
    ("soft-prompt", "With every weight frozen, a new text feature for each forgotten class is learned (100 Adam steps from its "
                    "name's feature, on the relearning attack's images, the other classes' text fixed); the number is the D_f fine "
                    "accuracy with it. High when the images still form their own cluster the name no longer points at."),
    ("erasure", "Where a reading of the unlearned model sits between the original (0) and the oracle (1): 1 − clip((unlearned − "
                "oracle) / (original − oracle), 0, 1), for the linear-probe recall and relearn@50; undefined without an oracle or "
                "when the original and the oracle are within 1 point."),
    ("weight distance, D_f loss barrier", "||θ − θ₀|| / ||θ₀|| over the trainable weights (θ₀ the original's), and the largest rise "
                                          "of the D_f test cross-entropy above the straight line between its values at θ₀ and θ, "
                                          "measured at 11 points θ₀ + t (θ − θ₀). A barrier means the way back to the original is "
                                          "uphill."),
    ("KS vs oracle", "Two-sample Kolmogorov-Smirnov test of the D_f margins (true class logit minus the best other) of a model "
                     "against the oracle's: the statistic (0 = same distribution, 1 = disjoint) and its p-value."),
    ("recovery", "(relearned − unlearned) / (original − unlearned): 0 = nothing came back, 1 = back to the original accuracy "
                 "(not clipped; undefined when unlearning removed under 1 point)."),
    ("WC-Quality (worst-case Quality)", "The study's Quality under every probe (canonical name, worst held-out alias, worst "
                                        "held-out template, linear-probe recall), each against the original's accuracy under "
                                        "the same probe; the smallest is reported with the probe that set it."),
    ("mass f/s/o", "Where the D_f test images are predicted: a forgotten concept, a kept sibling (same coarse concept: the "
                   "intended outcome of a fine goal) or a concept under another coarse concept."),
    ("sibling damage", "Each kept concept's change in fine accuracy against the text similarity of its name to the closest "
                       "forgotten concept (the original model's text features); Spearman's ρ > 0 means the closest "
                       "concepts changed most."),
    ("oracle", "A model of the same architecture that never learned the forgotten concept (for the embedded world: "
               "mini-clip:without-shirt). An unlearned model whose audit numbers sit at the oracle's has removed the concept, "
               "not only hidden its name."),
    ("step ratio (perf)", "Seconds of one unlearning step of a method over one plain fine-tuning (cross-entropy) step on the "
                          "same model and batch; the fastest of the repetitions."),
)
