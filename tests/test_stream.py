"""Streamed data: large splits are read batch by batch, never materialised; small in-memory ones are cached once."""
import numpy as np
import torch
from PIL import Image

from ktmu.data import ConceptDataset
from ktmu.data.stream import CachedImageSource, ImageSource, chunked, image_source, iter_batches
from ktmu.evaluation.zero_shot import ZeroShotEvaluator


class CountingDataset(ConceptDataset):
    """A split read from 'disk' that counts every image it hands out."""

    def __init__(self, hierarchy, n):
        self.hierarchy, self.split = hierarchy, "test"
        self.fine_labels = np.arange(n) % len(hierarchy.fine)
        self.loads = 0

    def load_image(self, i):
        self.loads += 1
        return Image.fromarray(np.full((28, 28), 40 * (i % 4), dtype=np.uint8))


def test_file_splits_stream_in_batches_and_are_never_materialised(tiny_backbone, toy_world):
    ds = CountingDataset(toy_world, 20)
    ev = ZeroShotEvaluator(ds, tiny_backbone.preprocess, batch_size=4)
    assert type(ev.source) is ImageSource and ds.loads == 0  # nothing read up front
    seen = []
    real = tiny_backbone.encode_image
    tiny_backbone.encode_image = lambda x, **k: seen.append(len(x)) or real(x, **k)
    ev.evaluate(tiny_backbone)
    ev.evaluate(tiny_backbone)
    assert ds.loads == 40  # every image read once per evaluation, in batches of at most 4
    assert max(seen) == 4 and sum(seen) == 40
    assert not any(isinstance(v, torch.Tensor) and v.dim() == 4 for v in vars(ev).values())


def test_small_in_memory_splits_are_cached_once(tiny_backbone, toy_train):
    src = image_source(toy_train, tiny_backbone.preprocess)
    assert isinstance(src, CachedImageSource) and src.tensor.shape[0] == len(toy_train)
    tiny = image_source(toy_train, tiny_backbone.preprocess, cache_mb=0)
    assert type(tiny) is ImageSource  # over the budget: streamed like a file split
    a = torch.cat([x for x, _ in iter_batches(src, chunked(range(10), 3))])
    b = torch.cat([x for x, _ in iter_batches(tiny, chunked(range(10), 3))])
    assert torch.equal(a, b)


def test_streamed_batches_keep_positions_and_labels(tiny_backbone, toy_world):
    ds = CountingDataset(toy_world, 12)
    src = image_source(ds, tiny_backbone.preprocess, indices=[11, 3, 5])
    assert src.fine.tolist() == [ds.fine_labels[i] for i in (11, 3, 5)]
    out = list(iter_batches(src, [[2, 0], [1]]))
    assert [p.tolist() for _, p in out] == [[2, 0], [1]]
    assert torch.equal(out[0][0][1], src[0])


def test_workers_give_the_same_features(tiny_backbone, toy_world):
    from ktmu.backbones.encode import embed_source

    ds = CountingDataset(toy_world, 10)
    src = ImageSource(ds, tiny_backbone.preprocess)
    assert torch.allclose(embed_source(tiny_backbone, src, batch_size=4), embed_source(tiny_backbone, src, batch_size=4, workers=2))
