"""Provenance carried by every result: git commit, package versions, the command line."""
from __future__ import annotations

import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path

PACKAGES = ("ktmu", "torch", "torchvision", "open_clip_torch", "timm", "transformers", "numpy")


def git_commit() -> str:
    """The checkout's HEAD commit (with ``-dirty`` when it has uncommitted changes), or 'unknown'."""
    root = Path(__file__).resolve().parents[3]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (sha + ("-dirty" if dirty else "")) if sha else "unknown"


def versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = "not installed"
    return out


_ARGV: list[str] | None = None  # set by ktmu.cli.main: the arguments of this command, also when called from Python


def set_command(argv: list[str]) -> None:
    """Record ``argv`` as the arguments of the ``ktmu`` command being run (results carry it)."""
    global _ARGV
    _ARGV = list(argv)


def command_line() -> str:
    """The ``ktmu ...`` command being run, shell-quoted."""
    args = _ARGV if _ARGV is not None else sys.argv[1:]
    return "ktmu " + " ".join(shlex.quote(a) for a in args)


def file_record(path: str | Path) -> dict[str, str]:
    """A path with a content hash: the file's sha256, or for a folder one sha256 over its small index files (``*.jsonl``, ``*.yaml``, ``*.json``, ``*.txt``: names and bytes, in name order)."""
    import hashlib

    p = Path(path)
    h = hashlib.sha256()
    if p.is_file():  # a single file: its plain sha256, as `sha256sum FILE` prints it
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        return {"path": str(p.resolve()), "sha256": h.hexdigest()}
    files = [p] if p.is_file() else sorted(f for f in p.glob("*") if f.is_file() and f.suffix in (".jsonl", ".yaml", ".yml", ".json", ".txt")) if p.is_dir() else []
    for f in files:
        h.update(f.name.encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return {"path": str(p.resolve()), "sha256": h.hexdigest() if files else "missing"}


def run_provenance(data_root: str | Path | None = None, hierarchy: str | Path | None = None) -> dict:
    """What a run's record keeps of where it came from: the command line, and the hash of your own data folder and hierarchy file."""
    out: dict = {"command": command_line()}
    if data_root:
        out["data_root"] = file_record(data_root)
    if hierarchy:
        out["hierarchy"] = file_record(hierarchy)
    return out
