"""Streamed, preprocessed images of a split: labels precomputed once, pixels read batch by batch.

Large splits (files on disk, 224-px images) are never held as one tensor: a ``torch.utils.data``
DataLoader reads and preprocesses the chosen items batch by batch (with worker processes if asked).
Small in-memory splits (the embedded 28-px worlds) are preprocessed once into a cache, because
re-running PIL transforms on 10,000 tiny images for every evaluation would cost more than the model.
"""
from __future__ import annotations

from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from ktmu.data.base import ArrayDataset, ConceptDataset

CACHE_MB = 256  # in-memory splits whose preprocessed pixels fit in this many MB are cached (the embedded worlds: 31 MB)


class ImageSource(torch.utils.data.Dataset):
    """The chosen items of a split, preprocessed on access; position ``i`` is item ``indices[i]``."""

    def __init__(self, dataset: ConceptDataset, preprocess: Callable[[Image.Image], torch.Tensor], indices: Sequence[int] | np.ndarray | None = None) -> None:
        self.dataset = dataset
        self.preprocess = preprocess
        self.indices = np.arange(len(dataset)) if indices is None else np.asarray(indices, dtype=np.int64)
        self.fine = torch.as_tensor(dataset.fine_labels[self.indices])
        self.coarse = torch.as_tensor(dataset.coarse_labels[self.indices])

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.preprocess(self.dataset.load_image(int(self.indices[i])))

    def images(self, positions: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """The preprocessed images at ``positions``, stacked (for small batches)."""
        return torch.stack([self[int(i)] for i in positions])


class CachedImageSource(ImageSource):
    """An :class:`ImageSource` whose preprocessed pixels are computed once and kept (small in-memory splits only)."""

    def __init__(self, dataset: ConceptDataset, preprocess: Callable[[Image.Image], torch.Tensor], indices=None, progress: bool = False) -> None:
        super().__init__(dataset, preprocess, indices)
        it = tqdm(range(len(self.indices)), desc=f"preprocess {dataset.hierarchy.name}", leave=False, disable=not progress)
        self.tensor = torch.stack([super(CachedImageSource, self).__getitem__(i) for i in it]) if len(self.indices) else torch.empty(0)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.tensor[i]

    def images(self, positions: Sequence[int] | torch.Tensor) -> torch.Tensor:
        return self.tensor[torch.as_tensor(positions, dtype=torch.long)]


def image_source(dataset: ConceptDataset, preprocess, indices: Sequence[int] | np.ndarray | None = None, cache_mb: float = CACHE_MB, progress: bool = False) -> ImageSource:
    """A streamed source, or a cached one when the split is already in memory and its preprocessed pixels are small."""
    n = len(dataset) if indices is None else len(indices)
    if isinstance(dataset, ArrayDataset) and n:
        first = preprocess(dataset.load_image(int(0 if indices is None else indices[0])))
        if first.numel() * first.element_size() * n <= cache_mb * 2**20:
            return CachedImageSource(dataset, preprocess, indices, progress=progress)
    return ImageSource(dataset, preprocess, indices)


def iter_batches(
    source: ImageSource,
    batches: Sequence[Sequence[int]],
    device: torch.device | str = "cpu",
    workers: int = 0,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(images on device, positions)`` for each list of positions, in order.

    Cached sources are sliced directly; streamed ones go through a DataLoader whose batch sampler
    is exactly ``batches``, so workers prefetch while the model runs and memory holds a few batches.
    """
    device = torch.device(device)
    batches = [list(map(int, b)) for b in batches if len(b)]
    if isinstance(source, CachedImageSource):
        for b in batches:
            yield source.images(b).to(device, non_blocking=True), torch.as_tensor(b)
        return
    loader = torch.utils.data.DataLoader(
        source,
        batch_sampler=batches,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )
    for images, b in zip(loader, batches):
        yield images.to(device, non_blocking=True), torch.as_tensor(b)


def chunked(positions: Sequence[int] | np.ndarray | torch.Tensor, size: int) -> list[list[int]]:
    """Consecutive chunks of ``size`` positions."""
    pos = [int(p) for p in positions]
    return [pos[i : i + size] for i in range(0, len(pos), size)]
