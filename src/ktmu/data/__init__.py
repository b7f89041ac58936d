"""Dataset adapters, registered by name. Each loader is ``load(split, ...) -> ConceptDataset``."""
from __future__ import annotations

from typing import Any, Callable

from ktmu.registry import Registry
from ktmu.data.base import ArrayDataset, ConceptDataset, DatasetError, FileDataset

DATASETS: Registry[Callable[..., ConceptDataset]] = Registry("dataset")
DATASETS.register("fashion", "ktmu.data.fashion:load_fashion")
DATASETS.register("digits", "ktmu.data.digits:load_digits")
DATASETS.register("jsonl", "ktmu.data.jsonl:load_jsonl")
DATASETS.register("imagefolder", "ktmu.data.imagefolder:load_imagefolder")
DATASETS.register("imgnetdogs", "ktmu.data.study_worlds:load_imgnetdogs")
DATASETS.register("compcars-s", "ktmu.data.study_worlds:load_compcars_s")


def load_dataset(name: str, split: str, **kwargs: Any) -> ConceptDataset:
    """Load split ``split`` of the dataset registered as ``name``."""
    return DATASETS.get(name)(split=split, **kwargs)


__all__ = ["ArrayDataset", "ConceptDataset", "DATASETS", "DatasetError", "FileDataset", "load_dataset"]
