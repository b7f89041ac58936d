"""``ktmu unlearn``: forget concepts with one method and report what was forgotten and kept."""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from ktmu.cli import options
from ktmu.cli.console import dump, is_main, say

HELP = "forget concepts with one method and report what was forgotten and kept"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    sp = options.command(subparsers, "unlearn", HELP)
    sp.add_argument("--method", default="nhl-kl", help="registered method name")
    options.add_request_options(sp)
    options.add_ledger_options(sp)
    options.add_out_folder(sp, "model.safetensors and results.json", overwrite="replace the results of an earlier run in --out")
    options.add_set_option(sp, "method hyperparameter, e.g. --set margin=3")
    options.add_unlearning_options(sp, audit="also audit the unlearned model (ktmu audit's probes; every seed's with --seeds); "
                                             "its record goes under 'audit'")
    options.add_report_option(sp)
    sp.add_argument("--export", metavar="DIR", help="also export the unlearned model to DIR with a model card (what ktmu export "
                                                    "--format auto writes; --overwrite replaces an earlier export there)")
    return sp


def run(args: argparse.Namespace) -> int:
    from ktmu.engine.trainer import check_neighbours
    from ktmu.methods import METHODS
    from ktmu.methods.overrides import method_settings
    from ktmu.outputs import prepare_out_dir
    from ktmu.report.tables import text_table
    from ktmu.workflows.options import check_seeds
    from ktmu.workflows.seeded import run_seeds
    from ktmu.workflows.session import save_unlearned

    t0 = time.time()
    check_seeds(args.seeds)
    recipe = options.recipe(args)
    hyper = method_settings(args.method, args.set or [], recipe.method(args.method) if recipe is not None else None)
    check_neighbours(METHODS.get(args.method), args.neighbours)
    cfg = options.train_config(args)
    rt = options.runtime(args)
    plan = options.plan(args, args.forget, args.goal)
    options.audit_oracle(args, plan.request)  # --oracle without --audit is refused before anything runs
    if args.export:
        from ktmu.backbones.export import check_format
        from ktmu.workflows.export import prepare_export_dir

        check_format(args.model)
        prepare_export_dir(Path(args.export), args.overwrite)
    out = prepare_out_dir(args.out, overwrite=args.overwrite, resume=False) if is_main() else Path(args.out)
    session = options.open_session(args, plan, rt)

    def finish(run, record: dict, first: bool) -> None:
        record["provenance"] = options.provenance(args)
        record["recipe"] = options.recipe_record(args, cfg, {args.method: hyper})
        if is_main() and first:  # the first seed's weights, as its record is the top level of results.json
            record["weights"] = str(save_unlearned(run, out, record))

    auditors = options.auditors(args, session)
    record = run_seeds(session, plan.train, args.method, cfg, hyper, args.seeds, auditors=auditors, finish=finish, progress=not args.quiet)
    dump(record, out / "results.json")
    say(f"request: forget {', '.join(session.request.concepts)} ({session.request.goal}); forget set {session.forget.describe()}")
    say(text_table(record["original"], [record], "previous" if session.request.also_forgotten else "original"))
    if "cumulative" in record:
        from ktmu.report.sequence import sequence_text_table

        step = f"{len(record['ledger']['requests'])} +{', '.join(session.request.concepts)}"  # this run's number in the ledger it wrote
        say(f"against the base model {record['cumulative']['base_model']['spec']} (every request of the checkpoint's ledger and this one):")
        say(sequence_text_table([(step, record)]))
    if "audit" in record:
        from ktmu.audit.report import audit_table

        say(audit_table(record["audit"]))
        for entry in record.get("ledger_audit", []):
            say(f"request {entry['request']} of the ledger ({', '.join(entry['concepts'])}) against the base model:")
            say(audit_table(entry["audit"]))
    say(f"wrote {out / 'model.safetensors'} and {out / 'results.json'} ({time.time() - t0:.1f} s)")
    options.write_report(args)
    if args.export and is_main():
        from ktmu.workflows.export import export_run

        say(f"wrote {export_run(out, args.export, overwrite=args.overwrite).folder} (with a model card)")
    return 0
