"""The reference study's format: one JSON record per image, one ``<split>.jsonl`` file per split.

Each record is ``{"img_path": ..., "coarse_label": ..., "fine_label": ...}``. Labels are concept
names (or aliases) of the hierarchy, or integer indices when a hierarchy file is given. Relative
image paths are resolved against the folder holding the jsonl file.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..concepts import Hierarchy, HierarchyError
from .base import DatasetError, FileDataset, check_split
from .infer import hierarchy_from_pairs


def _read_records(path: Path) -> list[dict]:
    if not path.is_file():
        raise DatasetError(f"jsonl split file {path} does not exist; expected one file per split (train.jsonl, test.jsonl).")
    records = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise DatasetError(f"{path}:{n}: not valid JSON ({e.msg}).") from e
        missing = {"img_path", "coarse_label", "fine_label"} - set(rec)
        if missing:
            raise DatasetError(f"{path}:{n}: record lacks {', '.join(sorted(missing))}.")
        records.append(rec)
    return records


def _resolve(label: object, names: list[str], hierarchy: Hierarchy, where: str) -> int:
    if isinstance(label, int):
        if not 0 <= label < len(names):
            raise DatasetError(f"{where}: label index {label} is out of range 0..{len(names) - 1}.")
        return label
    try:
        return hierarchy.index(str(label))
    except HierarchyError as e:
        raise DatasetError(f"{where}: {e}") from e


def load_jsonl(split: str, root: str | Path, hierarchy: str | Path | Hierarchy | None = None) -> FileDataset:
    """Load ``root/<split>.jsonl`` (or ``root`` itself when it is a .jsonl file of that split)."""
    check_split(split)
    root = Path(root)
    path = root if root.suffix == ".jsonl" else root / f"{split}.jsonl"
    records = _read_records(path)
    if hierarchy is None:
        # The train split defines the world so that train and test agree on label indices.
        train = path if root.suffix == ".jsonl" else root / "train.jsonl"
        pairs = [(str(r["coarse_label"]), str(r["fine_label"])) for r in _read_records(train)]
        world = hierarchy_from_pairs(pairs, name=root.stem if root.suffix == ".jsonl" else root.name)
    else:
        world = hierarchy if isinstance(hierarchy, Hierarchy) else Hierarchy.load(hierarchy)
    paths, fine = [], []
    parents = world.fine_to_coarse()
    for n, rec in enumerate(records, 1):
        where = f"{path}:{n}"
        f = _resolve(rec["fine_label"], world.fine_names, world, where)
        c = _resolve(rec["coarse_label"], world.coarse_names, world, where)
        if world.fine[f].level != "fine" or parents[f] != c:
            raise DatasetError(
                f"{where}: fine label {rec['fine_label']!r} is not under coarse label {rec['coarse_label']!r} in world {world.name!r}."
            )
        p = Path(rec["img_path"])
        paths.append(p if p.is_absolute() else path.parent / p)
        fine.append(f)
    return FileDataset(world, split, paths, fine)
