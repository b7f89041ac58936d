"""Unlearning methods, one per file, registered by name (lazy: a method imports when chosen)."""
from __future__ import annotations

from dataclasses import fields
from typing import Any

from ktmu.registry import Registry, suggest
from ktmu.settings import SettingsError, cast_value
from ktmu.methods.base import Batch, NeighbourBatch, UnlearningMethod

METHODS: Registry[type[UnlearningMethod]] = Registry("method")
METHODS.register("ga", "ktmu.methods.ga:GradientAscent")
METHODS.register("gdiff", "ktmu.methods.gdiff:GradientDifference")
METHODS.register("ga-kl", "ktmu.methods.ga_kl:GradientAscentKL")
METHODS.register("relabel", "ktmu.methods.relabel:Relabeling")
METHODS.register("salun", "ktmu.methods.salun:SalUn")
METHODS.register("me-gd", "ktmu.methods.me_gd:MaxEntropyGD")
METHODS.register("task-vector", "ktmu.methods.task_vector:TaskVector")
METHODS.register("npo-kl", "ktmu.methods.npo_kl:NPOKL")
METHODS.register("nhl-kl", "ktmu.methods.nhl_kl:NHLKL")
METHODS.register("simnpo", "ktmu.methods.simnpo:SimNPO")
METHODS.register("feat-orth", "ktmu.methods.feat_orth:FeatureOrthogonal")
METHODS.register("gdiff-retain", "ktmu.methods.gdiff_retain:GradientDifferenceRetain")
METHODS.register("salun-retain", "ktmu.methods.salun_retain:SalUnRetain")
METHODS.register("scrub", "ktmu.methods.scrub:SCRUB")
METHODS.register("merge-mmd", "ktmu.methods.merge_mmd:MergeMMD")
METHODS.register("sam-nhl-kl", "ktmu.methods.sam_nhl_kl:SAMNHLKL")
METHODS.register("tar-merge-mmd", "ktmu.methods.tar_merge_mmd:TARMergeMMD")
METHODS.register("tar-nhl-kl", "ktmu.methods.tar_nhl_kl:TARNHLKL")


def build_method(name: str, /, **overrides: Any) -> UnlearningMethod:
    """Instantiate a registered method, overriding hyperparameters by keyword.

    Keys may use '-' or '_'. Unknown keys, values of the wrong type (the text "abc" for
    ``kl_weight``) and values out of range are a :class:`~ktmu.settings.SettingsError`, raised
    here, before any model is loaded.
    """
    cls = METHODS.get(name)
    known = [f.name for f in fields(cls)]
    values: dict[str, Any] = {}
    for key, value in overrides.items():
        field_name = key.replace("-", "_").lower()
        if field_name not in known:
            raise SettingsError(
                f"method {name!r} has no hyperparameter {key!r}.{suggest(field_name, known)} It has {', '.join(known)}."
            )
        if field_name in values:
            raise SettingsError(f"method {name!r}: hyperparameter {field_name} is given twice; keep one.")
        values[field_name] = cast_value(cls, field_name, value)
    return cls(**values)


__all__ = ["Batch", "METHODS", "NeighbourBatch", "UnlearningMethod", "build_method"]
