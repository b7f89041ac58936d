"""``ktmu audit``: whether a forgotten concept is gone or only its name (aliases, templates, probes, attacks, weights, mass, the oracle)."""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from ktmu.cli import options
from ktmu.cli.console import dump, is_main, say

HELP = ("audit whether a forgotten concept is gone or only its name: aliases, templates, linear / MLP / kNN probes, "
        "relearning, a soft-prompt attack, weight diagnostics, where the predictions go, and how far from an oracle")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    from ktmu.engine.neighbours import SCOPES

    sp = options.command(subparsers, "audit", HELP)
    sp.add_argument("--model", required=True, help="the audited (unlearned) model, e.g. mini-clip:runs/nhl/model.safetensors")
    sp.add_argument("--original", required=True, help="the model before unlearning, same architecture (e.g. mini-clip)")
    sp.add_argument("--oracle", help="a model of the same architecture that never learned the concept (optional; 'none' for none): "
                                     "every model gets its gaps to it, erasure and the KS test of its margins")
    options.add_world_options(sp, model=False)
    options.add_request_options(sp)
    options.add_level_option(sp)
    sp.add_argument("--max-per-concept", type=int, default=150, help="the unlearning run's forget-set size per concept (its images are excluded)")
    sp.add_argument("--seed", type=int, default=0, help="the unlearning run's seed (which forget set), and the audit's own draws")
    sp.add_argument("--neighbours", type=int, metavar="K", help="the unlearning run's --neighbours: its K neighbour images per concept are "
                                                                "left out of the audit's draws (default: what the results.json beside "
                                                                "--model records, else 0)")
    sp.add_argument("--neighbours-scope", choices=SCOPES, help="the unlearning run's --neighbours-scope (default: recorded, else siblings)")
    sp.add_argument("--seeds", type=int, default=1,
                    help="repeat the audit's own draws N times (seeds --seed, --seed+1, ...: probe images, relearning images and order; "
                         "the forget set stays --seed's); numbers become mean ± 95 %% interval (bootstrap over D_f test images, pooled)")
    options.add_audit_budget_options(sp)
    sp.add_argument("--force", action="store_true", help="audit even when the original model does not know the concept")
    options.add_out_folder(sp, "audit.json", overwrite="replace an earlier audit.json in --out")
    options.add_runtime_options(sp, training=False)
    options.add_report_option(sp)
    return sp


def run(args: argparse.Namespace) -> int:
    from ktmu.audit.report import audit_table
    from ktmu.outputs import OutputError, prepare_out_dir
    from ktmu.workflows.audits import audit_checkpoints, neighbour_setting
    from ktmu.workflows.options import check_seeds
    from ktmu.workflows.provenance import git_commit, versions

    t0 = time.time()
    check_seeds(args.seeds)
    args.neighbours, args.neighbours_scope, recorded, note = neighbour_setting(args.model, args.neighbours, args.neighbours_scope)
    if note:
        say(note)
    cfg = options.audit_config(args)
    rt = options.runtime(args)
    plan = options.plan(args, args.forget, args.goal, history=False)  # --forget names what was forgotten, whatever --model's ledger holds
    out = Path(args.out)
    if is_main():
        out = prepare_out_dir(args.out, resume=True)  # created and writable; only audit.json is ever replaced here
        if (out / "audit.json").exists() and not args.overwrite:
            raise OutputError(f"{out} already holds an audit.json; pass --overwrite to replace it, or choose another folder.")
    oracle = args.oracle if args.oracle and args.oracle.strip().lower() != "none" else None  # --oracle none: as without one
    specs = {"original": args.original, "unlearned": args.model, **({"oracle": oracle} if oracle else {})}
    result = audit_checkpoints(plan, specs, cfg, rt, args.seeds, progress=not args.quiet, log=say, neighbours=recorded)
    result["provenance"] = {**options.provenance(args), "models": specs, "git_commit": git_commit(), "versions": versions()}
    result["seconds"]["total"] = round(time.time() - t0, 1)
    dump(result, out / "audit.json")
    say(audit_table(result))
    say(f"wrote {out / 'audit.json'} ({time.time() - t0:.1f} s)")
    options.write_report(args)
    return 0
