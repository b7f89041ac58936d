"""``ktmu export``: an unlearned model as a folder its ecosystem loads, with a model card.

:func:`export_model` checks everything it can before loading the model (the format against the
spec's kind, the output folder, the results record), writes the export into a temporary folder
beside ``--out`` and renames it into place only when complete, so a failure leaves nothing
half-written. :func:`export_run` exports the model of an unlearn run folder (``--export``).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ktmu.backbones.export import KTMU_WEIGHTS, check_format, describe_files, export_backbone, read_export_record
from ktmu.engine.ledger import Ledger, checkpoint_of, ledger_metadata, write_sidecar
from ktmu.errors import KtmuError
from ktmu.outputs import write_json_atomic, write_text_atomic
from ktmu.workflows.lineage import read_model_ledger
from ktmu.workflows.model_card import model_card

FOLDER_MODE = 0o755  # rwxr-xr-x, like the files' 0644 (ktmu.outputs.FILE_MODE)
RECORD = "ktmu_export.json"  # marks a folder as a ktmu export: only such a folder is replaced by --overwrite
LEDGER_FILE = "ktmu_ledger.json"  # the exported checkpoint's ledger, for the formats whose weights carry no ktmu metadata


class ExportRunError(KtmuError, ValueError):
    """An export that cannot be made as asked (its output folder, its results record); the message says what to do."""


@dataclass
class Exported:
    """What an export wrote: its folder, format, record and how long it took."""

    folder: Path
    format: str
    record: dict
    seconds: float


def find_results(spec: str, results: str | Path | None) -> tuple[dict | None, Path | None]:
    """The unlearn record describing the exported model: ``results`` if given, else results.json beside the spec's checkpoint."""
    if results is None:
        ckpt = checkpoint_of(spec)
        candidate = ckpt.parent / "results.json" if ckpt is not None else None
        if candidate is None or not candidate.is_file():
            return None, None
        path = candidate
    else:
        path = Path(results)
        path = path / "results.json" if path.is_dir() else path
        if not path.is_file():
            raise ExportRunError(f"--results {results}: no such file; give the results.json of the unlearn run that wrote the model.")
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ExportRunError(f"cannot read {path} as a ktmu results.json ({e}).") from e
    if isinstance(record, dict) and "rows" in record:
        raise ExportRunError(f"{path} is a bench's results; a bench keeps no weights. Export the model of an unlearn run "
                             "(ktmu unlearn --out DIR writes DIR/model.safetensors and DIR/results.json).")
    if not (isinstance(record, dict) and "method" in record and "unlearned" in record):
        raise ExportRunError(f"{path} is not the results.json of a ktmu unlearn run.")
    return record, path


def prepare_export_dir(out: Path, overwrite: bool) -> None:
    """Refuse an --out that exists without ``overwrite``, or (with it) that holds anything but an earlier ktmu export."""
    if out.exists() and not out.is_dir():
        raise ExportRunError(f"--out {out} is a file; give a new folder for the export.")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise ExportRunError(f"--out {out} exists and is not empty; pass --overwrite to replace an earlier export there, "
                                 "or choose a new folder.")
        if read_export_record(out) is None:
            raise ExportRunError(f"--overwrite replaces only an earlier ktmu export, but {out} holds no {RECORD}; "
                                 "choose another folder (or empty it yourself).")
    parent = out.parent if str(out.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise ExportRunError(f"cannot create {out}: {parent} is a file.")


def export_model(spec: str, out: str | Path, fmt: str = "auto", results: str | Path | None = None, overwrite: bool = False,
                 command: str | None = None, record: Mapping | None = None) -> Exported:
    """Export the model ``spec`` (e.g. ``mini-clip:runs/nhl/model.safetensors``) into folder ``out`` with a model card.

    ``record``: the unlearn run's results.json record (else read from ``results`` or found beside
    the checkpoint); without one the card says that no ktmu results describe the model.
    """
    from ktmu.backbones import load_backbone
    from ktmu.workflows.provenance import command_line

    t0 = time.perf_counter()
    out = Path(out)
    chosen = check_format(spec, fmt)
    prepare_export_dir(out, overwrite)
    ledger = read_model_ledger(spec)  # the checkpoint's history travels with the export (in its weights where ktmu writes them)
    results_path = None
    if record is None:
        record, results_path = find_results(spec, results)
    backbone = load_backbone(spec, device="cpu")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        export = export_backbone(backbone, spec, tmp, chosen, ledger_metadata(ledger))
        _write_ledger(tmp, chosen, ledger)
        export.update(spec=spec, results=str(results_path) if results_path else None,
                      card_from=str(results_path) if results_path else ("the unlearn run's record" if record else None))
        card = model_card(record or {}, export, command or command_line()) if record else _bare_card(spec, export, command or command_line())
        write_text_atomic(tmp / "README.md", card)
        entry = {**export, "files": describe_files(tmp), "command": command or command_line(), "ktmu_version": _version(),
                 "method": (record or {}).get("method"), "request": (record or {}).get("request"),
                 **({"ledger": ledger.to_json()} if not ledger.empty else {})}
        write_json_atomic(tmp / RECORD, entry)
        os.chmod(tmp, FOLDER_MODE)  # mkdtemp's folder is private (0700); an export is an ordinary folder
        if out.exists():
            shutil.rmtree(out)  # an earlier ktmu export (prepare_export_dir checked), replaced only now that the new one is complete
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Exported(out, chosen, entry, time.perf_counter() - t0)


def _write_ledger(folder: Path, fmt: str, ledger: Ledger) -> None:
    """The ledger as JSON in an export: the weights' sidecar for the ktmu format (it then loads with its ledger), else ktmu_ledger.json."""
    if ledger.empty:
        return
    if fmt == "ktmu":
        write_sidecar(folder / KTMU_WEIGHTS, ledger)
    else:
        write_json_atomic(folder / LEDGER_FILE, ledger.to_json())


def _version() -> str:
    from ktmu import __version__

    return __version__


def _bare_card(spec: str, export: Mapping, command: str) -> str:
    """A card for a model no ktmu results describe: what it is and how to load it, and that its metrics are unknown."""
    from ktmu.workflows.model_card import front_matter, load_section

    base = spec.rpartition(":")[0] if checkpoint_of(spec) else spec  # the architecture, not a local checkpoint path
    return (front_matter(base, str(export.get("library", "ktmu"))) + f"\n\n# {spec}\n\nExported by ktmu from `{spec}`. No ktmu "
            "results.json describes this model (none beside its checkpoint, and no --results given), so this card cannot say "
            f"what was forgotten or how well.\n\n## How to load\n\n{load_section(export)}\n\n## Provenance\n\n- Export command: "
            f"`{command}`\n")


def unlearned_spec(record: Mapping, run_dir: Path) -> str:
    """The spec that loads an unlearn run's weights: its backbone's name with the run's model.safetensors."""
    name = str(dict(record.get("config") or {}).get("model") or "")
    weights = run_dir / "model.safetensors"
    if not name or not weights.is_file():
        raise ExportRunError(f"{run_dir} holds no unlearned model (model.safetensors and a results.json naming its model); "
                             "export the folder of a finished ktmu unlearn run.")
    return f"{name}:{weights}"


def export_run(run_dir: str | Path, out: str | Path | None = None, fmt: str = "auto", overwrite: bool = False,
               command: str | None = None) -> Exported:
    """Export the unlearned model of an unlearn run folder (default ``RUN_DIR/export``), its card from the run's results.json."""
    run_dir = Path(run_dir)
    record, _ = find_results("", run_dir / "results.json")
    spec = unlearned_spec(record or {}, run_dir)
    return export_model(spec, out if out is not None else run_dir / "export", fmt, overwrite=overwrite, command=command, record=record)
