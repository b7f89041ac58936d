"""Image preprocessing split in two: decode, resize and crop to uint8 on the host; scale and normalise on the device.

A backbone's preprocess is a torchvision chain ``[PIL steps...] + ToTensor + [Normalize]`` (open_clip
and Hugging Face: resize, centre crop, RGB; mini-clip and tiny-clip: grey levels, resize). Its PIL
steps already work in 8 bits per channel, so the image ``ToTensor`` receives is a uint8 array; the
split keeps every PIL step on the host (in the DataLoader workers) and ends it there with that uint8
array, CHW, a quarter of the float32 bytes. :meth:`DevicePreprocess.finish` then does what
``ToTensor``'s scaling and ``Normalize`` did, with the same float32 operations in the same order,
wherever the batch is (the GPU after the copy): on the CPU the two paths give bitwise equal tensors.

Centre crops stay on the host: the images of a batch have one size only after the crop, and cropping
first moves fewer bytes. ``--image-pipeline device`` (:data:`IMAGE_PIPELINES`) turns the split on.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from PIL import Image
from torchvision import transforms

from ktmu.data.base import DatasetError

IMAGE_PIPELINES = ("host", "device")  # where images are scaled and normalised: host (as ever, the default) or device
_WIDE_MODES = ("I", "I;16", "F")  # PIL modes of more than 8 bits per channel, which ToTensor does not scale by 1/255


class DevicePreprocess:
    """The host half of a split preprocess (PIL image -> uint8 CHW tensor) and, in :meth:`finish`, its device half.

    ``full`` is the chain it was split from (``--image-pipeline host`` goes back to it); ``steps``
    its PIL steps before ``ToTensor``; ``mean`` and ``std`` its ``Normalize`` (None: it had none).
    Picklable, like the chain, for DataLoader workers.
    """

    def __init__(self, full: transforms.Compose, steps: list[Callable], mean: list[float] | None, std: list[float] | None) -> None:
        self.full = full
        self.steps = transforms.Compose(steps)
        self.mean, self.std = mean, std
        self._stats: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # mean and std per device: no copy to the device per batch

    @property
    def transforms(self) -> list[Any]:
        """The whole chain's steps (what code that reads a preprocess's sizes looks at)."""
        return list(self.full.transforms)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """The uint8 (C, H, W) image the chain's ``ToTensor`` would have scaled."""
        pic = self.steps(image)
        if pic.mode in _WIDE_MODES:
            raise DatasetError(f"an image of PIL mode {pic.mode!r} (more than 8 bits per channel) cannot go through the device image "
                               "pipeline, which moves 8-bit images; run with --image-pipeline host.")
        arr = np.array(pic, np.uint8, copy=True)
        if pic.mode == "1":  # as ToTensor: a bilevel image's True is 255
            arr *= 255
        return torch.from_numpy(arr).view(pic.size[1], pic.size[0], -1).permute(2, 0, 1).contiguous()

    def finish(self, images: torch.Tensor) -> torch.Tensor:
        """Model input from a uint8 batch (N, C, H, W) or image: ``ToTensor``'s scaling and ``Normalize``, where ``images`` are."""
        x = images.to(torch.get_default_dtype()).div(255)  # ToTensor: float, then / 255
        if self.mean is None:
            return x
        mean, std = self._stats_on(x)
        return x.sub_(mean).div_(std)  # Normalize: the same two operations

    def _stats_on(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        key = f"{x.device}/{x.dtype}"
        if key not in self._stats:
            view = lambda v: torch.as_tensor(v, dtype=x.dtype, device=x.device).view(-1, 1, 1)  # noqa: E731 - as Normalize shapes them
            self._stats[key] = (view(self.mean), view(self.std))
        return self._stats[key]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_stats": {}}  # a worker process gets no device tensors

    def __repr__(self) -> str:
        return f"DevicePreprocess(host={self.steps!r}, mean={self.mean}, std={self.std})"


def split_preprocess(preprocess: Callable) -> DevicePreprocess | None:
    """``preprocess`` split into host and device halves, or None when it is not ``Compose([PIL steps...], ToTensor, [Normalize])``.

    Any other preprocess (a function, transforms v2, steps after ``Normalize``, two ``ToTensor``)
    cannot be split safely; it keeps the host path: every step on the host, as before, and no error.
    """
    if isinstance(preprocess, DevicePreprocess):
        return preprocess
    if not isinstance(preprocess, transforms.Compose):
        return None
    steps = list(preprocess.transforms)
    at = [i for i, t in enumerate(steps) if isinstance(t, transforms.ToTensor)]
    if len(at) != 1:
        return None
    tail = steps[at[0] + 1 :]
    if len(tail) > 1 or (tail and not isinstance(tail[0], transforms.Normalize)):
        return None
    mean, std = (None, None) if not tail else ([float(v) for v in tail[0].mean], [float(v) for v in tail[0].std])
    if std is not None and not all(std):
        return None  # Normalize itself refuses a zero std: leave that error where it was
    return DevicePreprocess(preprocess, steps[: at[0]], mean, std)


def pipeline_preprocess(preprocess: Callable, pipeline: str) -> Callable:
    """The preprocess a source uses under ``pipeline``: ``host`` the whole chain, ``device`` its split when it has one.

    ``device`` on a preprocess :func:`split_preprocess` cannot split gives the whole chain back: those
    images are preprocessed on the host as before. ``pipeline`` is checked by the caller (one of
    :data:`IMAGE_PIPELINES`).
    """
    if isinstance(preprocess, DevicePreprocess):
        return preprocess.full if pipeline == "host" else preprocess
    return preprocess if pipeline == "host" else split_preprocess(preprocess) or preprocess


def finish(preprocess: Callable, images: torch.Tensor) -> torch.Tensor:
    """``images`` as the model takes them: :meth:`DevicePreprocess.finish` for a split preprocess's uint8 images, else unchanged."""
    return preprocess.finish(images) if isinstance(preprocess, DevicePreprocess) else images
