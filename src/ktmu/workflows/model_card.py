"""The model card (``README.md`` with Hugging Face front matter) that travels with every ``ktmu export``.

It states what was forgotten and at which level, the method and its hyperparameters, the
headline metrics with their intervals, the audit's verdict against the oracle when one was
audited, how to load the folder, and the exact commands. Every number is the results.json
record's own value, printed to two decimals (the CLI tables' precision), so a card can be
checked against its record.
"""
from __future__ import annotations

import math
import shlex
from typing import Any, Mapping, Sequence

import yaml

from ktmu.audit.report import headline

TAGS = ("ktmu", "machine-unlearning", "concept-unlearning", "clip", "zero-shot-image-classification")
ACCURACY_ROWS = (("forget_coarse", "D_f coarse"), ("forget_fine", "D_f fine"), ("retain_coarse", "D_r coarse"),
                 ("retain_fine", "D_r fine"), ("zero_shot", "zero-shot"))
SUMMARY_ROWS = (("quality", "Quality"), ("utility", "Utility"), ("qu", "Q-U"), ("qu_ca", "Q-U* (chance-aware)"))
AUDIT_ROWS = (("d_f_fine", "D_f fine (canonical names)"), ("held_out_alias", "held-out alias (worst)"),
              ("held_out_template", "held-out template (worst)"), ("probe_recall", "linear-probe recall"),
              ("relearn_after", "D_f fine after relearning"), ("wc_quality", "worst-case Quality"))
VERDICT_KEYS = ("held_out_alias", "probe_recall", "relearn_after")  # what would show the concept is still there
# Points within which a number counts as the oracle's when neither has an interval: issue 13's
# tolerance for "within 5 points of the oracle"; with intervals, the oracle's 95 % interval decides.
ORACLE_TOLERANCE = 5.0


def fmt(v: Any, digits: int = 2) -> str:
    """A number as the CLI tables print it (two decimals), ``-`` when missing or not a number."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return "-"
    return f"{v:.{digits}f}"


def _with_interval(value: Any, iv: Mapping | None) -> str:
    if not isinstance(iv, Mapping) or fmt(iv.get("half_width")) == "-" or fmt(value) == "-":
        return fmt(value)
    return f"{fmt(value)} ± {fmt(iv['half_width'])} (95 % interval {fmt(iv.get('low'))} to {fmt(iv.get('high'))})"


def _mean_or(record: Mapping, key: str, value: Any) -> Any:
    mean = record.get("mean") if isinstance(record.get("mean"), Mapping) else {}
    return mean.get(key, value)


def command_option(command: str | None, option: str) -> str | None:
    """The value of ``option`` (e.g. ``--model``) in a recorded command line, or None."""
    try:
        words = shlex.split(command or "")
    except ValueError:
        return None
    for i, w in enumerate(words):
        if w == option and i + 1 < len(words):
            return words[i + 1]
        if w.startswith(option + "="):
            return w.split("=", 1)[1]
    return None


def named_level(request: Mapping) -> str | None:
    """The world's named level (e.g. ``difficult``) whose concepts are exactly the request's, for built-in worlds."""
    from ktmu.concepts import builtin_world
    from ktmu.errors import KtmuError

    try:
        world = builtin_world(str(request.get("world")))
    except (KtmuError, OSError):
        return None
    concepts = sorted(request.get("concepts") or [])
    return next((name for name, names in world.levels.items() if sorted(names) == concepts), None)


def front_matter(base_model: str, library: str) -> str:
    """Hugging Face model-card metadata (YAML between ``---`` lines)."""
    meta = {"base_model": base_model, "library_name": library, "tags": list(TAGS), "pipeline_tag": "zero-shot-image-classification"}
    return "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---"


def _forgotten(record: Mapping) -> list[str]:
    req = record.get("request") or {}
    goal = req.get("goal", "?")
    level = named_level(req)
    kept = {"fine": "their coarse concepts are kept: the images keep their coarse name",
            "coarse": "every fine concept under them is forgotten too", "hybrid": "each at its own level"}.get(goal, "")
    lines = [f"- **Forgotten:** {', '.join(req.get('concepts') or ['?'])} in the `{req.get('world', '?')}` world, "
             f"goal `{goal}` ({kept})" + (f"; this is the world's `{level}` request" if level else "") + ".",
             f"- **Fine concepts removed:** {', '.join(req.get('forget_fine') or []) or 'none'}; "
             f"coarse concepts removed: {', '.join(req.get('forget_coarse') or []) or 'none'}.",
             f"- **Data used:** a proxy forget set of {req.get('forget_set_size', '?')} train images of the forgotten concepts "
             f"(at most {req.get('max_per_concept', '?')} per concept) and no retain data."]
    return lines


def _method(record: Mapping) -> list[str]:
    cfg = record.get("config") or {}
    hyper = {k: v for k, v in (cfg.get("method") or {}).items() if k not in ("lr", "epochs")}  # the trainer line has the ones that ran
    train = cfg.get("train") or {}
    seeds = record.get("seeds") if isinstance(record.get("seeds"), list) else None
    lines = [f"- **Method:** `{record.get('method', '?')}`; hyperparameters: "
             + (", ".join(f"`{k}={v}`" for k, v in hyper.items()) or "its defaults") + ".",
             f"- **Trainer:** " + ", ".join(f"{k} {train[k]}" for k in ("lr", "epochs", "batch_size", "schedule", "selection") if k in train)
             + f"; selected epoch {cfg.get('selected_epoch', '?')} ({cfg.get('selection_rule', 'rule not recorded')}).",
             f"- **Seeds:** " + (f"{len(seeds)} ({', '.join(str(s.get('seed')) for s in seeds)}); the numbers below are means over "
                                 "seeds with 95 % intervals, and the weights are the first seed's" if seeds else str(record.get("seed", "?"))) + "."]
    return lines


def _history(record: Mapping) -> list[str]:
    """The checkpoint's ledger (the requests applied to it, oldest first) and its cumulative scores against the base model."""
    ledger = record.get("ledger") or {}
    requests = ledger.get("requests") or []
    base = ledger.get("base") or {}
    lines = [f"This checkpoint was unlearned {len(requests)} times in turn, each request from the checkpoint the one before wrote, "
             f"starting from `{base.get('spec', '?')}` (weights sha256 `{str(base.get('sha256', '?'))[:12]}...`):"]
    lines += [f"{i}. {', '.join(r.get('concepts') or ['?'])} ({r.get('goal', '?')}) with `{r.get('method', '?')}`, seed {r.get('seed', '?')}, "
              f"{r.get('forget_set_size', '?')} forget-set images" + (f", {r['date']}" if r.get("date") else "") for i, r in enumerate(requests, 1)]
    cum = record.get("cumulative")
    if cum:
        mean = {**cum, **(cum.get("mean") or {})}
        per = ", ".join(f"{c} {fmt(v['unlearned'])} % (was {fmt(v['base'])} %)" for c, v in (cum.get("concepts") or {}).items())
        lines.append(f"\nAgainst the base model, every request together: Quality {fmt(mean.get('quality'))}, Utility "
                     f"{fmt(mean.get('utility'))}, Q-U {fmt(mean.get('qu'))}, zero-shot {fmt(mean.get('zero_shot', cum['unlearned'].get('zero_shot')))} "
                     f"({fmt(mean.get('zero_shot_drop'))} points below the base); D_f accuracy of each forgotten concept: {per}.")
    return lines


def _metrics(record: Mapping) -> list[str]:
    original, unlearned = record.get("original") or {}, record.get("unlearned") or {}
    intervals = record.get("interval") if isinstance(record.get("interval"), Mapping) else {}
    lines = ["| accuracy (%) | original | unlearned |", "|---|---:|---:|"]
    for key, label in ACCURACY_ROWS:
        lines.append(f"| {label} | {fmt(original.get(key))} | {_with_interval(_mean_or(record, key, unlearned.get(key)), intervals.get(key))} |")
    lines += ["", "| metric | value |", "|---|---:|"]
    lines += [f"| {label} | {_with_interval(_mean_or(record, key, record.get(key)), intervals.get(key))} |" for key, label in SUMMARY_ROWS]
    flags = record.get("flags") or {}
    raised = [w for w, on in (("COLLAPSED", flags.get("collapsed")), ("UNCHANGED", flags.get("unchanged")),
                              ("UNKNOWN-CONCEPT", flags and flags.get("original_knows_concept") is False)) if on]
    lines += ["", f"Flags: {', '.join(raised) if raised else 'none'}" + (f" ({'; '.join(flags.get('reasons') or [])})" if raised else "") + "."]
    return lines


def audit_verdict(models: Mapping[str, Mapping]) -> str:
    """What the audit says against the oracle: removed, hidden (name gone, knowledge readable) or not forgotten."""
    unlearned, oracle = models.get("unlearned"), models.get("oracle")
    if not isinstance(unlearned, Mapping):
        return "no audit of this model was recorded."
    if not isinstance(oracle, Mapping):
        return ("no oracle (a model that never learned the concept) was audited, so the audit cannot say whether the concept "
                "is removed or only hidden; compare the numbers with the original's above, or rerun the audit with --oracle.")
    above = []
    for key in VERDICT_KEYS:
        mine, _ = headline(unlearned, key)
        ref, iv = headline(oracle, key)
        if fmt(mine) == "-" or fmt(ref) == "-":
            continue
        limit = iv.high if iv is not None else ref + ORACLE_TOLERANCE
        if mine > limit:
            above.append(f"{dict(AUDIT_ROWS)[key]} {fmt(mine)} against the oracle's {fmt(ref)}")
    name, _ = headline(unlearned, "d_f_fine")
    name_ref, name_iv = headline(oracle, "d_f_fine")
    name_gone = fmt(name) != "-" and fmt(name_ref) != "-" and name <= (name_iv.high if name_iv else name_ref + ORACLE_TOLERANCE)
    if not above:
        return "**removed**: every audited number is at the oracle's (within its 95 % interval, or 5 points without one)."
    if name_gone:
        return "**hidden, not removed**: the name is forgotten, but " + "; ".join(above) + "."
    return "**not forgotten**: the canonical name still works, and " + "; ".join(above) + "."


def _audit(record: Mapping) -> list[str]:
    audit = record.get("audit")
    if not isinstance(audit, Mapping) or not isinstance(audit.get("models"), Mapping):
        return ["Not audited (unlearn with `--audit`, or run `ktmu audit`, to measure whether the knowledge is gone)."]
    models = audit["models"]
    roles = [r for r in ("original", "unlearned", "oracle") if isinstance(models.get(r), Mapping)]
    lines = ["| D_f test images (%) | " + " | ".join(roles) + " |", "|---|" + "---:|" * len(roles)]
    for key, label in AUDIT_ROWS:
        cells = []
        for role in roles:
            value, iv = headline(models[role], key)
            cells.append(fmt(value) if iv is None else f"{fmt(value)} ± {fmt(iv.half_width)}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines + ["", "Verdict: " + audit_verdict(models)]


def load_section(export: Mapping) -> str:
    """How to load the folder: its format and files, a snippet in the format's own library, and the ktmu spec."""
    files = export.get("files") or []
    names = list(files) if not isinstance(files, Mapping) else list(files.keys())
    language = str(export.get("load_language", "python"))
    folder = 'DIR = "path/to/this/folder"' if language == "python" else "DIR=path/to/this/folder"
    return (f"Format: `{export.get('format')}`. Files: {', '.join(f'`{f}`' for f in names)}.\n\n"
            f"```{language}\n{folder}\n{export.get('load', '')}\n```\n\n"
            f"In ktmu: `--model {str(export.get('ktmu_spec', '')).replace('DIR', 'path/to/this/folder')}`.")


def model_card(record: Mapping, export: Mapping, export_command: str, title: str | None = None) -> str:
    """The README.md of an export folder, from the unlearning run's results.json ``record`` and the export's own record."""
    prov = record.get("provenance") or {}
    base = command_option(prov.get("command"), "--model") or dict(record.get("config") or {}).get("model") or export.get("spec", "?")
    concepts = ", ".join(dict(record.get("request") or {}).get("concepts") or ["?"])
    method = record.get("method", "?")
    parts: Sequence[Sequence[str] | str] = (
        front_matter(str(base), str(export.get("library", "ktmu"))),
        "# " + (title or f"{base} with {concepts} unlearned ({method})"),
        f"This model is `{base}` after machine unlearning with ktmu: the concept(s) {concepts} were removed with the method "
        f"`{method}` from a small proxy forget set, without retain data.",
        "## What was forgotten", _forgotten(record),
        "## Method", _method(record),
        "## Results", "ktmu's evaluation on the world's test split (D_f: test images of the forgotten concepts; D_r: all others; "
                      "zero-shot: a domain the request does not touch). Definitions: `ktmu report` pages, or the ktmu README.",
        _metrics(record),
        *(("## History", _history(record)) if len((record.get("ledger") or {}).get("requests") or []) > 1 else ()),
        "## Audit: is the knowledge gone?", _audit(record),
        "## How to load", load_section(export),
        "## Provenance",
        [f"- Unlearning command: `{prov.get('command', 'not recorded')}`", f"- Export command: `{export_command}`",
         f"- ktmu git commit: `{record.get('git_commit', 'unknown')}`",
         "- Versions: " + ", ".join(f"{k} {v}" for k, v in (record.get("versions") or {}).items())],
    )
    return "\n\n".join(p if isinstance(p, str) else "\n".join(p) for p in parts) + "\n"
