"""Files that survive: every output is written to a temporary file beside it and renamed into place.

Every JSON file ktmu writes (and every JSON it prints for machines) is strict JSON: NaN and
±infinity, which Python's ``json`` would write as the non-standard tokens ``NaN``/``Infinity``, are
written as ``null`` (:func:`json_ready`), and the encoder runs with ``allow_nan=False`` so that a
stray non-finite value is an error, never a file other tools cannot read.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ktmu.errors import KtmuError

FILE_MODE = 0o644  # ordinary rw-r--r--, not mkstemp's 0600


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder; on success it is renamed to ``path``, on error removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (a reader sees the old file or the whole new one)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def json_ready(obj: Any) -> Any:
    """``obj`` as strict JSON holds it: NaN and ±infinity become None, numpy scalars Python ones, tuples lists.

    Keys are kept as they are (a numpy scalar key becomes the Python one; JSON writes both alike).
    Anything ``json`` cannot write (a Path, a tensor) is left as it is for the encoder to refuse:
    that is a bug to see, not a value to guess at. Example:
    ``json_ready({"qu": float("nan"), "n": np.int64(3), "ci": (1.0, float("inf"))})`` ->
    ``{"qu": None, "n": 3, "ci": [1.0, None]}``.
    """
    if isinstance(obj, dict):
        return {(k.item() if isinstance(k, np.generic) else k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def dumps_json(obj: Any, indent: int | None = 2, **kw: Any) -> str:
    """Strict JSON text of ``obj`` (:func:`json_ready`, then ``allow_nan=False``); ``kw`` go to :func:`json.dumps`."""
    return json.dumps(json_ready(obj), indent=indent, allow_nan=False, **kw)


def write_json_atomic(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as strict, indented JSON to ``path`` atomically."""
    return write_text_atomic(path, dumps_json(obj) + "\n")


class OutputError(KtmuError, ValueError):
    """An output file or --out folder that cannot be used as asked; the message says what to do."""


def prepare_out_file(path: str | Path) -> Path:
    """Refuse an output file that could not be written (a folder, under a file, in a read-only folder), before any compute."""
    p = Path(path)
    if p.is_dir():
        raise OutputError(f"{p} is a folder; give a file path for the JSON output.")
    parent = p.parent if str(p.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise OutputError(f"cannot write {p}: {parent} is a file, not a folder.")
    if parent.exists() and not os.access(parent, os.W_OK):
        raise OutputError(f"cannot write {p}: folder {parent} is not writable.")
    return p


# ---- the --out folder ----------------------------------------------------------------------------
# What ktmu writes into an --out folder: only these may be removed by --overwrite. Anything else
# there is the user's, and its presence makes --overwrite refuse rather than guess.
KTMU_FILES = frozenset({"results.json", "table.md", "model.safetensors", "model.ledger.json", "bench.json", "audit.json", "report.html",
                        "sequence.json"})
# per-method records (bench), a sequence's steps and its all-at-once run: KTMU_FILES or <name>.json, also in subfolders
KTMU_DIRS = frozenset({"methods", "steps", "at-once"})
PROBE_PREFIX = ".ktmu-write-probe-"


def _is_ktmu_file(name: str, in_ktmu_dir: bool) -> bool:
    """A file ktmu writes, or a temporary one that :func:`atomic_path` or the probe left behind when a run was killed."""
    if name.startswith(PROBE_PREFIX):
        return True
    if name.startswith(".") and name.endswith(".tmp"):
        name = name[1:].rsplit(".", 2)[0]  # .results.json.k3j2x.tmp -> results.json
    return name in KTMU_FILES or (in_ktmu_dir and name.endswith(".json") and not name.startswith("."))


def foreign_entries(folder: str | Path) -> list[Path]:
    """Everything under ``folder`` that ktmu did not write (paths relative to ``folder``).

    Symbolic links count as ktmu's only under a ktmu file name (removing a link never touches
    its target); a linked folder is always foreign, so cleaning never follows one.
    """
    root = Path(folder)
    foreign: list[Path] = []

    def walk(d: Path, inside_ktmu_dir: bool) -> None:
        for entry in sorted(d.iterdir()):
            if entry.is_symlink() or not entry.is_dir():
                if not _is_ktmu_file(entry.name, inside_ktmu_dir) or (not entry.is_symlink() and not entry.is_file()):
                    foreign.append(entry.relative_to(root))
            elif inside_ktmu_dir or (d == root and entry.name in KTMU_DIRS):
                walk(entry, True)
            else:
                foreign.append(entry.relative_to(root))

    walk(root, False)
    return foreign


def _remove_ktmu_outputs(folder: Path) -> None:
    """Remove ktmu's files and then its emptied folders; never a whole tree at once."""
    for entry in sorted(folder.iterdir()):
        if entry.is_symlink() or not entry.is_dir():
            entry.unlink()
        else:
            _remove_ktmu_outputs(entry)
            entry.rmdir()


def prepare_out_dir(path: str | Path, overwrite: bool = False, resume: bool = False) -> Path:
    """Check, create and (with ``overwrite``) clean an ``--out`` folder before any work starts; return it.

    * an existing file, or a folder that cannot be created or written (a probe file is created
      and removed), is an :class:`OutputError`;
    * an empty or new folder is used as it is;
    * a folder that is not empty is refused unless ``resume`` (kept as it is, to continue a run)
      or ``overwrite``: then ktmu's own outputs (:data:`KTMU_FILES`, :data:`KTMU_DIRS`) are
      removed, and if anything else is there the folder is refused instead, untouched.
    """
    out = Path(path)
    if overwrite and resume:
        raise OutputError("--overwrite and --resume contradict each other; pass one of them.")
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} is a file, not a folder; name a new or empty folder (or remove the file).")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create the --out folder {out} ({e.strerror or e}); choose a folder you can write to.") from e
    try:
        fd, probe = tempfile.mkstemp(prefix=PROBE_PREFIX, dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputError(f"cannot write in the --out folder {out} ({e.strerror or e}); choose a folder you can write to.") from e
    if not any(out.iterdir()) or resume:
        return out
    if not overwrite:
        raise OutputError(
            f"--out {out} is not empty; pass --overwrite to replace ktmu's earlier results there, "
            f"--resume to continue that run, or choose a new folder."
        )
    foreign = foreign_entries(out)
    if foreign:
        shown = ", ".join(str(p) for p in foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise OutputError(
            f"--overwrite would only remove ktmu's own outputs, but --out {out} also holds {shown}; "
            f"move those away or choose another folder."
        )
    try:
        _remove_ktmu_outputs(out)
    except OSError as e:
        raise OutputError(f"cannot clear ktmu's earlier outputs from {out} ({e.strerror or e}); remove them by hand.") from e
    return out
