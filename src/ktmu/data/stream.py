"""Streamed, preprocessed images of a split: labels precomputed once, pixels read batch by batch.

Large splits (files on disk, 224-px images) are never held as one tensor: a ``torch.utils.data``
DataLoader reads and preprocesses the chosen items batch by batch (with worker processes if asked).
Small in-memory splits (the embedded 28-px worlds) are preprocessed once into a cache, because
re-running PIL transforms on 10,000 tiny images for every evaluation would cost more than the model.

With worker processes, a source keeps one DataLoader with persistent workers for all its passes
(every evaluation, every epoch's checkpoint scoring), so the workers start once per source, not once
per pass; :meth:`ImageSource.close` stops them. A source built with a split preprocess
(:mod:`ktmu.data.device_preprocess`, ``--image-pipeline device``) holds uint8 images, copied from
pinned memory on CUDA and scaled and normalised where the batch lands.
"""
from __future__ import annotations

from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from ktmu.data.base import ArrayDataset, ConceptDataset
from ktmu.data.device_preprocess import DevicePreprocess, finish

CACHE_MB = 256  # in-memory splits whose preprocessed pixels fit in this many MB are cached (the embedded worlds: 31 MB)


class _Batches:
    """The batch sampler of a source's persistent DataLoader: the batches of the pass under way (set before each pass)."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class ImageSource(torch.utils.data.Dataset):
    """The chosen items of a split, preprocessed on access; position ``i`` is item ``indices[i]``."""

    def __init__(self, dataset: ConceptDataset, preprocess: Callable[[Image.Image], torch.Tensor], indices: Sequence[int] | np.ndarray | None = None) -> None:
        self.dataset = dataset
        self.preprocess = preprocess
        self.indices = np.arange(len(dataset)) if indices is None else np.asarray(indices, dtype=np.int64)
        self.fine = torch.as_tensor(dataset.fine_labels[self.indices])
        self.coarse = torch.as_tensor(dataset.coarse_labels[self.indices])
        self._loader: tuple[tuple[int, bool], torch.utils.data.DataLoader, _Batches] | None = None  # (workers, pinned), loader, sampler
        self._loader_busy = False  # a pass is iterating the persistent loader: a nested pass gets a loader of its own

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.preprocess(self.dataset.load_image(int(self.indices[i])))

    def images(self, positions: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """The preprocessed images at ``positions``, stacked (for small batches; uint8 under a split preprocess, see :meth:`finish`)."""
        return torch.stack([self[int(i)] for i in positions])

    def finish(self, images: torch.Tensor) -> torch.Tensor:
        """A batch of this source as the model takes it: scaled and normalised here when the source holds uint8 images."""
        return finish(self.preprocess, images)

    @property
    def on_device(self) -> bool:
        """Whether this source's images are scaled and normalised on the device (a split preprocess)."""
        return isinstance(self.preprocess, DevicePreprocess)

    def loader(self, batches: list[list[int]], workers: int, pin: bool) -> torch.utils.data.DataLoader:
        """This source's persistent DataLoader (``workers`` > 0) set to ``batches``; built, and its workers started, on first use.

        A fresh DataLoader draws its workers' base seed from torch's global generator each pass; a
        persistent one draws it once, so each later pass draws one number too and the global random
        stream is what one DataLoader per pass left it (training dropout reads that stream).
        """
        key = (workers, pin)
        if self._loader is not None and self._loader[0] != key:
            self.close()
        if self._loader is None:
            sampler = _Batches()
            loader = torch.utils.data.DataLoader(self, batch_sampler=sampler, num_workers=workers, pin_memory=pin, persistent_workers=True)
            self._loader = (key, loader, sampler)
        elif self._loader[1]._iterator is not None:
            torch.empty((), dtype=torch.int64).random_()  # the draw a fresh DataLoader's pass makes (see above)
        self._loader[2].batches = batches
        return self._loader[1]

    def close(self) -> None:
        """Stop the worker processes of this source's persistent DataLoader, if it has one; a later pass starts new ones."""
        if self._loader is not None:
            iterator = self._loader[1]._iterator
            self._loader = None
            if iterator is not None:
                iterator._shutdown_workers()

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_loader": None, "_loader_busy": False}  # a worker process gets the data, not the loader


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
    is exactly ``batches``, so workers prefetch while the model runs and memory holds a few batches
    (with ``workers``, the source's persistent one: :meth:`ImageSource.loader`). Images come out as
    the model takes them, whichever half of the preprocessing ran where (:meth:`ImageSource.finish`).
    """
    device = torch.device(device)
    batches = [list(map(int, b)) for b in batches if len(b)]
    pin = device.type == "cuda"
    if isinstance(source, CachedImageSource):
        for b in batches:
            images = source.images(b)
            if pin and source.on_device:  # uint8 batches copied asynchronously, from pinned memory
                images = images.pin_memory()
            yield source.finish(images.to(device, non_blocking=True)), torch.as_tensor(b)
        return
    persistent = workers > 0 and not source._loader_busy
    if persistent:
        loader = source.loader(batches, workers, pin)
    else:
        loader = torch.utils.data.DataLoader(source, batch_sampler=batches, num_workers=workers, pin_memory=pin, persistent_workers=False)
    source._loader_busy = source._loader_busy or persistent
    try:
        for images, b in zip(loader, batches):
            yield source.finish(images.to(device, non_blocking=True)), torch.as_tensor(b)
    finally:
        if persistent:
            source._loader_busy = False


def chunked(positions: Sequence[int] | np.ndarray | torch.Tensor, size: int) -> list[list[int]]:
    """Consecutive chunks of ``size`` positions."""
    pos = [int(p) for p in positions]
    return [pos[i : i + size] for i in range(0, len(pos), size)]
