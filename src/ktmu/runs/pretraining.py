"""Pretraining the embedded mini-CLIP into a safetensors file with its provenance manifest (``ktmu pretrain``).

The manifest (``<out>.json`` beside the weights; the shipped ``mini_clip.json`` when writing the
shipped checkpoint) records the file's sha256 and size, the command, the config, each epoch's log,
the zero-shot accuracies it reached, the git commit and the package versions.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ktmu.engine.pretrain import PretrainConfig
from ktmu.errors import UsageError
from ktmu.outputs import prepare_out_file, write_json_atomic

WORLDS = ("fashion", "digits")  # what the embedded model learns, and is measured on


@dataclass
class Pretrained:
    """A finished pretraining: where its files are, its zero-shot evaluation and how long it took."""

    weights: Path
    manifest_path: Path
    manifest: dict
    zero_shot: dict  # :func:`ktmu.evaluation.zero_shot.evaluate_domains` of the new weights
    seconds: float


def check_pretrain_config(cfg: PretrainConfig) -> None:
    """Refuse pretraining settings that cannot train (``--epochs``, ``--batch-size``, ``--lr``, ``--limit``)."""
    if cfg.epochs < 1:
        raise UsageError(f"--epochs must be at least 1, got {cfg.epochs}.")
    if cfg.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {cfg.batch_size}.")
    if not cfg.lr > 0 or not math.isfinite(cfg.lr):
        raise UsageError(f"--lr must be a positive finite learning rate, got {cfg.lr}.")
    if cfg.limit_per_world is not None and cfg.limit_per_world < 1:
        raise UsageError(f"--limit must be at least 1 image per world, got {cfg.limit_per_world}; leave it out for every image.")


def manifest_path(out: str | Path, manifest: str | Path | None = None) -> Path:
    """Where the manifest goes: ``manifest`` if given, the shipped manifest for the shipped weights, else beside ``out``."""
    from ktmu.backbones.mini_clip import MANIFEST

    out = Path(out)
    if manifest:
        return Path(manifest)
    return MANIFEST if out.resolve() == MANIFEST.with_suffix(".safetensors") else out.with_suffix(".json")


def pretrain_checkpoint(out: str | Path, cfg: PretrainConfig, manifest: str | Path | None = None, progress: bool = True) -> Pretrained:
    """Pretrain a mini-CLIP from random weights on fashion + digits, save it to ``out`` and write its manifest (:func:`manifest_path`).

    The settings and the output file are checked before anything trains.
    """
    from ktmu.backbones.mini_clip import build_mini_clip, sha256
    from ktmu.data import load_dataset
    from ktmu.engine.pretrain import pretrain
    from ktmu.evaluation.zero_shot import evaluate_domains
    from ktmu.runs.provenance import command_line, git_commit, versions

    check_pretrain_config(cfg)
    prepare_out_file(out)
    backbone = build_mini_clip(weights="random")
    datasets = [load_dataset(name, "train") for name in WORLDS]
    t0 = time.time()
    logs = pretrain(backbone, datasets, cfg, progress=progress)
    seconds = time.time() - t0
    out = Path(out)
    backbone.save_weights(out, metadata={"format": "ktmu-mini-clip", "command": command_line()})
    result = evaluate_domains(backbone, list(WORLDS), progress=progress)
    record = {
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
    path = manifest_path(out, manifest)
    write_json_atomic(path, record)
    return Pretrained(out, path, record, result, seconds)
