"""A bench: every method on one request from one original, each kept in a :class:`~ktmu.workflows.bench_store.BenchStore` as it finishes.

:func:`bench_run_key` says what makes two benches the same, so that an interrupted one resumes
instead of starting over: another learning rate or epoch count is another bench, not a resume.
:func:`run_bench` runs the methods the store does not hold yet; :func:`bench_results` is the
bench's results.json.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from ktmu.data import ConceptDataset
from ktmu.engine.config import TrainConfig
from ktmu.evaluation.records import recorded_scores
from ktmu.outputs import json_ready
from ktmu.workflows.audits import SeedAuditors
from ktmu.workflows.bench_store import BenchStore
from ktmu.workflows.seeded import Finish, run_seeds
from ktmu.workflows.session import RuntimeOptions, Session


def bench_run_key(request: Mapping[str, Any], model: str, world: str, data: Mapping[str, str], zero_shot: Sequence[str] | None,
                  max_per_concept: int, seed: int, runtime: RuntimeOptions, set_items: Sequence[str], cfg: TrainConfig,
                  recipe_methods: Mapping[str, Mapping[str, Any]] | None = None, audit: bool | Mapping[str, Any] = False, seeds: int = 1,
                  neighbours: int = 0, neighbours_scope: str = "siblings") -> dict[str, Any]:
    """The settings that make a bench in ``--out`` the same bench: equal keys resume, different keys are refused.

    ``request``: :meth:`UnlearningRequest.describe`; ``data``: the world loader's options;
    ``recipe_methods``: a recipe's method settings (they are not on the command line, so they are
    keyed on too). Keys appear only when they matter (audited rows, several seeds), so that older
    benches still resume.
    """
    key: dict[str, Any] = {"request": dict(request), "model": model, "world": world, "data": dict(data), "zero_shot": zero_shot,
                           "max_per_concept": max_per_concept, "seed": seed, "precision": runtime.precision, "train": runtime.train,
                           "set": list(set_items), "lr": cfg.lr, "epochs": cfg.epochs, "batch_size": cfg.batch_size}
    if recipe_methods is not None:
        key["recipe_methods"] = {k: dict(v) for k, v in recipe_methods.items()}
    if audit:  # audited rows are another bench (their records carry the audit; with an oracle, rows against it)
        key["audit"] = dict(audit) if isinstance(audit, Mapping) else True
    if seeds > 1:  # rows over several seeds are another bench
        key["seeds"] = seeds
    if neighbours > 0:  # rows that learned from neighbour exemplars are another bench
        key["neighbours"] = {"k": neighbours, "scope": neighbours_scope}
    return key


def bench_methods(requested: Sequence[str] | None, neighbours: int) -> tuple[list[str], list[str]]:
    """The methods a bench runs, and the registered ones it leaves out because they need neighbour exemplars it does not have.

    ``requested`` (``--methods`` or a recipe's): run as given, but a method that needs neighbours
    is refused with ``neighbours == 0``. None: every registered method that can run.
    """
    from ktmu.engine.trainer import check_neighbours
    from ktmu.methods import METHODS

    if requested:
        for name in requested:
            check_neighbours(METHODS.get(name), neighbours)
        return list(requested), []
    names = METHODS.names()
    runnable = [n for n in names if neighbours > 0 or not METHODS.get(n).needs_neighbours]
    return runnable, [n for n in names if n not in runnable]


def run_bench(store: BenchStore, session: Session, train: ConceptDataset, methods: Sequence[str], cfg: TrainConfig,
              hypers: Mapping[str, Mapping[str, Any]], seeds: int = 1, auditors: SeedAuditors | None = None,
              finish: Finish | None = None, progress: bool = True) -> list[dict]:
    """Each method's record in ``methods`` order: the store's when it ran with the same settings, else run now and saved.

    Every row is the record as results.json holds it (NaN as null), whether run now or resumed,
    so that a resumed bench prints and writes exactly what an uninterrupted one does.
    """
    from tqdm.auto import tqdm

    from ktmu.runtime.dist import get_dist

    records = []
    for name in tqdm(methods, desc="bench", disable=not progress or not get_dist().is_main):
        record = store.load(name, cfg)
        if record is None:
            record = json_ready(run_seeds(session, train, name, cfg, hypers[name], seeds, auditors=auditors, finish=finish,
                                          progress=progress))
            store.save(name, cfg, record)
        records.append(record)
    return records


def bench_results(session: Session, records: Sequence[dict], seconds: float, level: str | None, provenance: dict,
                  recipe: dict | None) -> dict[str, Any]:
    """A bench's results.json: the request (``level`` None for a named one), the original's scores and one row per method."""
    return {"level": level, "request": session.request.describe(), "seconds": round(seconds, 1),
            "original": recorded_scores(session.original_scores), "rows": list(records), "provenance": provenance, "recipe": recipe}
