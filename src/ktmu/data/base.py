"""The dataset contract: every adapter yields ``(image, coarse_index, fine_index)`` under one hierarchy."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
import numpy as np
import torch
from PIL import Image

from ktmu.concepts import Hierarchy
from ktmu.errors import KtmuError

SPLITS = ("train", "test")


class DatasetError(KtmuError, ValueError):
    """A dataset that cannot be read; the message names the file or setting at fault."""


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}.")
    return split


class ConceptDataset(torch.utils.data.Dataset):
    """A labelled image split of one concept world.

    Subclasses provide ``fine_labels`` (one fine index per item) and ``load_image(i)``;
    coarse labels always follow from the hierarchy, so they can never disagree with it.
    """

    hierarchy: Hierarchy
    split: str
    fine_labels: np.ndarray

    def load_image(self, i: int) -> Image.Image:
        raise NotImplementedError

    @property
    def coarse_labels(self) -> np.ndarray:
        return np.asarray(self.hierarchy.fine_to_coarse(), dtype=np.int64)[self.fine_labels]

    def __len__(self) -> int:
        return len(self.fine_labels)

    def __getitem__(self, i: int) -> tuple[Image.Image, int, int]:
        fine = int(self.fine_labels[i])
        return self.load_image(i), int(self.coarse_labels[i]), fine


@dataclass
class ArrayDataset(ConceptDataset):
    """Images held in memory as a uint8 array of shape (N, H, W) (grey) or (N, H, W, 3)."""

    hierarchy: Hierarchy
    split: str
    images: np.ndarray
    fine_labels: np.ndarray

    def __post_init__(self) -> None:
        if len(self.images) != len(self.fine_labels):
            raise DatasetError(f"{len(self.images)} images but {len(self.fine_labels)} labels.")
        self.fine_labels = np.asarray(self.fine_labels, dtype=np.int64)

    def load_image(self, i: int) -> Image.Image:
        return Image.fromarray(self.images[i])


@dataclass
class FileDataset(ConceptDataset):
    """Images read from files on demand; a missing or corrupt file is an error naming it."""

    hierarchy: Hierarchy
    split: str
    paths: list[Path]
    fine_labels: np.ndarray

    def __post_init__(self) -> None:
        self.fine_labels = np.asarray(self.fine_labels, dtype=np.int64)
        missing = [p for p in self.paths if not p.is_file()]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise DatasetError(f"image file {missing[0]} does not exist{more}.")

    def load_image(self, i: int) -> Image.Image:
        path = self.paths[i]
        try:
            with Image.open(path) as im:
                im.load()
                return im.convert("RGB")
        except (OSError, SyntaxError, ValueError) as e:
            raise DatasetError(f"cannot read image file {path}: {e}") from e
