"""``ktmu bench``: every registered method (or a recipe's) on one request, tabulated; an interrupted bench resumes."""
from __future__ import annotations

import argparse
import time
from typing import Any

from ktmu.cli import options
from ktmu.cli.console import dump, is_main, say

HELP = "run every registered method on one level's request and tabulate"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    sp = options.command(subparsers, "bench", HELP)
    options.add_out_folder(sp, "table.md, results.json and one file per finished method",
                           overwrite="start over, replacing an earlier bench in --out")
    sp.add_argument("--methods", nargs="+", help="subset of methods (default: the recipe's methods with --config, else all registered)")
    options.add_request_options(sp)
    options.add_set_option(sp, "hyperparameter for every method that has it")
    sp.add_argument("--resume", action="store_true", help="continue an interrupted bench in --out (also automatic when its settings match)")
    options.add_unlearning_options(sp, audit="also audit every unlearned model, every seed's (the original's probes once per seed); "
                                             "adds audit columns")
    options.add_report_option(sp)
    return sp


def run(args: argparse.Namespace) -> int:
    t0 = time.time()  # the bench time in table.md counts from here
    from ktmu.methods.overrides import bench_settings
    from ktmu.workflows.bench import bench_methods, bench_run_key, run_bench
    from ktmu.workflows.bench_store import BenchStore
    from ktmu.workflows.options import check_seeds

    check_seeds(args.seeds)
    methods, skipped = bench_methods(args.methods, args.neighbours)
    if skipped:
        say(f"not benched: {', '.join(skipped)} (they learn from neighbour exemplars; add --neighbours K to include them)")
    recipe = options.recipe(args)
    hypers = bench_settings(methods, args.set or [], recipe.method if recipe is not None else None)
    cfg = options.train_config(args)
    rt = options.runtime(args)
    plan = options.plan(args, args.forget, args.goal)
    key = bench_run_key(plan.request.describe(), model=args.model, world=args.world, data=options.data_options(args),
                        zero_shot=args.zero_shot, max_per_concept=args.max_per_concept, seed=args.seed, runtime=rt,
                        set_items=args.set or [], cfg=cfg, recipe_methods=hypers if recipe is not None else None,
                        audit=options.audit_key(args, plan.request), seeds=args.seeds, neighbours=args.neighbours, neighbours_scope=args.neighbours_scope)
    store = BenchStore.open(args.out, key, methods, overwrite=args.overwrite, resume=args.resume, write=is_main())
    if store.done:
        say(f"resuming the bench in {args.out}: {', '.join(store.done)} already finished with the same settings; not re-run.")
    session = options.open_session(args, plan, rt)
    auditors = options.auditors(args, session)

    def finish(run, record: dict, first: bool) -> None:
        record["provenance"] = options.provenance(args)

    records = run_bench(store, session, plan.train, methods, cfg, hypers, args.seeds, auditors=auditors, finish=finish,
                        progress=not args.quiet)
    _report(args, session, records, time.time() - t0, options.recipe_record(args, cfg, hypers))
    options.write_report(args)
    return 0


def _report(args: argparse.Namespace, session: Any, records: list[dict], seconds: float, recipe: dict | None) -> None:
    """Print the table; write table.md and results.json (main process)."""
    from pathlib import Path

    from ktmu.outputs import write_text_atomic
    from ktmu.report.tables import markdown_table, text_table
    from ktmu.workflows.bench import bench_results

    req = session.request
    label = "request" if args.forget else f"level {args.level}"
    say(f"{label}: forget {', '.join(req.concepts)} ({req.goal}); forget set {session.forget.describe()}; model {session.backbone.name}")
    say(text_table(session.original_scores, records))
    say(f"bench took {seconds:.1f} s")
    out = Path(args.out)
    header = f"{'Request' if args.forget else f'Level `{args.level}`'}: forget {', '.join(req.concepts)} ({req.goal}). Bench time {seconds:.0f} s.\n\n"
    if is_main():
        write_text_atomic(out / "table.md", header + markdown_table(session.original_scores, records) + "\n")
    dump(bench_results(session, records, seconds, None if args.forget else args.level, options.provenance(args), recipe),
         out / "results.json")
    say(f"wrote {out / 'table.md'} and {out / 'results.json'}")
