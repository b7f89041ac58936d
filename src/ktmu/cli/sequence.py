"""``ktmu sequence``: forget concepts one request after another, each from the previous step's checkpoint, and all at once beside them."""
from __future__ import annotations

import argparse
import time
from typing import Any

from ktmu.cli import options
from ktmu.cli.console import dump, is_main, say

HELP = ("forget concepts one request after another (--forget C1 --then C2 --then C3), each step from the previous step's checkpoint, "
        "and the same concepts all at once; table of each concept and the cumulative cost after every step")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    sp = options.command(subparsers, "sequence", HELP)
    sp.add_argument("--method", default="nhl-kl", help="registered method name, used by every step")
    options.add_request_options(sp)
    sp.add_argument("--then", action="append", nargs="+", metavar="CONCEPT",
                    help="the next request's concept(s) (repeatable: one step each, in order); --forget names the first step's")
    sp.add_argument("--no-at-once", action="store_true", help="skip the comparison run that forgets every step's concepts in one request")
    options.add_ledger_options(sp)
    options.add_out_folder(sp, "each step's checkpoint and results, table.md and results.json",
                           overwrite="start over, replacing an earlier sequence in --out")
    sp.add_argument("--resume", action="store_true", help="continue an interrupted sequence in --out (also automatic when its settings match)")
    options.add_set_option(sp, "method hyperparameter for every step, e.g. --set margin=3")
    options.add_seeds_option(sp)
    options.add_session_options(sp)
    options.add_recipe_options(sp)
    return sp


def _steps(args: argparse.Namespace) -> list[list[str] | None]:
    """The steps' concepts: ``--forget`` (None: the --level request) then each ``--then``; without either, the recipe's ``steps``."""
    recipe = options.recipe(args)
    if args.forget is None and args.then is None and recipe is not None and recipe.session.get("steps"):
        return [list(s) for s in recipe.session["steps"]]
    return [args.forget, *(args.then or [])]


def run(args: argparse.Namespace) -> int:
    t0 = time.time()
    from ktmu.errors import UsageError
    from ktmu.methods.overrides import method_settings
    from ktmu.runtime.dist import get_dist
    from ktmu.workflows.options import check_seeds
    from ktmu.workflows.sequence import SequenceStore, plan_sequence, run_sequence, sequence_key

    if get_dist().enabled:
        raise UsageError("ktmu sequence runs in one process (each step starts from the checkpoint the step before wrote); "
                         "run it without accelerate launch.")
    check_seeds(args.seeds)
    recipe = options.recipe(args)
    hyper = method_settings(args.method, args.set or [], recipe.method(args.method) if recipe is not None else None)
    cfg = options.train_config(args)
    rt = options.runtime(args)
    args.steps = _steps(args)  # what ran, for the recipe record (a recipe's steps: key)
    plan = plan_sequence(args.steps, args.goal, at_once=not args.no_at_once, force=args.force, world=args.world, model=args.model,
                         level=args.level, max_per_concept=args.max_per_concept, data_root=args.data_root, hierarchy=args.hierarchy,
                         zero_shot=args.zero_shot)
    key = sequence_key(plan, args.method, hyper, cfg, args.seeds, rt, max_per_concept=args.max_per_concept, data=options.data_options(args),
                       zero_shot=args.zero_shot, set=args.set or [], original=args.original, replay=args.replay, anchor=args.anchor)
    store = SequenceStore.open(args.out, key, overwrite=args.overwrite, resume=args.resume, write=is_main())
    if store.resumed:
        done = store.done(plan, args.seeds, args.seed)
        say(f"resuming the sequence in {args.out}: {', '.join(done) or 'no run'} already finished with the same settings; not re-run.")
    for note in plan.first.notes:
        say(note)

    def finish(record: dict) -> None:
        record["provenance"] = options.provenance(args)
        record["recipe"] = options.recipe_record(args, cfg, {args.method: hyper})

    records = run_sequence(plan, store, args.method, cfg, hyper, args.seeds, rt, progress=not args.quiet, original=args.original,
                           finish=finish, log=None if args.quiet else say, history_options=options.history_options(args))
    _report(args, plan, records, time.time() - t0)
    return 0


def _report(args: argparse.Namespace, plan: Any, records: list[dict], seconds: float) -> None:
    """Print the table; write table.md and results.json (main process)."""
    from pathlib import Path

    from ktmu.outputs import write_text_atomic
    from ktmu.report.sequence import sequence_markdown, sequence_rows, sequence_text_table
    from ktmu.workflows.sequence import sequence_results

    rows = [(u.label, r) for u, r in zip(plan.units, records)]
    what = f"{plan.chain} ({plan.first.request.goal}) with {args.method}, {args.seeds} seed(s)"
    say(f"sequence: {what}; model {args.model}")
    say(sequence_text_table(rows))
    say(f"sequence took {seconds:.1f} s")
    out = Path(args.out)
    if is_main():
        write_text_atomic(out / "table.md", f"Sequence: {what}. Sequence time {seconds:.0f} s.\n\n{sequence_markdown(rows)}\n")
    dump(sequence_results(plan, records, args.method, args.seeds, seconds, options.provenance(args), sequence_rows(rows)), out / "results.json")
    say(f"wrote {out / 'table.md'} and {out / 'results.json'}")
