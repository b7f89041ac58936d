"""The records ktmu writes (results.json), as dataclasses with one ``to_json`` each.

Keys are part of ktmu's interface: scripts read them, so new keys are added, never renamed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def recorded_scores(d: dict) -> dict:
    """The accuracies that results.json records (the per-class and per-domain detail goes elsewhere)."""
    return {k: v for k, v in d.items() if k not in ("per_class_fine", "domains")}


@dataclass
class RunRecord:
    """One unlearning run: the request, the scores before and after, the study's metrics, and provenance."""

    method: str
    request: dict[str, Any]
    original: dict[str, Any]
    unlearned: dict[str, Any]
    summary: dict[str, float]  # quality, utility, qu (the study's) and the chance-aware versions
    per_class_fine: dict[str, dict[str, float]]
    config: dict[str, Any]
    seed: int
    git_commit: str
    versions: dict[str, str]
    flags: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    weights: str | None = None
    neighbours: dict[str, Any] | None = None  # the neighbour exemplars the method could read: {"k", "scope"[, "seed", "images", "sha256"]}

    def to_json(self) -> dict[str, Any]:
        out = {
            "method": self.method,
            "request": self.request,
            "original": recorded_scores(self.original),
            "unlearned": recorded_scores(self.unlearned),
            **self.summary,
            "per_class_fine": self.per_class_fine,
            "config": self.config,
            "seed": self.seed,
            "git_commit": self.git_commit,
            "versions": self.versions,
        }
        if self.flags:
            out["flags"] = self.flags
            out["collapsed"] = bool(self.flags.get("collapsed", False))
        if self.provenance:
            out["provenance"] = self.provenance
        if self.weights is not None:
            out["weights"] = self.weights
        if self.neighbours is not None:
            out["neighbours"] = self.neighbours
        return out
