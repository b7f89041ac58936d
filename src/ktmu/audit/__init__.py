"""The knowledge audit's pure probes: is a forgotten concept gone, or only its name?

One idea per module, each a pure function on arrays or numbers (no model, no files):

* :mod:`.linear_probe` — does a linear probe on frozen image features still find the concept?
* :mod:`.feature_probes` — and a small MLP, or the k nearest train images, on the same features?
* :mod:`.soft_prompt` — can a learned text feature (every weight frozen) point at the concept's images again?
* :mod:`.erasure` — where a reading sits between the original (0) and the oracle that never knew the concept (1).
* :mod:`.margins` — are the forgotten images' margins distributed as the oracle's (Kolmogorov-Smirnov)?
* :mod:`.weights` — how far the weights moved, and the D_f loss barrier on the line back to the original.
* :mod:`.mass` — where do the forgotten images' predictions go (still forgotten, sibling, elsewhere)?
* :mod:`.similarity` — does sibling damage follow text similarity to the forgotten concept?
* :mod:`.intervals` — bootstrap intervals within a seed and their combination across seeds.
* :mod:`.seeds` — the audit's headline numbers as mean ± interval over seeds, from per-image hits.
* :mod:`.worst_case` — Quality under the worst of several probes of the same concept.
* :mod:`.recovery` — how much relearning brings back, how fast (steps to half), and a curve's gap to an oracle's.

And the orchestration that runs them on models (these import torch, so they load on first use):

* :mod:`.names` — alias / held-out-name and per-template zero-shot probes.
* :mod:`.relearn` — the relearning attack (few-shot fine-tuning) and its data.
* :mod:`.draws` — the audit's own train images, outside every image the method saw (forget set, neighbours).
* :mod:`.config` — :class:`AuditConfig`, the budgets every audited model is measured with.
* :mod:`.run` — :class:`Auditor`: every probe on a model, and the audit record comparing models
  (:mod:`.measurement` its raw results, :mod:`.record` the record's parts, :mod:`.models` fixed models over seeds).
* :mod:`.oracle` — which oracle an audit compares against by default.
* :mod:`.report` — the audit table.

Accuracies, recalls and Quality are in percent, as in :mod:`ktmu.evaluation.metrics`; shares of prediction
mass and the recovery ratio are fractions.
"""
from __future__ import annotations

from ktmu.evaluation.intervals import Interval, bootstrap_interval, bootstrap_replicates, format_interval, pooled_seed_interval, seed_interval
from ktmu.audit.erasure import Erasure, erasure
from ktmu.audit.feature_probes import fit_mlp_probe, knn_probe
from ktmu.audit.linear_probe import ProbeResult, fit_linear_probe, probe_train_indices
from ktmu.audit.margins import KsTest, ks_test, margins
from ktmu.audit.mass import MassSplit, forgotten_mass
from ktmu.audit.recovery import HalfWay, Recovery, curve_gap, relearning_recovery, steps_to_half
from ktmu.audit.similarity import SiblingDamage, SiblingRow, sibling_damage
from ktmu.audit.worst_case import WorstCase, worst_case_quality

__all__ = [
    "Erasure", "HalfWay", "Interval", "KsTest", "MassSplit", "ProbeResult", "Recovery", "SiblingDamage", "SiblingRow", "WorstCase",
    "bootstrap_interval", "bootstrap_replicates", "curve_gap", "erasure", "fit_linear_probe", "fit_mlp_probe", "format_interval",
    "forgotten_mass", "knn_probe", "ks_test", "margins", "pooled_seed_interval", "probe_train_indices", "relearning_recovery",
    "seed_interval", "sibling_damage", "steps_to_half", "worst_case_quality",
    # orchestration, imported lazily (torch):
    "AuditConfig", "AuditError", "Auditor", "RelearnConfig", "audit_models", "audit_table", "check_same_architecture",
]

_LAZY = {"AuditConfig": "config", "AuditError": "config", "Auditor": "run", "audit_models": "models", "check_same_architecture": "config",
         "RelearnConfig": "relearn", "audit_table": "report"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
