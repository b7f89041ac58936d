"""The option groups the commands share, each declared once here, and the readers that hand them to the library.

A command module declares its options with the ``add_*`` functions and reads them back with the
functions below them (``runtime(args)``, ``plan(args)``, ...), which only pass the values on to
:mod:`ktmu.workflows.options` and the other library functions that check them. Option names, defaults,
choices and help are read by users' scripts: add options, never rename or remove one.
"""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from ktmu.cli.console import say

if TYPE_CHECKING:  # annotations only: the library is imported when a command runs
    from ktmu.audit.run import AuditConfig
    from ktmu.engine.config import TrainConfig
    from ktmu.workflows.audits import SeedAuditors
    from ktmu.workflows.lineage import HistoryOptions
    from ktmu.workflows.session import Plan, RuntimeOptions, Session
    from ktmu.study.recipes import Recipe

def command(subparsers: Any, name: str, help: str) -> argparse.ArgumentParser:
    """A subcommand whose help is also its description; every command takes ``--quiet``."""
    sp = subparsers.add_parser(name, help=help, description=help)
    sp.add_argument("--quiet", action="store_true", help="no progress bars")
    return sp


# ---- declarations ---------------------------------------------------------------------------------
def add_world_options(sp: argparse.ArgumentParser, model: bool = True, zero_shot: bool = True) -> None:
    """The model and the world (``--model``, ``--world``, ``--data-root``, ``--hierarchy``, ``--zero-shot``)."""
    if model:
        sp.add_argument("--model", default="mini-clip", help="backbone spec: mini-clip, mini-clip:PATH, tiny-clip, open_clip:ARCH[:TAG_OR_PATH], hf:DIR")
    sp.add_argument("--world", default="fashion", help="dataset whose concepts are forgotten: fashion, digits, jsonl, imagefolder, ...")
    sp.add_argument("--data-root", help="folder of a jsonl or imagefolder world (train.jsonl/test.jsonl or train/, test/)")
    sp.add_argument("--hierarchy", help="YAML/JSON hierarchy (aliases, audit_names, levels) for a jsonl or imagefolder world")
    if zero_shot:
        sp.add_argument("--zero-shot", nargs="+", metavar="NAME[=DIR]",
                        help="zero-shot domains measured besides the world (default: the other built-in world for mini-clip/tiny-clip, "
                             "none otherwise; 'none' for none)")


def add_level_option(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--level", default="difficult", help="named request used when --forget is not given (easy, medium, difficult)")


def add_request_options(sp: argparse.ArgumentParser) -> None:
    """What is forgotten: ``--forget`` (repeatable) and ``--goal``."""
    from ktmu.engine.request import GOALS

    sp.add_argument("--forget", action="append", help="concept or alias to forget (repeatable); default: the --level request")
    sp.add_argument("--goal", default="fine", choices=GOALS)


def add_ledger_options(sp: argparse.ArgumentParser) -> None:
    """``--original``: where the base model of ``--model``'s ledger loads from; ``--replay`` / ``--anchor``: how its earlier requests are kept."""
    sp.add_argument("--original", metavar="SPEC",
                    help="the base model of --model's ledger (the model its first request started from), when it no longer loads from the "
                         "spec the ledger names; its weights must match the ledger's sha256")
    sp.add_argument("--replay", action=argparse.BooleanOptionalAction, default=True,
                    help="on a checkpoint whose ledger holds earlier requests, their forget images (redrawn from the ledger) rejoin this "
                         "request's forget set, so they stay forgotten and held (default: on; --no-replay: this request's images only)")
    sp.add_argument("--anchor", choices=("base", "previous"), default="base",
                    help="on such a checkpoint, whose outputs the KL and the other reference terms hold the model to: the ledger's base "
                         "model (default: damage does not add up over requests) or the model this request starts from")


def add_runtime_options(sp: argparse.ArgumentParser, training: bool) -> None:
    """Device, precision and data loading; with ``training`` also which weights train and gradient checkpointing."""
    sp.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda or cuda:N")
    sp.add_argument("--precision", default="fp32", help="fp32, bf16 or amp-fp16 (autocast; weights stay fp32)")
    sp.add_argument("--workers", type=int, default=0, help="DataLoader worker processes for streamed images")
    sp.add_argument("--eval-batch-size", type=int, default=256, help="images per forward pass during evaluation")
    sp.add_argument("--image-pipeline", default="host", metavar="host|device",
                    help="where images are scaled and normalised: host (default: wholly in the data workers) or device (the workers "
                         "decode, resize and crop to uint8; the rest runs on the model's device, from pinned memory on CUDA)")
    if training:
        sp.add_argument("--train", default="default", help="which weights train: default, both (the study), image, text, temperature, or '+'-joined")
        sp.add_argument("--grad-checkpointing", action="store_true", help="recompute activations in backward (open_clip / hf backbones)")
        sp.add_argument("--compile", nargs="?", const="default", metavar="MODE",
                        help="torch.compile the encoders (MODE: default, reduce-overhead = also CUDA graphs, max-autotune); "
                             "the first steps wait for the compiler")


def add_session_options(sp: argparse.ArgumentParser) -> None:
    """Everything an unlearning session needs: world, level, forget-set size, trainer flags, seed, --force, runtime."""
    add_world_options(sp)
    add_level_option(sp)
    sp.add_argument("--max-per-concept", type=int, default=150, help="forget-set images per forgotten fine concept (study: 150)")
    sp.add_argument("--lr", type=float, default=None, help="override the method's tuned learning rate")
    sp.add_argument("--epochs", type=int, default=None, help="override the method's tuned epochs")
    sp.add_argument("--batch-size", type=int, default=32, help="forget images per step, over all processes (study: 32)")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--force", action="store_true", help="run even when the original model does not know the concept (results are flagged)")
    add_neighbour_options(sp)
    add_runtime_options(sp, training=True)


def add_neighbour_options(sp: argparse.ArgumentParser) -> None:
    """``--neighbours K`` and ``--neighbours-scope``: the neighbour exemplars methods that need them learn from."""
    from ktmu.engine.neighbours import SCOPES

    sp.add_argument("--neighbours", type=int, default=0, metavar="K",
                    help="K seeded-random train images of every kept fine concept next to the forgotten ones (see --neighbours-scope), "
                         "disjoint from the forget set, for the methods that learn from them; 0 (default): the study's retain-free protocol")
    sp.add_argument("--neighbours-scope", choices=SCOPES, default="siblings",
                    help="which kept concepts give neighbours: siblings (those under a forgotten concept's coarse parent) or all")


def add_seeds_option(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--seeds", type=int, default=1,
                    help="run each method with N seeds (--seed, --seed+1, ...: forget set and training order); scores, zero-shot "
                         "and --audit numbers become mean ± 95 %% interval (paired bootstrap over test images, pooled over seeds)")


def add_recipe_options(sp: argparse.ArgumentParser) -> None:
    """``--config`` (a recipe's values become the defaults) and the trainer choices a recipe also sets."""
    from ktmu.engine.config import SCHEDULES, SELECTIONS, TrainConfig

    sp.add_argument("--config", metavar="FILE", help="a recipe (YAML, e.g. configs/study/imgnetdogs-difficult.yaml): its values are this "
                                                       "command's defaults; a flag given here wins")
    sp.add_argument("--selection", choices=SELECTIONS, default=TrainConfig.selection,
                    help="checkpoint selection: ours (extra forget-train pass per epoch, lowest kept; a method may name its own rule instead), "
                         "study (the study's rule) or last (the last epoch)")
    sp.add_argument("--schedule", choices=SCHEDULES, default=TrainConfig.schedule,
                    help="learning-rate schedule: warmup-cosine (per step) or cosine-epoch (the study's, stepped once per epoch)")


def add_unlearning_options(sp: argparse.ArgumentParser, audit: str) -> None:
    """What every unlearning command (unlearn, bench) takes: ``--audit`` (its help), ``--oracle``, ``--seeds``, the session and recipe options."""
    sp.add_argument("--audit", action="store_true", help=audit)
    sp.add_argument("--oracle", metavar="SPEC", help="with --audit: a model of the same architecture that never learned the concept; every "
                                                     "row gets its gaps to it (default: mini-clip:without-shirt for mini-clip forgetting "
                                                     "shirt in fashion, fine goal; 'none' for none)")
    add_audit_budget_options(sp, prefix="with --audit: ")
    add_seeds_option(sp)
    add_session_options(sp)
    add_recipe_options(sp)


def add_audit_budget_options(sp: argparse.ArgumentParser, prefix: str = "") -> None:
    """The audit's budgets (``ktmu audit``, and ``unlearn`` / ``bench --audit``): probe images, relearning steps and images."""
    from ktmu.audit.config import AuditConfig
    from ktmu.audit.options import RELEARN_STEPS
    from ktmu.audit.relearn import RelearnConfig

    sp.add_argument("--probe-per-class", type=int, default=AuditConfig.probe_per_class, help=prefix + "linear-probe train images per fine class")
    sp.add_argument("--relearn-steps", type=int, default=RELEARN_STEPS,
                    help=prefix + "relearning budget in steps (curve at 0, 10, 25, 50 and each doubling up to the budget; under 50: 0, 1/5, 1/2, all)")
    sp.add_argument("--relearn-images", type=int, default=RelearnConfig.images_per_concept, help=prefix + "relearning images per concept")
    sp.add_argument("--relearn-lr", type=float, default=RelearnConfig.lr, help=prefix + "the relearning attack's learning rate (AdamW)")


def add_out_folder(sp: argparse.ArgumentParser, holds: str, overwrite: str | None = None) -> None:
    """``--out`` (a folder for ``holds``) and, when given its help, ``--overwrite``."""
    sp.add_argument("--out", required=True, help=f"folder for {holds}")
    if overwrite:
        sp.add_argument("--overwrite", action="store_true", help=overwrite)


def add_report_option(sp: argparse.ArgumentParser) -> None:
    """``--report``: write ``--out``/report.html (ktmu report's page of the run) when the run ends."""
    sp.add_argument("--report", action="store_true", help="also write --out/report.html: one HTML page of the run's figures and tables "
                                                          "(what ktmu report --out makes)")


def write_report(args: argparse.Namespace) -> None:
    """With ``--report``, the run's page in ``--out`` (main process; it replaces an earlier report.html there)."""
    from ktmu.cli.console import is_main, say

    if getattr(args, "report", False) and is_main():
        from ktmu.report import write_report as write

        say(f"wrote {write(args.out, overwrite=True)}")


def add_json_file_option(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--json", help="also write the results as JSON here")


def add_set_option(sp: argparse.ArgumentParser, help: str) -> None:
    sp.add_argument("--set", action="append", metavar="KEY=VALUE", help=help)


# ---- readers: args -> library -------------------------------------------------------------------
def runtime(args: argparse.Namespace) -> RuntimeOptions:
    from ktmu.workflows.options import resolve_runtime

    return resolve_runtime(args.device, args.precision, args.workers, args.eval_batch_size, train=getattr(args, "train", "default"),
                           grad_checkpointing=getattr(args, "grad_checkpointing", False), force=getattr(args, "force", False),
                           compile=getattr(args, "compile", None), image_pipeline=args.image_pipeline)


def data_options(args: argparse.Namespace) -> dict[str, str]:
    from ktmu.workflows.options import data_options as options

    return options(args.world, args.data_root, args.hierarchy)


def plan(args: argparse.Namespace, forget: list[str] | None = None, goal: str = "fine", evaluate: bool = True, history: bool = True) -> Plan:
    """The run's plan (``history=False``: ignore ``--model``'s ledger, see :func:`ktmu.workflows.options.plan_run`)."""
    from ktmu.workflows.options import plan_run

    return plan_run(world=args.world, model=args.model, level=args.level, forget=forget, goal=goal, max_per_concept=args.max_per_concept,
                    data_root=args.data_root, hierarchy=args.hierarchy, zero_shot=getattr(args, "zero_shot", None), evaluate=evaluate,
                    force=getattr(args, "force", False), history=history)


def open_session(args: argparse.Namespace, plan: Plan, rt: RuntimeOptions) -> Session:
    """Say the plan's notes, then load the model and score the original."""
    from ktmu.workflows.session import open_session as open_

    for note in plan.notes:
        say(note)
    return open_(world=args.world, model=args.model, max_per_concept=args.max_per_concept, seed=args.seed, progress=not args.quiet,
                 evaluate=plan.test is not None, runtime=rt, plan=plan, original=getattr(args, "original", None),
                 neighbours=getattr(args, "neighbours", 0), neighbours_scope=getattr(args, "neighbours_scope", "siblings"),
                 history_options=history_options(args))


def history_options(args: argparse.Namespace) -> HistoryOptions:
    """``--replay`` / ``--anchor`` (their defaults on commands that do not take them)."""
    from ktmu.workflows.lineage import HistoryOptions

    return HistoryOptions(replay=getattr(args, "replay", True), anchor=getattr(args, "anchor", "base"))


def train_config(args: argparse.Namespace) -> TrainConfig:
    from ktmu.workflows.options import train_config as config

    return config(lr=args.lr, epochs=args.epochs, seed=args.seed, batch_size=args.batch_size, workers=args.workers,
                  selection=getattr(args, "selection", None), schedule=getattr(args, "schedule", None),
                  recipe_trainer=getattr(args, "trainer_settings", None))


def audit_config(args: argparse.Namespace) -> AuditConfig:
    """The audit budget flags (``ktmu audit``, ``unlearn`` / ``bench --audit``); the run's neighbour setting."""
    from ktmu.audit.options import audit_config as config

    budgets = {k: getattr(args, k) for k in ("probe_per_class", "relearn_steps", "relearn_images", "relearn_lr") if hasattr(args, k)}
    return config(max_per_concept=args.max_per_concept, seed=args.seed, neighbours=getattr(args, "neighbours", 0) or 0,
                  neighbours_scope=getattr(args, "neighbours_scope", None) or "siblings", **budgets)


def audit_oracle(args: argparse.Namespace, request) -> tuple[str | None, str]:
    """The oracle ``--audit`` compares against (``--oracle``, else the shipped one of the request, else None) and a note to say once."""
    from ktmu.audit.oracle import resolve_oracle
    from ktmu.errors import UsageError

    if not args.audit:
        if getattr(args, "oracle", None):
            raise UsageError("--oracle is the audit's oracle: add --audit (or leave --oracle out).")
        return None, ""
    return resolve_oracle(getattr(args, "oracle", None), args.model, request)


def auditors(args: argparse.Namespace, session: Session | None = None) -> SeedAuditors | None:
    """With ``--audit``: the per-seed auditors of an unlearning command's runs (checked against ``session`` before training), else None."""
    from ktmu.workflows.audits import SeedAuditors

    oracle, note = audit_oracle(args, session.request) if session is not None else (None, "")
    if not args.audit:
        return None
    seeded = SeedAuditors(audit_config(args), oracle)
    if session is not None:
        seeded.prepare(session)
        for line in [note, *seeded.notes()]:
            if line:
                say(line)
    return seeded


def audit_key(args: argparse.Namespace, request) -> bool | dict:
    """What of the audit makes a bench another bench: False, True, or a dict of the oracle and the budgets that differ from the defaults."""
    oracle, _ = audit_oracle(args, request)
    if not args.audit:
        return False
    def budgets(cfg: AuditConfig) -> dict:
        return {"probe_per_class": cfg.probe_per_class, "relearn_steps": max(cfg.relearn.steps), "relearn_images": cfg.relearn.images_per_concept,
                "relearn_lr": cfg.relearn.lr}

    default = budgets(audit_config(argparse.Namespace(max_per_concept=args.max_per_concept, seed=args.seed)))
    given = {k: v for k, v in budgets(audit_config(args)).items() if v != default[k]}  # only what differs: earlier benches keep their keys
    key = {**({"oracle": oracle} if oracle else {}), **given}
    return key or True


def provenance(args: argparse.Namespace) -> dict:
    from ktmu.workflows.provenance import run_provenance

    return run_provenance(getattr(args, "data_root", None), getattr(args, "hierarchy", None))


def recipe(args: argparse.Namespace) -> Recipe | None:
    """The recipe ``--config`` named (set by :func:`ktmu.cli.apply_recipe`), or None."""
    return getattr(args, "recipe", None)


def recipe_record(args: argparse.Namespace, cfg: TrainConfig, hypers: dict[str, dict]) -> dict | None:
    from ktmu.study.recipes import SESSION_KEYS, recipe_record as record

    return record(recipe(args), {k: getattr(args, k, None) for k in SESSION_KEYS}, cfg, hypers)
