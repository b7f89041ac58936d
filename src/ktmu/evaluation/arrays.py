"""Small array helpers shared by the audit probes."""
from __future__ import annotations

from typing import Any

import numpy as np


def as_numpy(x: Any, dtype: Any = None) -> np.ndarray:
    """``x`` (a torch tensor, array or sequence) as a numpy array, detached and on the CPU."""
    if hasattr(x, "detach"):  # a torch tensor: no import of torch needed for numpy callers
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def class_set(forgotten: Any, num_classes: int, what: str = "forgotten") -> np.ndarray:
    """Sorted unique class indices from indices or a (num_classes,) boolean mask; checked against ``num_classes``."""
    arr = as_numpy(forgotten)
    if arr.dtype == bool:
        if arr.shape != (num_classes,):
            raise ValueError(f"the {what} mask has shape {arr.shape}; expected ({num_classes},), one entry per fine class.")
        return np.flatnonzero(arr)
    idx = np.unique(arr.astype(int).ravel())
    if idx.size and (idx.min() < 0 or idx.max() >= num_classes):
        raise ValueError(f"{what} classes {idx.tolist()} are outside 0..{num_classes - 1}.")
    return idx
