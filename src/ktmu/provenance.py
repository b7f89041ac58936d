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
    root = Path(__file__).resolve().parents[2]
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


def command_line() -> str:
    return "ktmu " + " ".join(shlex.quote(a) for a in sys.argv[1:])
