"""Tiny fake copies of the study's dataset layouts on disk, for tests and dress rehearsals (nothing is downloaded),
and the helpers several test files share: a small jsonl world of your own, the real ``ktmu`` command in a
subprocess, and the checks on what a command left in its output folder.

Every image file of a fake study root is a hard link to one 8x8 JPEG (a copy where the file system has no
hard links), so the full ImageNet-dogs layout of 24,750 files takes about a second to make while
still exercising ``ktmu prepare`` on the study's real image lists.
"""
from __future__ import annotations

import json
import math
import os
import pickle
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Literal

import numpy as np
from PIL import Image

import ktmu
from ktmu.concepts import builtin_world
from ktmu.study.prepare import study_list
from ktmu.data.zero_shot.common import caltech_folders, class_names

OTHER_WNID = "n01440764"  # tench: a non-dog ImageNet class that prepare must ignore


def tiny_jpeg(path: Path, color: tuple[int, int, int] = (120, 80, 40), size: int = 8) -> Path:
    """Write one small solid-colour JPEG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), color).save(path, format="JPEG")
    return path


class _Linker:
    """Places many files as links to one seed image; folders are made once each."""

    def __init__(self, seed: Path) -> None:
        self.seed = seed
        self.made: set[Path] = set()
        self.can_link = True

    def place(self, dest: Path) -> None:
        if dest.parent not in self.made:
            dest.parent.mkdir(parents=True, exist_ok=True)
            self.made.add(dest.parent)
        if self.can_link:
            try:
                os.link(self.seed, dest)
                return
            except OSError:  # no hard links here (or across devices): copy instead
                self.can_link = False
        shutil.copyfile(self.seed, dest)


def make_imagenet_root(
    root: Path,
    val_layout: Literal["folders", "flat"] = "folders",
    wnids: Iterable[str] | None = None,
    ground_truth: Literal["csv", "devkit"] | None = None,
) -> Path:
    """A fake ImageNet-1k root holding every file of the study's imgnetdogs lists (or only those of ``wnids``).

    ``val_layout="flat"`` puts val images directly in ``val/``. ``ground_truth`` also writes the
    official val labels: ``"csv"`` -> ``root/LOC_val_solution.csv``; ``"devkit"`` ->
    ``root/devkit/data/ILSVRC2012_validation_ground_truth.txt`` + ``meta.mat``. A non-dog class and
    a stray val image are added so that prepare must pick the listed files only.
    """
    root = Path(root)
    keep = set(wnids) if wnids is not None else None
    linker = _Linker(tiny_jpeg(root / "seed.jpg"))
    test = study_list("imgnetdogs", "test")
    for split in ("train", "test"):
        for rec in study_list("imgnetdogs", split) if split == "train" else test:
            parts = Path(rec["img_path"]).parts  # (train|val, wnid, file)
            if keep is not None and parts[1] not in keep:
                continue
            if split == "test" and val_layout == "flat":
                linker.place(root / "val" / parts[2])
            else:
                linker.place(root / rec["img_path"])
    linker.place(root / "train" / OTHER_WNID / f"{OTHER_WNID}_1.JPEG")
    stray = "ILSVRC2012_val_00000001.JPEG"  # not a dog image; the real val/ holds 50,000
    linker.place(root / "val" / stray if val_layout == "flat" else root / "val" / OTHER_WNID / stray)
    if ground_truth is not None:
        truth = {Path(r["img_path"]).stem: Path(r["img_path"]).parts[1] for r in test}
        truth["ILSVRC2012_val_00000001"] = OTHER_WNID
        write_val_ground_truth(root, truth, ground_truth)
    return root


def write_val_ground_truth(root: Path, truth: dict[str, str], kind: Literal["csv", "devkit"]) -> Path:
    """Write ImageNet val labels ``{image_id: wnid}`` as Kaggle's csv or as the devkit's txt + meta.mat; returns the file to pass."""
    if kind == "csv":
        path = root / "LOC_val_solution.csv"
        rows = [f"{image_id},{wnid} 1 2 30 40" for image_id, wnid in sorted(truth.items())]
        path.write_text("ImageId,PredictionString\n" + "\n".join(rows) + "\n")
        return path
    from scipy.io import savemat

    wnids = sorted(set(truth.values()))
    ids = {w: i for i, w in enumerate(wnids, 1)}
    synsets = np.array([(ids[w], w) for w in wnids], dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O")])
    data = root / "devkit" / "data"
    data.mkdir(parents=True, exist_ok=True)
    savemat(str(data / "meta.mat"), {"synsets": synsets.reshape(-1, 1)})
    numbered = {int(k.rsplit("_", 1)[1]): ids[w] for k, w in truth.items()}
    # One line per val image 1..50,000 as in the devkit; unlisted images get the first class.
    lines = [str(numbered.get(n, 1)) for n in range(1, 50_001)]
    path = data / "ILSVRC2012_validation_ground_truth.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def make_compcars_root(root: Path, train_per_model: int = 1) -> Path:
    """A fake CompCars-S root: every file of the study's test list plus ``train_per_model`` more images per model.

    A make that is not in the world is added too; prepare must ignore it.
    """
    root = Path(root)
    linker = _Linker(tiny_jpeg(root / "seed.jpg"))
    year_of: dict[str, Path] = {}
    for rec in study_list("compcars-s", "test"):
        path = root / rec["img_path"]
        linker.place(path)
        year_of.setdefault(rec["fine_label"], path.parent)
    for model in builtin_world("compcars-s").fine:
        for k in range(train_per_model):
            linker.place(year_of[model.name] / f"train_{k}.jpg")
    linker.place(root / "Trabant" / "Trabant 601" / "1980" / "a.jpg")
    return root


# ---- the zero-shot suite, each in torchvision's layout ----------------------------------------------------------


def _colour(i: int) -> tuple[int, int, int]:
    return (40 * i % 256, 90, 200 - 30 * i % 200)


def make_food101(root: Path, n_classes: int = 3, per_class: int = 2) -> Path:
    """``root/food-101`` with images/<class>/<id>.jpg and meta/test.json + test.txt for the first ``n_classes`` classes."""
    base = Path(root) / "food-101"
    folders = [n.replace(" ", "_") for n in class_names("food101")[:n_classes]]
    ids = {f: [f"{f}/{100 + k}" for k in range(per_class)] for f in folders}
    for c, f in enumerate(folders):
        for image_id in ids[f]:
            tiny_jpeg(base / "images" / f"{image_id}.jpg", _colour(c))
    tiny_jpeg(base / "images" / folders[0] / "999.jpg")  # a train image: not in the test list
    (base / "meta").mkdir(parents=True)
    (base / "meta" / "test.json").write_text(json.dumps(ids))
    (base / "meta" / "test.txt").write_text("".join(f"{i}\n" for f in folders for i in ids[f]))
    return Path(root)


def make_flowers102(root: Path, labels: Iterable[int] = (1, 5, 102, 77, 1, 3), test: Iterable[int] = (2, 3, 5)) -> Path:
    """``root/flowers-102`` with jpg/image_<n>.jpg, imagelabels.mat (1-based ``labels``) and setid.mat (``test`` ids)."""
    from scipy.io import savemat

    base = Path(root) / "flowers-102"
    labels, test = list(labels), list(test)
    for n in range(1, len(labels) + 1):
        tiny_jpeg(base / "jpg" / f"image_{n:05d}.jpg", _colour(n))
    savemat(str(base / "imagelabels.mat"), {"labels": np.array([labels], dtype=np.uint8)})
    others = [n for n in range(1, len(labels) + 1) if n not in test]
    savemat(str(base / "setid.mat"), {"trnid": np.array([others[:1]]), "valid": np.array([others[1:]]), "tstid": np.array([test])})
    return Path(root)


def make_caltech101(root: Path, per_class: int = 1, skip: Iterable[str] = ()) -> Path:
    """``root/caltech101/101_ObjectCategories/<folder>/image_000k.jpg`` for all 102 folders but ``skip``."""
    cats = Path(root) / "caltech101" / "101_ObjectCategories"
    for c, folder in enumerate(caltech_folders()):
        if folder in skip:
            continue
        for k in range(1, per_class + 1):
            tiny_jpeg(cats / folder / f"image_{k:04d}.jpg", _colour(c))
    return Path(root)


PET_TEST = ("Abyssinian_201", "Egyptian_Mau_12", "american_pit_bull_terrier_3", "yorkshire_terrier_9")


def make_oxford_pet(root: Path, image_ids: Iterable[str] = PET_TEST) -> Path:
    """``root/oxford-iiit-pet`` with images/<id>.jpg and annotations/test.txt listing ``image_ids``."""
    base = Path(root) / "oxford-iiit-pet"
    lines = []
    for k, image_id in enumerate(image_ids):
        tiny_jpeg(base / "images" / f"{image_id}.jpg", _colour(k))
        lines.append(f"{image_id} {k + 1} 1 {k + 1}")  # ids are not read: the breed comes from the name
    (base / "annotations").mkdir(parents=True)
    (base / "annotations" / "test.txt").write_text("\n".join(lines) + "\n")
    return Path(root)


def make_cifar100(root: Path, fine_labels: Iterable[int] = (0, 99, 42, 7, 0)) -> Path:
    """``root/cifar-100-python/test``: a pickled batch of random 32x32 images with ``fine_labels``."""
    labels = list(fine_labels)
    rng = np.random.default_rng(0)
    batch = {
        "batch_label": "testing batch 1 of 1",
        "filenames": [f"img_{k}.png" for k in range(len(labels))],
        "fine_labels": labels,
        "coarse_labels": [0] * len(labels),
        "data": rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8),
    }
    base = Path(root) / "cifar-100-python"
    base.mkdir(parents=True)
    with (base / "test").open("wb") as f:
        pickle.dump(batch, f, protocol=2)
    return Path(root)


def make_stanford_cars(root: Path, classes: Iterable[int] = (1, 196, 14, 1)) -> Path:
    """``root/stanford_cars`` with cars_test/<nnnnn>.jpg and cars_test_annos_withlabels.mat (1-based ``classes``)."""
    from scipy.io import savemat

    base = Path(root) / "stanford_cars"
    rows = []
    for k, c in enumerate(classes, 1):
        fname = f"{k:05d}.jpg"
        tiny_jpeg(base / "cars_test" / fname, _colour(k))
        rows.append((1, 2, 7, 7, c, fname))
    fields = [(n, "O") for n in ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname")]
    savemat(str(base / "cars_test_annos_withlabels.mat"), {"annotations": np.array(rows, dtype=fields).reshape(1, -1)})
    (base / "devkit").mkdir()
    return Path(root)


# ---- a user's own world, in the study's jsonl format ------------------------------------------------------------
DOGS = (("terrier", "border terrier"), ("terrier", "cairn terrier"), ("retriever", "golden retriever"), ("retriever", "labrador retriever"))
DOGS_YAML = ("name: dogs\ncoarse: [terrier, retriever]\nfine:\n"
             "  - {name: border terrier, parent: terrier, aliases: [border]}\n  - {name: cairn terrier, parent: terrier}\n"
             "  - {name: golden retriever, parent: retriever, aliases: [golden]}\n  - {name: labrador retriever, parent: retriever}\n"
             "levels: {difficult: [golden retriever]}\n")


def make_jsonl_world(root: Path, test_fine: Iterable[str] | None = None, train: int = 4, test: int = 2,
                     size: int = 16) -> tuple[Path, Path]:
    """A four-concept dogs world in ``root`` (``train``/``test`` random ``size``-pixel images per concept); returns (root, hierarchy file).

    ``test_fine``: the only concepts the test split holds (default: all four). The hierarchy
    (``root/world.yaml``) gives "border" and "golden" as aliases and names a ``difficult`` level.
    """
    root = Path(root)
    keep = set(test_fine) if test_fine is not None else None
    rng = np.random.default_rng(0)
    (root / "img").mkdir(parents=True)
    for split, n in (("train", train), ("test", test)):
        lines = []
        for k, (coarse, fine) in enumerate(DOGS):
            if split == "test" and keep is not None and fine not in keep:
                continue
            for i in range(n):
                name = f"{split}_{k}_{i}.png"
                Image.fromarray((rng.random((size, size, 3)) * 255).astype("uint8")).save(root / "img" / name)
                lines.append(json.dumps({"img_path": f"img/{name}", "coarse_label": coarse, "fine_label": fine}))
        (root / f"{split}.jsonl").write_text("".join(line + "\n" for line in lines))
    hierarchy = root / "world.yaml"
    hierarchy.write_text(DOGS_YAML)
    return root, hierarchy


def make_fashion_jsonl(root: Path, train: int = 20, test: int = 20) -> tuple[Path, Path]:
    """The first ``train`` / ``test`` Fashion-MNIST images of each class as a jsonl world of your own; returns (root, hierarchy file).

    The hierarchy is the built-in fashion world's file, so the embedded mini-CLIP knows these
    concepts as it knows Fashion-MNIST, while an evaluation reads ``10 * test`` images instead of 10,000.
    """
    from ktmu.data import load_dataset

    root = Path(root)
    (root / "img").mkdir(parents=True)
    for split, n in (("train", train), ("test", test)):
        data = load_dataset("fashion", split)
        world = data.hierarchy
        parents = world.fine_to_coarse()
        lines = []
        for f, name in enumerate(world.fine_names):
            for i in np.flatnonzero(data.fine_labels == f)[:n]:
                Image.fromarray(data.images[i]).save(root / "img" / f"{split}_{i}.png")
                lines.append(json.dumps({"img_path": f"img/{split}_{i}.png", "coarse_label": world.coarse_names[parents[f]], "fine_label": name}))
        (root / f"{split}.jsonl").write_text("".join(line + "\n" for line in lines))
    hierarchy = root / "fashion.yaml"
    shutil.copyfile(Path(ktmu.__file__).parent / "worlds" / "fashion.yaml", hierarchy)  # aliases, templates and levels as shipped
    return root, hierarchy


# ---- the real command ----------------------------------------------------------------------------------------------
def ktmu_env(**extra: str) -> dict[str, str]:
    """The environment of a test's subprocess: this one's, one thread (the suite shares the CPU), the Hugging Face hub offline."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", **extra}


@contextmanager
def subprocess_threads() -> Iterator[None]:
    """This process's torch at a subprocess's one thread (:func:`ktmu_env`), for runs that must match one bit for bit.

    Adam turns the float rounding of a reduction split over another number of threads into steps of the
    full learning rate on weights whose gradient is ~0: trained on two threads and on one, the same run's
    weights differ by up to ~2 lr (its numbers do not).
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_ktmu(args: list[str], timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    """``python -m ktmu ARGS`` in a subprocess, to its end: stderr as a user sees it, results.json with the real command line."""
    return subprocess.run([sys.executable, "-m", "ktmu", *args], capture_output=True, text=True, timeout=timeout, env=ktmu_env(**env))


def start_ktmu(args: list[str], **env: str) -> subprocess.Popen:
    """The same command started and left running (e.g. to be killed); ``.communicate()`` collects its output."""
    return subprocess.Popen([sys.executable, "-m", "ktmu", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=ktmu_env(**env))


# ---- what a command left behind ------------------------------------------------------------------------------------
TIMING_KEYS = frozenset({"train_seconds", "seconds", "git_commit", "date"})  # keys of results.json that differ between identical runs (date: a ledger request's)


def nothing_written(out: Path) -> bool:
    """``out`` absent, or the empty folder a command made to check that it can write there."""
    out = Path(out)
    return not out.exists() or (out.is_dir() and not any(out.iterdir()))


def comparable(obj: Any, out: Path) -> Any:
    """A results.json value without its timing keys, its --out path replaced by "OUT" and NaN made equal to NaN."""
    if isinstance(obj, dict):
        return {k: comparable(v, out) for k, v in obj.items() if k not in TIMING_KEYS}
    if isinstance(obj, list):
        return [comparable(v, out) for v in obj]
    if isinstance(obj, str):
        return obj.replace(str(out), "OUT")
    if isinstance(obj, float) and math.isnan(obj):
        return "nan"
    return obj


def kill_when(proc: Any, path: Path, what: str, timeout: float = 240) -> None:
    """SIGKILL a ``start_ktmu`` process as soon as ``path`` exists (failing if it exits first or ``what`` never happens)."""
    import signal
    import time

    deadline = time.time() + timeout
    while not path.is_file():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.time() < deadline, f"never {what}"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
