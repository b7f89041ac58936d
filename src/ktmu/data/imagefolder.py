"""Images laid out as ``root/<split>/<coarse>/<fine>/*.jpg|jpeg|png``; folder names are concept names."""
from __future__ import annotations

from pathlib import Path

from ktmu.concepts import Hierarchy, HierarchyError
from ktmu.data.base import DatasetError, FileDataset, check_split
from ktmu.data.infer import hierarchy_from_pairs

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


def _scan(split_dir: Path) -> list[tuple[str, str, Path]]:
    if not split_dir.is_dir():
        raise DatasetError(f"imagefolder split folder {split_dir} does not exist; expected root/<split>/<coarse>/<fine>/*.jpg.")
    found = []
    for coarse in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        for fine in sorted(p for p in coarse.iterdir() if p.is_dir()):
            for img in sorted(fine.iterdir()):
                if img.suffix.lower() in IMAGE_SUFFIXES:
                    found.append((coarse.name, fine.name, img))
    if not found:
        raise DatasetError(f"no .jpg/.jpeg/.png images under {split_dir}/<coarse>/<fine>/.")
    return found


def load_imagefolder(split: str, root: str | Path, hierarchy: str | Path | Hierarchy | None = None) -> FileDataset:
    """Load one split; without a hierarchy file the train split's folders define the world."""
    check_split(split)
    root = Path(root)
    items = _scan(root / split)
    if hierarchy is None:
        world = hierarchy_from_pairs(((c, f) for c, f, _ in _scan(root / "train")), name=root.name)
    else:
        world = hierarchy if isinstance(hierarchy, Hierarchy) else Hierarchy.load(hierarchy)
    parents = world.fine_to_coarse()
    fine = []
    for coarse, f, img in items:
        try:
            concept, parent = world.find(f), world.find(coarse)
        except HierarchyError as e:
            raise DatasetError(f"{img}: folder {coarse}/{f} is not in world {world.name!r}: {e}") from e
        if concept.level != "fine" or world.coarse_names[parents[world.index(concept)]].lower() != parent.name.lower():
            raise DatasetError(f"{img}: folder {coarse}/{f} does not match world {world.name!r} (fine {f!r} under {coarse!r}).")
        fine.append(world.index(concept))
    return FileDataset(world, split, [p for _, _, p in items], fine)
