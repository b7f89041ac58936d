"""The reference study's format: one JSON record per image, one ``<split>.jsonl`` file per split.

Each record is ``{"img_path": ..., "coarse_label": ..., "fine_label": ...}``. Labels are concept
names (or aliases) of the hierarchy, or integer indices when a hierarchy file is given. Relative
image paths are resolved against the folder holding the jsonl file.
"""
from __future__ import annotations

import json
from pathlib import Path

from ktmu.concepts import Hierarchy, HierarchyError
from ktmu.data.base import DatasetError, FileDataset, check_split
from ktmu.data.infer import hierarchy_from_pairs


def _read_records(path: Path) -> list[dict]:
    if not path.is_file():
        raise DatasetError(f"jsonl split file {path} does not exist; expected one file per split (train.jsonl, test.jsonl).")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start}); write the image list as UTF-8 JSON lines.") from None
    records = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise DatasetError(f"{path}:{n}: not valid JSON ({e.msg}).") from e
        except RecursionError:  # json recurses per nesting level
            raise DatasetError(f"{path}:{n}: nests too deeply to be a record.") from None
        if not isinstance(rec, dict):
            raise DatasetError(f"{path}:{n}: each line must be one JSON object "
                               f'{{"img_path": ..., "coarse_label": ..., "fine_label": ...}}, got {type(rec).__name__} {line.strip()[:40]!r}.')
        missing = {"img_path", "coarse_label", "fine_label"} - set(rec)
        if missing:
            raise DatasetError(f"{path}:{n}: record lacks {', '.join(sorted(missing))}.")
        if not isinstance(rec["img_path"], str) or not rec["img_path"]:
            raise DatasetError(f"{path}:{n}: img_path must be a file path (text), got {rec['img_path']!r}.")
        records.append(rec)
    if not records:
        raise DatasetError(f"jsonl split file {path} holds no records; every split needs at least one image.")
    return records


def _resolve(label: object, level: str, world: Hierarchy, where: str) -> int:
    """Index of ``label`` (a name, alias or integer index) at ``level``; a name of the other level is an error."""
    names = world.fine_names if level == "fine" else world.coarse_names
    if isinstance(label, int) and not isinstance(label, bool):
        if not 0 <= label < len(names):
            raise DatasetError(f"{where}: {level} label index {label} is out of range 0..{len(names) - 1}.")
        return label
    try:
        concept = world.find(str(label))
    except HierarchyError as e:
        raise DatasetError(f"{where}: {e}") from e
    if concept.level != level:
        raise DatasetError(f"{where}: {level}_label {label!r} is a {concept.level} concept of world {world.name!r}.")
    return world.index(concept)


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
    # An inferred world names concepts by the labels as written, so labels are looked up as names.
    as_name = hierarchy is None
    paths, fine = [], []
    parents = world.fine_to_coarse()
    for n, rec in enumerate(records, 1):
        where = f"{path}:{n}"
        f = _resolve(str(rec["fine_label"]) if as_name else rec["fine_label"], "fine", world, where)
        c = _resolve(str(rec["coarse_label"]) if as_name else rec["coarse_label"], "coarse", world, where)
        if parents[f] != c:
            raise DatasetError(
                f"{where}: fine label {rec['fine_label']!r} is not under coarse label {rec['coarse_label']!r} in world {world.name!r}."
            )
        p = Path(rec["img_path"])
        paths.append(p if p.is_absolute() else path.parent / p)
        fine.append(f)
    return FileDataset(world, split, paths, fine)
