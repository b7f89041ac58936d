"""The reference study's own worlds as datasets: ``imgnetdogs`` and ``compcars-s``.

Each reads the ``train.jsonl``/``test.jsonl`` written by ``ktmu prepare imgnetdogs|compcars-s`` into
``--data-root`` (see ``ktmu.study.prepare``), labelled by the world file shipped in ``ktmu/worlds``.
"""
from __future__ import annotations

from pathlib import Path

from ktmu.concepts import Hierarchy, builtin_world
from ktmu.data.base import DatasetError, FileDataset, check_split
from ktmu.data.jsonl import load_jsonl

PREPARE_HINT = {
    "imgnetdogs": "ktmu prepare imgnetdogs --imagenet-root IMAGENET_DIR --out DIR",
    "compcars-s": "ktmu prepare compcars-s --root COMPCARS_DIR --out DIR",
}


def _load(world: str, split: str, root: str | Path | None, hierarchy: str | Path | Hierarchy | None) -> FileDataset:
    check_split(split)
    if root is None:
        raise DatasetError(
            f"dataset {world!r} is read from the folder that `{PREPARE_HINT[world]}` wrote: pass --data-root DIR."
        )
    if not (Path(root) / f"{split}.jsonl").is_file():
        raise DatasetError(
            f"{Path(root) / f'{split}.jsonl'} does not exist; write the image lists first with `{PREPARE_HINT[world]}`."
        )
    # A user's own edit of the world (e.g. more aliases) may replace the shipped file; labels must still resolve in it.
    return load_jsonl(split, root, hierarchy if hierarchy is not None else builtin_world(world))


def load_imgnetdogs(split: str, root: str | Path | None = None, hierarchy: str | Path | Hierarchy | None = None) -> FileDataset:
    """One split of the study's ImageNet dogs world (99 breeds, 14 groups) from a folder made by ``ktmu prepare imgnetdogs``."""
    return _load("imgnetdogs", split, root, hierarchy)


def load_compcars_s(split: str, root: str | Path | None = None, hierarchy: str | Path | Hierarchy | None = None) -> FileDataset:
    """One split of the study's CompCars world (292 models, 48 makes) from a folder made by ``ktmu prepare compcars-s``."""
    return _load("compcars-s", split, root, hierarchy)
