"""The ``ktmu`` command line: thin subcommands over the library.

Every subcommand checks what it can before loading a model (names, settings, data, the output
folder); a user mistake ends in one ``ktmu: error: ...`` line and exit code 2. Under
``accelerate launch`` every process runs the same command and only the main one prints and writes.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

if TYPE_CHECKING:  # annotations only: the CLI imports the library lazily
    from ktmu.study.recipes import Recipe
    from ktmu.engine.config import TrainConfig

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _quiet_libraries() -> None:
    """Silence third-party load reports that would bury our tables."""
    import warnings

    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    try:
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass


def _main_process() -> bool:
    from ktmu.runtime.dist import get_dist

    return get_dist().is_main


def say(*args, **kw) -> None:
    """print() on the main process only."""
    if _main_process():
        print(*args, **kw)


def _dump(obj: dict, path: str | Path) -> None:
    from ktmu.outputs import write_json_atomic

    if _main_process():
        write_json_atomic(path, obj)


# ---- shared option groups --------------------------------------------------------------------------
def _runtime(args: argparse.Namespace):
    """Device, precision and data-loading options, checked before any model loads."""
    from ktmu.runtime.dist import get_dist
    from ktmu.runs.session import RuntimeOptions
    from ktmu.runtime.device import check_precision, resolve_device

    device = resolve_device(args.device)
    dist = get_dist()
    if dist.enabled and device.type == "cuda":
        device = resolve_device(f"cuda:{dist.local_rank}")
    check_precision(args.precision, device)
    if args.workers < 0:
        raise ValueError("--workers must be 0 or more.")
    if args.eval_batch_size < 1:
        raise ValueError("--eval-batch-size must be at least 1.")
    return RuntimeOptions(device=str(device), precision=args.precision, train=getattr(args, "train", "default"),
                          grad_checkpointing=getattr(args, "grad_checkpointing", False), workers=args.workers,
                          eval_batch_size=args.eval_batch_size, force=getattr(args, "force", False))


def _data_options(args: argparse.Namespace) -> dict:
    from ktmu.data import DATASETS

    DATASETS.get(args.world)  # did-you-mean before anything else
    opts = {k: v for k, v in (("root", args.data_root), ("hierarchy", args.hierarchy)) if v}
    if args.world in ("jsonl", "imagefolder") and "root" not in opts:
        raise ValueError(f"--world {args.world} reads your own images: add --data-root DIR (see README, 'Your own data').")
    return opts


def _train_cfg(args: argparse.Namespace):
    from ktmu.settings import validate
    from ktmu.engine.config import TrainConfig

    cfg = TrainConfig(lr=args.lr, epochs=args.epochs, seed=args.seed, batch_size=args.batch_size, workers=args.workers,
                      **_recipe_trainer(args))
    validate(cfg)
    return cfg


def _plan(args: argparse.Namespace, forget=None, goal: str = "fine", evaluate: bool = True):
    from ktmu.runs.session import plan_session

    if args.max_per_concept < 1:
        raise ValueError("--max-per-concept must be at least 1.")
    return plan_session(forget=forget, goal=goal, world=args.world, model=args.model, level=args.level, evaluate=evaluate,
                        data_options=_data_options(args), zero_shot=getattr(args, "zero_shot", None))


def _session(args: argparse.Namespace, plan, runtime):
    from ktmu.runs.session import open_session

    for note in plan.notes:
        say(note)
    return open_session(world=args.world, model=args.model, max_per_concept=args.max_per_concept, seed=args.seed,
                        progress=not args.quiet, evaluate=plan.test is not None, runtime=runtime, plan=plan)


def _provenance(args: argparse.Namespace) -> dict:
    from ktmu.runs.provenance import command_line, file_record

    out = {"command": command_line()}
    if getattr(args, "data_root", None):
        out["data_root"] = file_record(args.data_root)
    if getattr(args, "hierarchy", None):
        out["hierarchy"] = file_record(args.hierarchy)
    return out


# ---- eval ---------------------------------------------------------------------------------------
def cmd_eval(args: argparse.Namespace) -> int:
    from ktmu.backbones import load_backbone
    from ktmu.data import load_dataset
    from ktmu.data.domains import DOMAINS, parse_zero_shot
    from ktmu.evaluation.zero_shot import evaluate_datasets
    from ktmu.report.zero_shot import format_eval_table

    t0 = time.time()
    rt = _runtime(args)
    if args.domains:  # the built-in domains by name (kept for scripts written against ktmu 0.1)
        items = [(DOMAINS.get(d).open(), DOMAINS.get(d).templates) for d in args.domains]
    else:
        items = [load_dataset(args.world, "test", **_data_options(args))]
        choices, note = parse_zero_shot(args.zero_shot, args.model, args.world)
        if note:
            say(note)
        items += [(c.domain.open(c.root), c.domain.templates) for c in choices]
    if args.json:
        _prepare_file(args.json)
    backbone = load_backbone(args.model, device=rt.device, precision=rt.precision)
    result = evaluate_datasets(backbone, items, progress=not args.quiet, batch_size=rt.eval_batch_size, workers=rt.workers)
    say(format_eval_table(result))
    say(f"({time.time() - t0:.1f} s)")
    if args.json:
        _dump(result, args.json)
        say(f"wrote {args.json}")
    return 0


def _prepare_file(path: str | Path) -> None:
    """Refuse an output file we could not write, before any compute."""
    from ktmu.outputs import OutputError

    p = Path(path)
    if p.is_dir():
        raise OutputError(f"{p} is a folder; give a file path for the JSON output.")
    parent = p.parent if str(p.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise OutputError(f"cannot write {p}: {parent} is a file, not a folder.")
    if parent.exists() and not os.access(parent, os.W_OK):
        raise OutputError(f"cannot write {p}: folder {parent} is not writable.")


# ---- pretrain -----------------------------------------------------------------------------------
def cmd_pretrain(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from ktmu.backbones.mini_clip import MANIFEST, build_mini_clip, sha256
    from ktmu.data import load_dataset
    from ktmu.engine.pretrain import PretrainConfig, pretrain
    from ktmu.runs.provenance import command_line, git_commit, versions
    from ktmu.evaluation.zero_shot import evaluate_domains
    from ktmu.report.zero_shot import format_eval_table

    cfg = PretrainConfig(epochs=args.epochs, seed=args.seed, batch_size=args.batch_size, lr=args.lr, limit_per_world=args.limit,
                         without=tuple(args.without or ()))
    _prepare_file(args.out)
    backbone = build_mini_clip(weights="random")
    datasets = [load_dataset(name, "train") for name in ("fashion", "digits")]
    t0 = time.time()
    logs = pretrain(backbone, datasets, cfg, progress=not args.quiet)
    seconds = time.time() - t0
    out = Path(args.out)
    backbone.save_weights(out, metadata={"format": "ktmu-mini-clip", "command": command_line()})
    result = evaluate_domains(backbone, ["fashion", "digits"], progress=not args.quiet)
    print(format_eval_table(result))
    manifest = {
        "file": out.name,
        "sha256": sha256(out),
        "bytes": out.stat().st_size,
        "command": command_line(),
        "pretrain_seconds": round(seconds, 1),
        "config": asdict(cfg),
        "epochs": logs,
        "zero_shot": {d: {k: v for k, v in r.items() if k != "per_class"} for d, r in result["domains"].items()},
        "git_commit": git_commit(),
        "versions": versions(),
    }
    manifest_path = Path(args.manifest) if args.manifest else (MANIFEST if out.resolve() == MANIFEST.with_suffix(".safetensors") else out.with_suffix(".json"))
    _dump(manifest, manifest_path)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB, sha256 {manifest['sha256'][:16]}...) and {manifest_path}; pretraining took {seconds / 60:.1f} min")
    return 0


# ---- unlearn / bench / demo -----------------------------------------------------------------------
def _hyper(args: argparse.Namespace, method: str, shared: bool = False) -> dict:
    """The method's settings: the recipe's values, then --set; ``shared`` (bench): only the --set keys the method has."""
    from ktmu.methods import METHODS
    from ktmu.settings import parse_set

    recipe = getattr(args, "recipe", None)
    base = recipe.method(method) if recipe is not None else {}  # the recipe's values; --set wins
    cls = METHODS.get(method)
    pairs = [item for item in args.set or [] if not shared or _has_setting(cls, item)]
    return {**base, **parse_set(pairs, cls)}


def _has_setting(cls: type, item: str) -> bool:
    """Whether ``--set KEY=VALUE`` names a setting of ``cls`` (a malformed item counts, so parse_set reports it)."""
    from ktmu.settings import SettingsError, resolve_key

    key, sep, _ = item.partition("=")
    if not sep or not key.strip():
        return True
    try:
        resolve_key(cls, key)
    except SettingsError:
        return False
    return True


def _check_bench_set(items: Sequence[str], methods: Sequence[str]) -> None:
    """A bench's --set applies to every method that has the key; a key none of them has is a typo."""
    import dataclasses

    from ktmu.methods import METHODS
    from ktmu.registry import suggest
    from ktmu.settings import SettingsError

    classes = [METHODS.get(m) for m in methods]
    for item in items:
        if not any(_has_setting(cls, item) for cls in classes):
            key = item.partition("=")[0].strip()
            known = sorted({f.name for cls in classes for f in dataclasses.fields(cls)})
            raise SettingsError(f"--set {key}: none of the benched methods ({', '.join(methods)}) has this setting."
                                f"{suggest(key.replace('-', '_'), known)} Known settings: {', '.join(known)}.")


def cmd_unlearn(args: argparse.Namespace) -> int:
    from ktmu.methods import build_method
    from ktmu.outputs import prepare_out_dir
    from ktmu.runs.session import save_unlearned
    from ktmu.report.tables import text_table

    t0 = time.time()
    _check_seeds(args)
    hyper = _hyper(args, args.method)
    build_method(args.method, **hyper)  # fail on a bad name or hyperparameter before loading anything
    cfg = _train_cfg(args)
    rt = _runtime(args)
    plan = _plan(args, args.forget, args.goal)
    out = prepare_out_dir(args.out, overwrite=args.overwrite, resume=False) if _main_process() else Path(args.out)
    session = _session(args, plan, rt)
    auditors: dict = {}  # seed -> Auditor
    audit_replicates: list = []

    def finish(run, record: dict, first: bool) -> None:
        record["provenance"] = _provenance(args)
        record["recipe"] = _recipe_record(args, cfg, {args.method: hyper})
        if getattr(args, "audit", False):  # the knowledge audit of each seed's unlearned weights (restored afterwards)
            _audit_run(args, auditors, run, args.method, record, audit_replicates)
        if _main_process() and first:  # the first seed's weights, as its record is the top level of results.json
            record["weights"] = str(save_unlearned(run, out, record))

    record = _with_audit_interval(_seed_runs(args, session, plan, args.method, cfg, hyper, finish), audit_replicates)
    if _main_process():
        _dump(record, out / "results.json")
    say(f"request: forget {', '.join(session.request.concepts)} ({session.request.goal}); forget set {len(session.forget)} images")
    say(text_table(record["original"], [record]))
    if "audit" in record:
        from ktmu.audit.report import audit_table

        say(audit_table(record["audit"]))
    say(f"wrote {out / 'model.safetensors'} and {out / 'results.json'} ({time.time() - t0:.1f} s)")
    return 0


def _check_seeds(args: argparse.Namespace) -> None:
    if args.seeds < 1:
        raise ValueError(f"--seeds must be at least 1, got {args.seeds}.")


def _audit_run(args: argparse.Namespace, auditors: dict, run, label: str, record: dict, replicates: list) -> None:
    """Audit the weights ``run`` holds now with its seed's auditor (made once per seed) into ``record["audit"]``.

    With several seeds the run's bootstrap replicates are appended to ``replicates`` for
    :func:`_with_audit_interval`. Every seed's auditor shares the original's seed-free probes.
    """
    from ktmu.audit.run import Auditor

    if run.seed not in auditors:
        auditors[run.seed] = next(iter(auditors.values())).reseeded(run.seed) if auditors else Auditor.for_session(run, _audit_cfg(args))
    auditor = auditors[run.seed]
    measured = auditor.measure_session_run(run, label)
    record["audit"] = auditor.result(measured)
    if args.seeds > 1:
        replicates.append(auditor.replicates(measured))


def _with_audit_interval(record: dict, replicates: list) -> dict:
    """A several-seed record whose ``audit`` gains the mean ± interval of its headline numbers; the seeds' own audits stay under ``seeds``."""
    if not replicates:
        return record
    from ktmu.audit.seeds import aggregate_audits

    return {**record, "audit": aggregate_audits([r["audit"] for r in record["seeds"]], replicates, keep_seeds=False)}


def _seed_runs(args: argparse.Namespace, session, plan, method: str, cfg: TrainConfig, hyper: dict,
               finish: Callable[..., None]) -> dict:
    """``method`` once per seed (``--seed`` + i: forget set and training order); one seed's record, or the aggregate of several.

    ``finish(run_session, record, first)`` completes each seed's record right after its run (while
    the backbone holds that run's weights). Over several seeds the record gets ``seeds``, ``mean``
    and ``interval`` (see :mod:`ktmu.evaluation.seeds`).
    """
    from dataclasses import replace

    from ktmu.runs.session import reseed, run_method
    from ktmu.evaluation.seeds import aggregate, run_replicates

    records, replicates = [], []
    for i in range(args.seeds):
        seed = args.seed + i
        run = reseed(session, plan.train, seed)
        record = run_method(run, method, replace(cfg, seed=seed), progress=not args.quiet, **hyper)
        if args.seeds > 1:  # before finish(): an audit may evaluate again
            replicates.append(run_replicates(record, session.original_eval, session.evaluator.last, session.evaluator,
                                             others=session.evaluator.last_others))
        finish(run, record, i == 0)
        records.append(record)
    return records[0] if args.seeds == 1 else aggregate(records, replicates)


def cmd_bench(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from ktmu.runs.bench_store import BenchStore
    from ktmu.methods import METHODS, build_method
    from ktmu.report.tables import markdown_table, text_table
    from ktmu.evaluation.records import recorded_scores

    t0 = time.time()
    _check_seeds(args)
    methods = args.methods or METHODS.names()
    hypers = {}
    _check_bench_set(args.set or [], methods)
    for name in methods:
        hypers[name] = _hyper(args, name, shared=True)  # the recipe's values (if any), then --set
        build_method(name, **hypers[name])  # fail on a bad name or setting before loading anything
    cfg = _train_cfg(args)
    rt = _runtime(args)
    plan = _plan(args, args.forget, args.goal)
    run_key = {"request": plan.request.describe(), "model": args.model, "world": args.world, "data": _data_options(args),
               "zero_shot": args.zero_shot, "max_per_concept": args.max_per_concept, "seed": args.seed,
               "precision": rt.precision, "train": rt.train, "set": args.set or [],
               "lr": cfg.lr, "epochs": cfg.epochs, "batch_size": cfg.batch_size}  # another lr/epochs is another bench, not a resume
    if getattr(args, "recipe", None) is not None:  # a recipe's method settings are not on the command line: key on them too
        run_key["recipe_methods"] = hypers
    if getattr(args, "audit", False):  # audited rows are another bench (their records carry the audit)
        run_key["audit"] = True
    if args.seeds > 1:  # rows over several seeds are another bench (absent for one seed: older benches still resume)
        run_key["seeds"] = args.seeds
    store = BenchStore.open(args.out, run_key, methods, overwrite=args.overwrite, resume=args.resume, write=_main_process())
    if store.done:
        say(f"resuming the bench in {args.out}: {', '.join(store.done)} already finished with the same settings; not re-run.")
    session = _session(args, plan, rt)
    auditors: dict = {}  # seed -> Auditor: the original's probes are measured once per seed, for the first audited run
    if getattr(args, "audit", False):
        from ktmu.audit.run import Auditor

        auditors[session.seed] = Auditor.for_session(session, _audit_cfg(args))
    records = []
    for name in tqdm(methods, desc="bench", disable=args.quiet or not _main_process()):
        rec = store.load(name, cfg)
        if rec is None:
            audit_replicates: list = []

            def finish(run, record: dict, first: bool, name: str = name, audit_replicates: list = audit_replicates) -> None:
                record["provenance"] = _provenance(args)
                if auditors:  # every seed's run
                    _audit_run(args, auditors, run, name, record, audit_replicates)

            rec = _with_audit_interval(_seed_runs(args, session, plan, name, cfg, hypers[name], finish), audit_replicates)
            store.save(name, cfg, rec)
        records.append(rec)
    seconds = time.time() - t0
    table = text_table(session.original_scores, records)
    label = "request" if args.forget else f"level {args.level}"
    say(f"{label}: forget {', '.join(session.request.concepts)} ({session.request.goal}); forget set {len(session.forget)} images; model {session.backbone.name}")
    say(table)
    say(f"bench took {seconds:.1f} s")
    out = Path(args.out)
    header = f"{'Request' if args.forget else f'Level `{args.level}`'}: forget {', '.join(session.request.concepts)} ({session.request.goal}). Bench time {seconds:.0f} s.\n\n"
    if _main_process():
        from ktmu.outputs import write_text_atomic

        write_text_atomic(out / "table.md", header + markdown_table(session.original_scores, records) + "\n")
        _dump({"level": None if args.forget else args.level, "request": session.request.describe(), "seconds": round(seconds, 1),
               "original": recorded_scores(session.original_scores), "rows": records, "provenance": _provenance(args),
               "recipe": _recipe_record(args, cfg, hypers)}, out / "results.json")
    say(f"wrote {out / 'table.md'} and {out / 'results.json'}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from ktmu.runs.session import run_method
    from ktmu.report.tables import text_table
    from ktmu.report.zero_shot import format_eval_table

    t0 = time.time()
    cfg = _train_cfg(args)
    rt = _runtime(args)
    plan = _plan(args)
    say("ktmu demo: the embedded mini-CLIP (MiniLM-L6 text tower + small CNN image tower), zero-shot:")
    session = _session(args, plan, rt)
    say(format_eval_table({"model": session.backbone.name, "domains": session.original_scores["domains"]}))
    req = session.request
    say(f"\nUnlearning request ({args.level}): forget {', '.join(req.concepts)} ({req.goal}) with nhl-kl, "
        f"using {len(session.forget)} forget-set images and no retain data ...")
    record = run_method(session, "nhl-kl", cfg, progress=not args.quiet)
    say(text_table(record["original"], [record]))
    per = record["per_class_fine"]
    say("fine accuracy per class, before -> after: " + ", ".join(f"{k} {per['original'][k]:.0f}->{per['unlearned'][k]:.0f}" for k in per["original"]))
    say(f"({time.time() - t0:.1f} s)")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from ktmu.methods import METHODS
    from ktmu.runs.tune import tune_lr

    methods = args.methods or METHODS.names()
    for name in methods:
        METHODS.get(name)
    if any(lr <= 0 or lr != lr or lr == float("inf") for lr in args.lrs):
        raise ValueError("--lrs must be positive finite learning rates.")
    rt = _runtime(args)
    plan = _plan(args, args.forget, args.goal, evaluate=False)
    session = _session(args, plan, rt)
    say(f"tuning on forget-set data only: forget {', '.join(session.request.concepts)} ({session.request.goal}), {len(session.forget)} images")
    say("score = forget-train accuracy at the forgotten level (fine accuracy for a fine goal)")
    say(f"{'method':<12} {'lr':>8} {'epoch':>5} {'score %':>8} {'forget coarse %':>15}")
    for name in methods:
        rows, chosen = tune_lr(session, name, args.lrs, args.epochs, args.threshold, progress=not args.quiet)
        for r in rows:
            mark = "  <- chosen" if r.lr == chosen else ""
            say(f"{name:<12} {r.lr:>8.0e} {r.epoch:>5} {r.score:>8.1f} {r.forget_coarse:>15.1f}{mark}", flush=True)
    return 0


def cmd_levels(args: argparse.Namespace) -> int:
    from ktmu.backbones import load_backbone
    from ktmu.data import load_dataset
    from ktmu.evaluation.difficulty import sibling_difficulty

    rt = _runtime(args)
    train = load_dataset(args.world, "train", **_data_options(args))
    backbone = load_backbone(args.model, device=rt.device, precision=rt.precision)
    rows = sibling_difficulty(backbone, train, workers=rt.workers, progress=not args.quiet)
    say(f"{'concept':<12} {'sibling conf.':>13} {'text sim.':>9} {'train acc':>9}  siblings")
    for r in rows:
        say(f"{r['concept']:<12} {r['sibling_confusion']:>13.3f} {r['text_similarity']:>9.3f} {r['train_acc']:>9.1f}  {', '.join(r['siblings']) or '-'}")
    levels = train.hierarchy.levels
    say("levels in the world file: " + ("; ".join(f"{k}: {', '.join(v)}" for k, v in levels.items()) or "none"))
    return 0


# ---- audit --------------------------------------------------------------------------------------
def _audit_cfg(args: argparse.Namespace):
    """The audit's fixed budgets: ``ktmu audit``'s flags, the defaults for ``unlearn/bench --audit``."""
    from ktmu.audit.relearn import RelearnConfig, curve_points
    from ktmu.audit.run import AuditConfig

    relearn = RelearnConfig(steps=curve_points(getattr(args, "relearn_steps", RelearnConfig.steps[-1])),
                            images_per_concept=getattr(args, "relearn_images", RelearnConfig.images_per_concept), seed=args.seed)
    return AuditConfig(probe_per_class=getattr(args, "probe_per_class", AuditConfig.probe_per_class), relearn=relearn,
                       max_per_concept=args.max_per_concept, seed=args.seed)


def cmd_audit(args: argparse.Namespace) -> int:
    from ktmu.audit.report import audit_table
    from ktmu.audit.run import Auditor, audit_over_seeds, check_same_architecture
    from ktmu.backbones import load_backbone
    from ktmu.outputs import OutputError, prepare_out_dir
    from ktmu.evaluation.protocol import UnlearningEvaluator
    from ktmu.runs.provenance import git_commit, versions

    t0 = time.time()
    _check_seeds(args)
    cfg = _audit_cfg(args)
    rt = _runtime(args)
    plan = _plan(args, args.forget, args.goal)
    out = Path(args.out)
    if _main_process():
        out = prepare_out_dir(args.out, resume=True)  # created and writable; only audit.json is ever replaced here
        if (out / "audit.json").exists() and not args.overwrite:
            raise OutputError(f"{out} already holds an audit.json; pass --overwrite to replace it, or choose another folder.")
    specs = {"original": args.original, "unlearned": args.model, **({"oracle": args.oracle} if args.oracle else {})}
    backbones = {role: load_backbone(spec, device=rt.device, precision=rt.precision) for role, spec in specs.items()}
    for role in ("original", "oracle"):
        if role in backbones:
            check_same_architecture(backbones["unlearned"], backbones[role], f"--{role}")
    for note in plan.notes:
        say(note)
    preprocess = backbones["unlearned"].preprocess
    others = [(c.domain.open(c.root), c.domain.templates) for c in plan.domains]
    evaluator = UnlearningEvaluator(plan.request, plan.test, others, preprocess, progress=not args.quiet,
                                    batch_size=rt.eval_batch_size, workers=rt.workers)
    auditor = Auditor(plan.request, plan.train, evaluator, preprocess, cfg, workers=rt.workers, batch_size=rt.eval_batch_size,
                      progress=not args.quiet, force=rt.force)
    req = plan.request
    say(f"auditing: forget {', '.join(req.concepts)} ({req.goal}) in world {req.world.name}; proxy forget set {auditor.forget_set_size} "
        f"images (max {cfg.max_per_concept} per concept, seed {cfg.seed})")
    result = audit_over_seeds(auditor, {role: (specs[role], b) for role, b in backbones.items()}, args.seeds, log=say)
    result["provenance"] = {**_provenance(args), "models": specs, "git_commit": git_commit(), "versions": versions()}
    result["seconds"]["total"] = round(time.time() - t0, 1)
    _dump(result, out / "audit.json")
    say(audit_table(result))
    say(f"wrote {out / 'audit.json'} ({time.time() - t0:.1f} s)")
    return 0


def cmd_perf(args: argparse.Namespace) -> int:
    from ktmu.runs.perf import PerfOptions, format_perf, run_perf

    rt = _runtime(args)
    if args.json:
        _prepare_file(args.json)
    methods = args.methods
    if methods:
        from ktmu.methods import METHODS

        for m in methods:
            METHODS.get(m)
    result = run_perf(PerfOptions(model=args.model, runtime=rt, batch_size=args.batch_size, images=args.images, methods=methods,
                                  image_size=args.image_size, classes=args.classes, steps=args.steps, epochs=args.epochs,
                                  repeats=args.repeats),
                      progress=not args.quiet)
    say(format_perf(result))
    if args.json:
        _dump(result, args.json)
        say(f"wrote {args.json}")
    return 0


def cmd_world(args: argparse.Namespace) -> int:
    from ktmu.concepts import Hierarchy, builtin_world
    from ktmu.report.world import format_world, world_record

    world = Hierarchy.load(args.name) if Path(args.name).suffix in (".yaml", ".yml", ".json") else builtin_world(args.name)
    print(json.dumps(world_record(world), indent=2) if args.json else format_world(world))
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from ktmu.study.prepare import prepare_compcars_s, prepare_imgnetdogs

    t0 = time.time()
    if args.dataset == "imgnetdogs":
        if not args.imagenet_root:
            raise ValueError("ktmu prepare imgnetdogs needs --imagenet-root DIR (the ImageNet-1k folder holding train/ and val/).")
        summary = prepare_imgnetdogs(args.imagenet_root, args.out, val_labels=args.val_labels)
    else:
        if not args.root:
            raise ValueError("ktmu prepare compcars-s needs --root DIR (the CompCars-S folder laid out <make>/<model>/<year>/<image>).")
        summary = prepare_compcars_s(args.root, args.out)
    print(json.dumps(summary, indent=2))
    print(f"wrote {Path(args.out) / 'train.jsonl'}, test.jsonl and prepared.json ({time.time() - t0:.1f} s); "
          f"use: --world {args.dataset} --data-root {args.out}")
    return 0


# ---- recipes (configs/*.yaml) -----------------------------------------------------------------------
# Trainer fields with a command-line flag of the same name: a recipe's value becomes that flag's
# default. The other trainer fields travel to _train_cfg in args.trainer_settings.
_TRAINER_FLAGS = ("lr", "epochs", "batch_size", "selection", "schedule")


def _recipe_defaults(recipe: Recipe, command: str) -> dict:
    """Parser defaults for ``command`` from a recipe: session keys and flagged trainer fields by name, the rest bundled."""
    defaults = {k: v for k, v in recipe.session.items() if v is not None}
    defaults.update({k: v for k, v in recipe.trainer.items() if k in _TRAINER_FLAGS})
    defaults["trainer_settings"] = {k: v for k, v in recipe.trainer.items() if k not in _TRAINER_FLAGS}
    defaults["recipe"] = recipe
    if command == "bench" and recipe.methods:
        defaults["methods"] = list(recipe.methods)  # a recipe's methods: section is what bench runs
    return defaults


def _parse_with_recipe(parser: argparse.ArgumentParser, argv: list[str], args: argparse.Namespace) -> argparse.Namespace:
    """Re-parse ``argv`` with the recipe's values as the subcommand's defaults, so that a flag given on the command line wins."""
    from ktmu.study.recipes import load_recipe

    recipe = load_recipe(args.config)
    parser.commands[args.command].set_defaults(**_recipe_defaults(recipe, args.command))  # type: ignore[attr-defined]
    args = parser.parse_args(argv)
    _check_recipe_zero_shot(recipe, args)
    return args


def _check_recipe_zero_shot(recipe: Recipe, args: argparse.Namespace) -> None:
    """A recipe names its zero-shot suite; the folders must come from the command line (or --zero-shot none)."""
    from ktmu.data.domains import DOMAINS
    from ktmu.study.recipes import RecipeError

    names = recipe.session.get("zero_shot")
    if not names or names == ["none"]:
        return
    given = args.zero_shot or []
    if given == names:  # not given on the command line
        need = [n for n in names if DOMAINS.get(n).needs_root]
        if need:
            raise RecipeError(f"{recipe.path} measures zero-shot on {', '.join(names)}: give their folders, "
                              f"--zero-shot {' '.join(f'{n}=DIR' for n in names)} (or --zero-shot none to skip them).")
        return
    ran = sorted(g.partition("=")[0].lower() for g in given)
    if ran != sorted(n.lower() for n in names):
        say(f"note: {recipe.path} measures zero-shot on {', '.join(names)}; this run measures {', '.join(ran) or 'none'} (--zero-shot), "
            "so its zero-shot column is not the recipe's.")


def _recipe_trainer(args: argparse.Namespace) -> dict:
    """Trainer settings from the recipe and the --selection/--schedule flags, for TrainConfig (empty without them)."""
    out = dict(getattr(args, "trainer_settings", None) or {})
    out.update({k: getattr(args, k) for k in ("selection", "schedule") if getattr(args, k, None) is not None})
    return out


def _recipe_record(args: argparse.Namespace, cfg: TrainConfig, hypers: dict[str, dict]) -> dict | None:
    """What results.json records of the recipe: its file, sha256 and content, the values that ran, and what the command line changed."""
    from dataclasses import asdict

    from ktmu.methods import build_method
    from ktmu.study.recipes import SESSION_KEYS

    recipe = getattr(args, "recipe", None)
    if recipe is None:
        return None
    session = {k: getattr(args, k, None) for k in SESSION_KEYS}
    trainer = asdict(cfg)
    methods = {name: build_method(name, **h).hyperparameters() for name, h in hypers.items()}
    changed = [k for k, v in recipe.session.items() if v is not None and session.get(k) != v]
    changed += [f"trainer.{k}" for k, v in recipe.trainer.items() if trainer.get(k) != v]
    changed += [f"methods.{m}.{k}" for m in methods for k, v in recipe.methods.get(m, {}).items() if methods[m].get(k) != v]
    return {"path": str(recipe.path), "absolute_path": str(recipe.path.resolve()), "sha256": recipe.sha256, "file": recipe.values(),
            "resolved": {**session, "trainer": trainer, "methods": methods}, "overridden_on_command_line": changed}


def _add_recipe_args(sp: argparse.ArgumentParser) -> None:
    from ktmu.engine.config import SCHEDULES, SELECTIONS, TrainConfig

    sp.add_argument("--config", metavar="FILE", help="a recipe (YAML, e.g. configs/study/imgnetdogs-difficult.yaml): its values are this "
                                                       "command's defaults; a flag given here wins")
    sp.add_argument("--selection", choices=SELECTIONS, default=TrainConfig.selection,
                    help="checkpoint selection: ours (extra forget-train pass per epoch, lowest kept) or study (the study's rule)")
    sp.add_argument("--schedule", choices=SCHEDULES, default=TrainConfig.schedule,
                    help="learning-rate schedule: warmup-cosine (per step) or cosine-epoch (the study's, stepped once per epoch)")


# ---- parser ---------------------------------------------------------------------------------------
def _add_runtime_args(sp: argparse.ArgumentParser, training: bool) -> None:
    sp.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda or cuda:N")
    sp.add_argument("--precision", default="fp32", help="fp32, bf16 or amp-fp16 (autocast; weights stay fp32)")
    sp.add_argument("--workers", type=int, default=0, help="DataLoader worker processes for streamed images")
    sp.add_argument("--eval-batch-size", type=int, default=256, help="images per forward pass during evaluation")
    if training:
        sp.add_argument("--train", default="default", help="which weights train: default, both (the study), image, text, temperature, or '+'-joined")
        sp.add_argument("--grad-checkpointing", action="store_true", help="recompute activations in backward (open_clip / hf backbones)")


def _add_world_args(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--model", default="mini-clip", help="backbone spec: mini-clip, mini-clip:PATH, tiny-clip, open_clip:ARCH[:TAG_OR_PATH], hf:DIR")
    sp.add_argument("--world", default="fashion", help="dataset whose concepts are forgotten: fashion, digits, jsonl, imagefolder, ...")
    sp.add_argument("--data-root", help="folder of a jsonl or imagefolder world (train.jsonl/test.jsonl or train/, test/)")
    sp.add_argument("--hierarchy", help="YAML/JSON hierarchy (aliases, levels) for a jsonl or imagefolder world")
    sp.add_argument("--zero-shot", nargs="+", metavar="NAME[=DIR]",
                    help="zero-shot domains measured besides the world (default: the other built-in world for mini-clip/tiny-clip, none otherwise; 'none' for none)")


def _add_seeds_arg(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--seeds", type=int, default=1,
                    help="run each method with N seeds (--seed, --seed+1, ...: forget set and training order); scores, zero-shot "
                         "and --audit numbers become mean ± 95 %% interval (paired bootstrap over test images, pooled over seeds)")


def _add_session_args(sp: argparse.ArgumentParser) -> None:
    _add_world_args(sp)
    sp.add_argument("--level", default="difficult", help="named request used when --forget is not given (easy, medium, difficult)")
    sp.add_argument("--max-per-concept", type=int, default=150, help="forget-set images per forgotten fine concept (study: 150)")
    sp.add_argument("--lr", type=float, default=None, help="override the method's tuned learning rate")
    sp.add_argument("--epochs", type=int, default=None, help="override the method's tuned epochs")
    sp.add_argument("--batch-size", type=int, default=32, help="forget images per step, over all processes (study: 32)")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--force", action="store_true", help="run even when the original model does not know the concept (results are flagged)")
    _add_runtime_args(sp, training=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ktmu", description="Knowledge-tracing machine unlearning for CLIP-family models.")
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, fn: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help)
        sp.set_defaults(fn=fn)
        sp.add_argument("--quiet", action="store_true", help="no progress bars")
        return sp

    sp = add("eval", cmd_eval, "zero-shot accuracy of a model on a world's test split and the zero-shot domains")
    _add_world_args(sp)
    sp.add_argument("--domains", nargs="+", help="evaluate these built-in domains by name instead (e.g. fashion digits)")
    sp.add_argument("--json", help="also write the results as JSON here")
    _add_runtime_args(sp, training=False)

    from ktmu.engine.pretrain import PretrainConfig

    defaults = PretrainConfig()
    sp = add("pretrain", cmd_pretrain, "pretrain the embedded mini-CLIP contrastively on fashion + digits")
    sp.add_argument("--out", required=True, help="safetensors file to write")
    sp.add_argument("--manifest", help="provenance JSON to write (default: beside --out)")
    sp.add_argument("--epochs", type=int, default=defaults.epochs)
    sp.add_argument("--batch-size", type=int, default=defaults.batch_size)
    sp.add_argument("--lr", type=float, default=defaults.lr)
    sp.add_argument("--seed", type=int, default=defaults.seed)
    sp.add_argument("--limit", type=int, default=None, help="images per world (quick runs)")
    sp.add_argument("--without", action="append", metavar="CONCEPT",
                    help="an oracle: never caption this fine concept by name (its images keep their coarse caption); repeatable")

    sp = add("unlearn", cmd_unlearn, "forget concepts with one method and report what was forgotten and kept")
    sp.add_argument("--method", default="nhl-kl", help="registered method name")
    sp.add_argument("--forget", action="append", help="concept or alias to forget (repeatable); default: the --level request")
    sp.add_argument("--goal", default="fine", choices=["fine", "coarse", "hybrid"])
    sp.add_argument("--out", required=True, help="folder for model.safetensors and results.json")
    sp.add_argument("--overwrite", action="store_true", help="replace the results of an earlier run in --out")
    sp.add_argument("--set", action="append", metavar="KEY=VALUE", help="method hyperparameter, e.g. --set margin=3")
    sp.add_argument("--audit", action="store_true", help="also audit the unlearned model (ktmu audit's probes; every seed's with --seeds); "
                                                          "its record goes under 'audit'")
    _add_seeds_arg(sp)
    _add_session_args(sp)
    _add_recipe_args(sp)

    sp = add("bench", cmd_bench, "run every registered method on one level's request and tabulate")
    sp.add_argument("--out", required=True, help="folder for table.md, results.json and one file per finished method")
    sp.add_argument("--methods", nargs="+", help="subset of methods (default: the recipe's methods with --config, else all registered)")
    sp.add_argument("--forget", action="append", help="concept or alias to forget instead of the --level request (repeatable)")
    sp.add_argument("--goal", default="fine", choices=["fine", "coarse", "hybrid"])
    sp.add_argument("--set", action="append", metavar="KEY=VALUE", help="hyperparameter for every method that has it")
    sp.add_argument("--overwrite", action="store_true", help="start over, replacing an earlier bench in --out")
    sp.add_argument("--resume", action="store_true", help="continue an interrupted bench in --out (also automatic when its settings match)")
    sp.add_argument("--audit", action="store_true", help="also audit every unlearned model, every seed's (the original's probes once per "
                                                          "seed); adds audit columns")
    _add_seeds_arg(sp)
    _add_session_args(sp)
    _add_recipe_args(sp)

    from ktmu.runs.tune import DEFAULT_LRS, THRESHOLD

    sp = add("tune", cmd_tune, "choose each method's learning rate on forget-set data only")
    sp.add_argument("--methods", nargs="+", help="default: all registered")
    sp.add_argument("--lrs", nargs="+", type=float, default=list(DEFAULT_LRS))
    sp.add_argument("--threshold", type=float, default=THRESHOLD, help="forget-train fine accuracy (%%) that counts as forgotten")
    sp.add_argument("--forget", action="append")
    sp.add_argument("--goal", default="fine", choices=["fine", "coarse", "hybrid"])
    _add_session_args(sp)

    sp = add("levels", cmd_levels, "rank fine concepts by how hard they are to forget apart from their siblings (train data only)")
    sp.add_argument("--model", default="mini-clip")
    sp.add_argument("--world", default="fashion")
    sp.add_argument("--data-root", help="folder of a jsonl or imagefolder world")
    sp.add_argument("--hierarchy", help="YAML/JSON hierarchy for a jsonl or imagefolder world")
    _add_runtime_args(sp, training=False)

    sp = add("demo", cmd_demo, "the main job: zero-shot table, then forget the default request with nhl-kl")
    _add_session_args(sp)

    sp = add("world", cmd_world, "print a world: coarse and fine concepts with their aliases, and its named levels")
    sp.add_argument("name", help="a built-in world (fashion, digits, imgnetdogs, compcars-s) or a world file (.yaml/.json)")
    sp.add_argument("--json", action="store_true", help='print {"name", "coarse", "fine": [{"name", "parent", "aliases"}], "levels"}')

    sp = add("prepare", cmd_prepare, "write the study's image lists (train.jsonl/test.jsonl) for the ImageNet or CompCars copy you have")
    sp.add_argument("dataset", choices=["imgnetdogs", "compcars-s"])
    sp.add_argument("--out", required=True, help="folder for train.jsonl, test.jsonl and prepared.json")
    sp.add_argument("--imagenet-root", help="imgnetdogs: ImageNet-1k folder with train/<wnid>/ and val/ (val/<wnid>/ or flat)")
    sp.add_argument("--val-labels", help="imgnetdogs, flat val/: LOC_val_solution.csv, or ILSVRC2012_validation_ground_truth.txt beside the devkit's meta.mat")
    sp.add_argument("--root", help="compcars-s: CompCars-S folder laid out <make>/<model>/<year>/<image>.jpg")

    from ktmu.audit.relearn import RelearnConfig
    from ktmu.audit.run import AuditConfig

    sp = add("audit", cmd_audit, "audit whether a forgotten concept is gone or only its name: aliases, templates, a linear probe, "
                                 "relearning, where the predictions go")
    sp.add_argument("--model", required=True, help="the audited (unlearned) model, e.g. mini-clip:runs/nhl/model.safetensors")
    sp.add_argument("--original", required=True, help="the model before unlearning, same architecture (e.g. mini-clip)")
    sp.add_argument("--oracle", help="a model of the same architecture that never learned the concept (optional)")
    sp.add_argument("--world", default="fashion", help="dataset whose concepts were forgotten: fashion, digits, jsonl, imagefolder, ...")
    sp.add_argument("--data-root", help="folder of a jsonl or imagefolder world (train.jsonl/test.jsonl or train/, test/)")
    sp.add_argument("--hierarchy", help="YAML/JSON hierarchy (aliases, audit_names, levels) for a jsonl or imagefolder world")
    sp.add_argument("--zero-shot", nargs="+", metavar="NAME[=DIR]",
                    help="zero-shot domains of the study's scores (default as for unlearn; 'none' for none)")
    sp.add_argument("--forget", action="append", help="the forgotten concept (repeatable); default: the --level request")
    sp.add_argument("--level", default="difficult", help="named request used when --forget is not given")
    sp.add_argument("--goal", default="fine", choices=["fine", "coarse", "hybrid"])
    sp.add_argument("--max-per-concept", type=int, default=150, help="the unlearning run's forget-set size per concept (its images are excluded)")
    sp.add_argument("--seed", type=int, default=0, help="the unlearning run's seed (which forget set), and the audit's own draws")
    sp.add_argument("--seeds", type=int, default=1,
                    help="repeat the audit's own draws N times (seeds --seed, --seed+1, ...: probe images, relearning images and order; "
                         "the forget set stays --seed's); numbers become mean ± 95 %% interval (bootstrap over D_f test images, pooled)")
    sp.add_argument("--probe-per-class", type=int, default=AuditConfig.probe_per_class, help="linear-probe train images per fine class")
    sp.add_argument("--relearn-steps", type=int, default=RelearnConfig.steps[-1], help="relearning budget in steps (curve at 0, 1/5, 1/2, all)")
    sp.add_argument("--relearn-images", type=int, default=RelearnConfig.images_per_concept, help="relearning images per concept")
    sp.add_argument("--force", action="store_true", help="audit even when the original model does not know the concept")
    sp.add_argument("--out", required=True, help="folder for audit.json")
    sp.add_argument("--overwrite", action="store_true", help="replace an earlier audit.json in --out")
    _add_runtime_args(sp, training=False)

    from ktmu.runs.perf import PerfOptions

    pd = PerfOptions()
    sp = add("perf", cmd_perf, "measure unlearning step time per method against plain fine-tuning, evaluation throughput and peak memory")
    sp.add_argument("--model", default=pd.model, help="backbone spec (random-init specs need no weights)")
    sp.add_argument("--methods", nargs="+", help="default: all registered")
    sp.add_argument("--batch-size", type=int, default=pd.batch_size)
    sp.add_argument("--images", type=int, default=pd.images, help="images for the evaluation-throughput measurement")
    sp.add_argument("--image-size", type=int, default=pd.image_size, help="synthetic image side in pixels (0 = the model's own)")
    sp.add_argument("--classes", type=int, default=pd.classes, help="fine classes of the synthetic world")
    sp.add_argument("--steps", type=int, default=pd.steps, help="timed steps per method")
    sp.add_argument("--epochs", type=int, default=pd.epochs, help="epochs of the nhl-kl run that measures the overhead outside the steps")
    sp.add_argument("--repeats", type=int, default=pd.repeats, help="each timing is the fastest of this many repetitions")
    sp.add_argument("--json", help="also write the results as JSON here")
    _add_runtime_args(sp, training=True)
    p.commands = dict(sub.choices)  # type: ignore[attr-defined]  # name -> subparser, for recipe defaults
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    from ktmu.runs.provenance import set_command

    set_command(argv)  # results record this command, also when main() is called from Python
    args = parser.parse_args(argv)
    _quiet_libraries()
    from ktmu.registry import RegistryError

    try:
        if getattr(args, "config", None):
            args = _parse_with_recipe(parser, argv, args)
        return args.fn(args)
    except (ValueError, RegistryError) as e:  # every ktmu error type derives from these; real bugs keep their traceback
        print(f"ktmu: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
