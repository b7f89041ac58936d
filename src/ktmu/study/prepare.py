"""Image lists for the reference study's own worlds, written from the copies of ImageNet and CompCars a user has.

``prepare_imgnetdogs`` and ``prepare_compcars_s`` (``ktmu prepare imgnetdogs|compcars-s``) check that
every image the study used is present, then write ``train.jsonl``, ``test.jsonl`` and
``prepared.json`` into ``out``; the ``imgnetdogs`` / ``compcars-s`` datasets read that folder.
Image paths in the written lists are **absolute**, so ``out`` can live anywhere (and move) while
the images stay where they are. Nothing is written unless every check passes: each file goes to a
temporary file first and all are renamed into place together at the end.
"""
from __future__ import annotations

import contextlib
import csv
import gzip
import json
import os
from pathlib import Path
from typing import Any, Iterable

from ktmu.concepts import builtin_world
from ktmu.data import DatasetError
from ktmu.outputs import atomic_path, dumps_json

LISTS = Path(__file__).resolve().parent.parent / "worlds"  # the study's image lists ship beside the world files, gzipped
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
SHOW_MISSING = 5  # how many missing paths an error names; the count covers the rest


class PrepareError(DatasetError):
    """Data that cannot be prepared as the study used it; the message says what is missing and what to do."""


def study_list(world: str, split: str) -> list[dict[str, Any]]:
    """The study's image list for ``world`` (``imgnetdogs`` train/test, ``compcars-s`` test), paths relative to the dataset root."""
    path = LISTS / f"{world}-{split}.jsonl.gz"
    if not path.is_file():
        known = sorted(p.name.removesuffix(".jsonl.gz") for p in LISTS.glob("*.jsonl.gz"))
        raise PrepareError(f"ktmu ships no {split} image list for {world!r}; shipped lists: {', '.join(known)}.")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


class _Listing:
    """Which files each folder holds, read once per folder: one listdir instead of a stat per image (slow on network disks)."""

    def __init__(self) -> None:
        self._seen: dict[Path, frozenset[str]] = {}

    def names(self, folder: Path) -> frozenset[str]:
        if folder not in self._seen:
            try:
                self._seen[folder] = frozenset(os.listdir(folder))
            except (FileNotFoundError, NotADirectoryError):
                self._seen[folder] = frozenset()
        return self._seen[folder]

    def missing(self, paths: Iterable[Path]) -> list[Path]:
        return [p for p in paths if p.name not in self.names(p.parent)]


def _missing_error(what: str, missing: list[Path], total: int, hint: str) -> PrepareError:
    shown = "\n  ".join(str(p) for p in missing[:SHOW_MISSING])
    more = f"\n  ... and {len(missing) - SHOW_MISSING} more" if len(missing) > SHOW_MISSING else ""
    return PrepareError(f"{len(missing)} of {total} {what} images are missing; nothing was written. First missing:\n  {shown}{more}\n{hint}")


def _jsonl(records: Iterable[dict[str, Any]]) -> str:
    return "".join(dumps_json(r, indent=None, ensure_ascii=False) + "\n" for r in records)


def _write_all(out: Path, texts: dict[str, str]) -> None:
    """Write every file to a temporary file, then rename all of them: a failure part-way leaves ``out`` as it was."""
    with contextlib.ExitStack() as stack:
        for name, text in texts.items():
            stack.enter_context(atomic_path(out / name)).write_text(text, encoding="utf-8")


def _records(items: Iterable[tuple[Path, dict[str, Any]]]) -> list[dict[str, Any]]:
    return [{"img_path": str(path), "coarse_label": r["coarse_label"], "fine_label": r["fine_label"]} for path, r in items]


# ---- ImageNet dogs ----------------------------------------------------------------------------------------------

IMAGENET_LAYOUT = (
    "an ImageNet-1k (ILSVRC2012) root holds train/<wnid>/<wnid>_<n>.JPEG and val/, with val arranged either as "
    "val/<wnid>/ILSVRC2012_val_<n>.JPEG or flat as val/ILSVRC2012_val_<n>.JPEG (e.g. Kaggle's ILSVRC/Data/CLS-LOC)"
)


def _val_labels_from_csv(path: Path) -> dict[str, str]:
    """Kaggle's ``LOC_val_solution.csv``: ``ImageId,PredictionString`` whose first token is the image's wnid."""
    out = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            try:
                out[row["ImageId"]] = row["PredictionString"].split()[0]
            except (KeyError, IndexError, AttributeError) as e:
                raise PrepareError(f"{path}: expected columns ImageId,PredictionString with a wnid first ({e!r} on {row}).") from e
    return out


def _val_labels_from_devkit(path: Path) -> dict[str, str]:
    """The devkit's ``ILSVRC2012_validation_ground_truth.txt`` (one ILSVRC2012_ID per image) with ``meta.mat`` beside it."""
    from scipy.io import loadmat  # only this path needs scipy

    meta = path.parent / "meta.mat"
    if not meta.is_file():
        raise PrepareError(f"{meta} does not exist; the devkit keeps meta.mat beside {path.name} (ILSVRC2012_devkit_t12/data/).")
    try:
        synsets = loadmat(str(meta), squeeze_me=True)["synsets"]
        wnid_of = {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in synsets}
    except (ValueError, KeyError, OSError) as e:
        raise PrepareError(f"{meta} is not the devkit's meta.mat (a 'synsets' table with ILSVRC2012_ID and WNID): {e}") from e
    out = {}
    for n, token in enumerate(path.read_text().split(), 1):
        if not token.isdigit() or int(token) not in wnid_of:
            raise PrepareError(f"{path}: entry {n} ({token!r}) is not a class id of {meta}.")
        out[f"ILSVRC2012_val_{n:08d}"] = wnid_of[int(token)]
    return out


def read_val_labels(path: str | Path) -> dict[str, str]:
    """ImageNet val ground truth as ``{"ILSVRC2012_val_00000001": wnid}`` from ``LOC_val_solution.csv`` or the devkit's txt + meta.mat."""
    path = Path(path)
    if not path.is_file():
        raise PrepareError(f"val label file {path} does not exist.")
    if path.suffix == ".csv":
        return _val_labels_from_csv(path)
    if path.suffix == ".txt":
        return _val_labels_from_devkit(path)
    raise PrepareError(
        f"val label file {path}: use LOC_val_solution.csv (Kaggle) or ILSVRC2012_validation_ground_truth.txt "
        "(devkit, with its meta.mat beside it)."
    )


def prepare_imgnetdogs(imagenet_root: str | Path, out: str | Path, val_labels: str | Path | None = None) -> dict[str, Any]:
    """Write the study's exact imgnetdogs lists (19,800 train / 4,950 test images) for a local ImageNet-1k copy.

    Val may be in class folders (``val/<wnid>/<file>``) or flat (``val/<file>``). ``val_labels``
    (``LOC_val_solution.csv``, or the devkit's ``ILSVRC2012_validation_ground_truth.txt`` with
    ``meta.mat`` beside it) checks every test image's label against the official ground truth;
    without it, flat val files are trusted by name. Raises ``PrepareError`` (a ``DatasetError``)
    naming the missing files, or the expected layout; returns the summary also saved as
    ``out/prepared.json``.
    """
    root = Path(imagenet_root).expanduser().absolute()
    if not root.is_dir():
        raise PrepareError(f"ImageNet root {root} does not exist; {IMAGENET_LAYOUT}.")
    absent = [d for d in ("train", "val") if not (root / d).is_dir()]
    if absent:
        nested = root / "ILSVRC" / "Data" / "CLS-LOC"  # Kaggle's archive unpacks the images this deep
        hint = f" Did you mean {nested}?" if nested.is_dir() else ""
        raise PrepareError(f"{root} has no {' or '.join(f'{d}/' for d in absent)} folder; {IMAGENET_LAYOUT}.{hint}")
    world = builtin_world("imgnetdogs")
    train, test = study_list("imgnetdogs", "train"), study_list("imgnetdogs", "test")
    listing = _Listing()
    wnids = {Path(r["img_path"]).parts[1] for r in test}
    val_names = listing.names(root / "val")
    flat = not (wnids & val_names)  # class folders for any of the breeds means the class-folder layout
    if flat and not any(n.startswith("ILSVRC2012_val_") for n in val_names):
        raise PrepareError(f"{root / 'val'} holds neither <wnid>/ folders of the dog breeds nor ILSVRC2012_val_*.JPEG files; {IMAGENET_LAYOUT}.")

    def val_path(rel: str) -> Path:
        parts = Path(rel).parts  # ("val", wnid, file)
        return root / "val" / parts[2] if flat else root / rel

    train_paths = [root / r["img_path"] for r in train]
    test_paths = [val_path(r["img_path"]) for r in test]
    missing = listing.missing(train_paths) + listing.missing(test_paths)
    if missing:
        raise _missing_error(
            "imgnetdogs", missing, len(train) + len(test),
            f"The study's lists name ImageNet-1k train and val files; check that {root} is a complete ILSVRC2012 copy.",
        )
    notes = ["image paths are absolute; the lists are the study's exact ones (200 train / 50 val images per breed)"]
    if val_labels is not None:
        truth = read_val_labels(val_labels)
        wrong = []
        for r in test:
            wnid, image_id = Path(r["img_path"]).parts[1], Path(r["img_path"]).stem
            if truth.get(image_id) != wnid:
                wrong.append(f"{image_id}: listed as {wnid} ({r['fine_label']}), ground truth says {truth.get(image_id, 'nothing')}")
        if wrong:
            raise PrepareError(
                f"{len(wrong)} of {len(test)} test images disagree with {val_labels}; nothing was written. First:\n  "
                + "\n  ".join(wrong[:SHOW_MISSING])
            )
        notes.append(f"val labels checked against {Path(val_labels).name}")
    elif flat:
        notes.append("flat val: labels taken from the study's list, not checked (pass the val ground-truth file to check them)")
    summary = {
        "dataset": "imgnetdogs",
        "world": world.name,
        "source_root": str(root),
        "out": str(Path(out).absolute()),
        "val_layout": "flat" if flat else "class folders",
        "counts": {"train": len(train), "test": len(test)},
        "missing": 0,
        "notes": notes,
    }
    _write_all(Path(out), {
        "train.jsonl": _jsonl(_records(zip(train_paths, train))),
        "test.jsonl": _jsonl(_records(zip(test_paths, test))),
        "prepared.json": dumps_json(summary) + "\n",
    })
    return summary


# ---- CompCars-S ------------------------------------------------------------------------------------------------

COMPCARS_LAYOUT = (
    "a CompCars-S root is laid out <make>/<model>/<year>/<file>.jpg with folders named by make and model as in the "
    "study's world (e.g. Audi/Audi A7/2014/…), not by CompCars' numeric ids"
)


def _model_images(folder: Path) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()  # a deterministic walk, so the train list is the same on every machine
        found.extend(Path(dirpath) / f for f in sorted(filenames) if Path(f).suffix.lower() in IMAGE_SUFFIXES)
    return found


def prepare_compcars_s(root: str | Path, out: str | Path) -> dict[str, Any]:
    """Write compcars-s lists: the study's exact test list (8,943 images) and a train list rebuilt from the folders.

    The study's train list is not public, so train is every image under ``root/<make>/<model>/``
    of the world's 292 models that is not in the test list (as the study split them: its test list
    plus all other images of those models). Raises ``PrepareError`` (a ``DatasetError``) naming the
    missing test files, or the expected layout; returns the summary also saved as ``out/prepared.json``.
    """
    root = Path(root).expanduser().absolute()
    if not root.is_dir():
        raise PrepareError(f"CompCars root {root} does not exist; {COMPCARS_LAYOUT}.")
    world = builtin_world("compcars-s")
    makes = [m for m in world.coarse_names if (root / m).is_dir()]
    if not makes:
        raise PrepareError(f"{root} has none of the world's {len(world.coarse)} make folders (e.g. {root / 'Audi'}); {COMPCARS_LAYOUT}.")
    test = study_list("compcars-s", "test")
    listing = _Listing()
    test_paths = [root / r["img_path"] for r in test]
    missing = listing.missing(test_paths)
    if missing:
        raise _missing_error(
            "compcars-s test", missing, len(test), f"The study's test list names files under {root}; {COMPCARS_LAYOUT}."
        )
    in_test = set(test_paths)
    train_items: list[tuple[Path, dict[str, Any]]] = []
    without_train = []
    for model in world.fine:
        label = {"coarse_label": model.parent, "fine_label": model.name}
        images = [p for p in _model_images(root / str(model.parent) / model.name) if p not in in_test]
        if not images:
            without_train.append(model.name)
        train_items.extend((p, label) for p in images)
    if not train_items:
        raise PrepareError(f"{root} holds only the study's test images; the train list is every other image of the world's models. {COMPCARS_LAYOUT}.")
    notes = [
        "image paths are absolute; test is the study's exact list",
        "train is rebuilt: the study's train list is not public, so it is every image of the world's models under the root that is not in the test list",
    ]
    if without_train:
        notes.append(f"{len(without_train)} models have no train image: {', '.join(without_train)}")
    summary = {
        "dataset": "compcars-s",
        "world": world.name,
        "source_root": str(root),
        "out": str(Path(out).absolute()),
        "counts": {"train": len(train_items), "test": len(test)},
        "missing": 0,
        "models_without_train_images": without_train,
        "notes": notes,
    }
    _write_all(Path(out), {
        "train.jsonl": _jsonl(_records(train_items)),
        "test.jsonl": _jsonl(_records(zip(test_paths, test))),
        "prepared.json": dumps_json(summary) + "\n",
    })
    return summary
