"""A bench folder that survives a killed run: each method's result is written as it finishes and reused on resume.

Layout of ``--out``: ``bench.json`` (the run's settings and method list, written with the first
finished method, so that a run that fails before any method finishes leaves the folder empty),
``methods/<method>.json`` (one finished run each, with the method and trainer settings it ran with), then ``table.md`` and
``results.json`` once every method is done. A folder holding a bench with the same settings is
resumed (finished methods whose settings match are not re-run); anything else that is not empty is
refused unless ``--overwrite``.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ktmu.outputs import OutputError, dumps_json, prepare_out_dir, write_json_atomic
from ktmu.engine.config import TrainConfig

MANIFEST = "bench.json"
METHODS_DIR = "methods"


def _method_key(name: str, cfg: TrainConfig) -> dict[str, Any]:
    return {"method": name, "train": asdict(cfg) | {"workers": None}}  # worker count does not change results


def open_manifest(root: Path, manifest: str, key: dict[str, Any], what: str, overwrite: bool = False, resume: bool = False,
                  write: bool = True) -> bool:
    """Check an --out folder that keeps a resumable run (a bench, a sequence) before any compute; True when it resumes one.

    ``root/manifest`` holds the ``run_key`` of the run that began there: an equal ``key`` resumes it,
    another is refused naming the settings that differ. Without a manifest the folder must be new or
    empty (or ``overwrite``: ktmu's earlier outputs are cleared), and ``resume`` is refused.
    """
    path = root / manifest
    if path.is_file() and not overwrite:
        try:
            old = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise OutputError(f"{path} is unreadable ({e}); use --overwrite to start the {what} over.") from e
        if old.get("run_key") != key:
            differ = sorted(k for k in set(key) | set(old.get("run_key", {})) if key.get(k) != old.get("run_key", {}).get(k))
            raise OutputError(f"{root} holds a {what} with other settings ({', '.join(differ)} differ); "
                              "use another --out, or --overwrite to replace it.")
        return True
    if resume and not path.is_file():
        raise OutputError(f"--resume: {root} holds no interrupted {what} ({manifest} is missing); run without --resume.")
    if write:
        prepare_out_dir(root, overwrite=overwrite, resume=False)
    return False


@dataclass
class BenchStore:
    """The output folder of one bench run."""

    root: Path
    run_key: dict[str, Any]
    write: bool = True
    done: list[str] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, out: str | Path, run_key: dict[str, Any], methods: Sequence[str], overwrite: bool = False, resume: bool = False,
             write: bool = True) -> "BenchStore":
        """Check ``out`` before any compute: resume a matching partial bench, or start a new one where allowed."""
        root = Path(out)
        key = json.loads(dumps_json(run_key))  # as it reads back from the strict JSON written
        if open_manifest(root, MANIFEST, key, "bench", overwrite=overwrite, resume=resume, write=write):
            store = cls(root, key, write)
            store.done = [m for m in methods if (root / METHODS_DIR / f"{m}.json").is_file()]
            return store
        return cls(root, key, write, methods=list(methods))

    def load(self, name: str, cfg: TrainConfig) -> dict | None:
        """A finished method's record when it ran with the same settings, else None."""
        path = self.root / METHODS_DIR / f"{name}.json"
        if not path.is_file():
            return None
        try:
            saved = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None  # a torn write cannot happen (atomic), but a hand-edited file is simply re-run
        if saved.get("key") != json.loads(dumps_json(_method_key(name, cfg))):
            return None
        return saved["record"]

    def save(self, name: str, cfg: TrainConfig, record: dict) -> None:
        if self.write:
            if not (self.root / MANIFEST).is_file():
                write_json_atomic(self.root / MANIFEST, {"run_key": self.run_key, "methods": self.methods})
            write_json_atomic(self.root / METHODS_DIR / f"{name}.json", {"key": _method_key(name, cfg), "record": record})
