"""ktmu — Knowledge-Tracing Machine Unlearning: remove named concepts from CLIP-family models and audit what was forgotten.

A notebook user's entry points (imported on first use, so ``import ktmu`` stays light)::

    import ktmu
    session = ktmu.open_session(forget=["shirt"], model="mini-clip")   # load, check, score the original
    record = ktmu.run_method(session, "nhl-kl")                         # unlearn; the results.json record
    ktmu.METHODS.names()                                                # every registered method

The command line (``ktmu --help``, or ``python -m ktmu``) is a thin layer over the same functions.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"

# public name -> module that defines it
_PUBLIC = {
    "open_session": "ktmu.workflows.session",
    "run_method": "ktmu.workflows.session",
    "Session": "ktmu.workflows.session",
    "RuntimeOptions": "ktmu.workflows.session",
    "load_backbone": "ktmu.backbones",
    "BACKBONES": "ktmu.backbones",
    "METHODS": "ktmu.methods",
    "build_method": "ktmu.methods",
    "UnlearningMethod": "ktmu.methods",
    "Batch": "ktmu.methods",
    "DATASETS": "ktmu.data",
    "load_dataset": "ktmu.data",
    "DOMAINS": "ktmu.data.domains",
    "Hierarchy": "ktmu.concepts",
    "builtin_world": "ktmu.concepts",
    "UnlearningRequest": "ktmu.engine.request",
    "TrainConfig": "ktmu.engine.config",
    "summarize": "ktmu.evaluation.metrics",
    "Auditor": "ktmu.audit.run",
    "AuditConfig": "ktmu.audit.run",
    "load_recipe": "ktmu.study.recipes",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ktmu' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
