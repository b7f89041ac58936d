"""The device image pipeline (``--image-pipeline device``) and persistent DataLoader workers.

Tolerance of the split: none. Both pipelines resize and crop in PIL, which works on 8-bit images, so
the image ``ToTensor`` receives was already rounded to uint8 on the host path; the split stops
there and its device half runs ``ToTensor``'s ``float / 255`` and ``Normalize``'s ``- mean`` and
``/ std`` as the same float32 operations in the same order. On the CPU the tensors are therefore
bitwise equal (``torch.equal``), and so are the runs built on them.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fakes import make_jsonl_world
from ktmu.cli import main
from ktmu.data import ArrayDataset, load_dataset
from ktmu.data.base import DatasetError
from ktmu.data.device_preprocess import DevicePreprocess, pipeline_preprocess, split_preprocess
from ktmu.data.stream import ImageSource, chunked, image_source, iter_batches


def _images(seed: int) -> list[Image.Image]:
    """Seeded random images of several sizes and modes (RGB, grey, RGBA, palette): what decoding files gives."""
    rng = np.random.default_rng(seed)
    out = [Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)) for h, w in ((300, 200), (97, 251), (224, 224))]
    out.append(Image.fromarray(rng.integers(0, 256, size=(64, 80), dtype=np.uint8)))  # L
    out.append(Image.fromarray(rng.integers(0, 256, size=(50, 70, 4), dtype=np.uint8)))  # RGBA
    out.append(out[0].convert("P"))
    return out


def _open_clip_preprocess():
    import open_clip

    return open_clip.image_transform(224, is_train=False)  # what create_model_and_transforms gives ViT-B-32: resize, crop, RGB, normalise


def _mini_clip_preprocess():
    from ktmu.backbones.mini_clip import MiniClipConfig, preprocess_for

    return preprocess_for(MiniClipConfig())


@pytest.mark.parametrize("make", [_open_clip_preprocess, _mini_clip_preprocess], ids=["open_clip", "mini-clip"])
def test_the_device_half_gives_the_host_paths_tensors_bitwise(make):
    preprocess = make()
    split = split_preprocess(preprocess)
    assert isinstance(split, DevicePreprocess)
    images = _images(0) + [load_dataset("fashion", "test").load_image(i) for i in (0, 1)]
    host = torch.stack([preprocess(im) for im in images])
    uint8 = torch.stack([split(im) for im in images])
    assert uint8.dtype == torch.uint8 and uint8.shape == host.shape
    device = split.finish(uint8)
    assert device.dtype == host.dtype == torch.float32
    assert torch.equal(device, host)  # tolerance 0: see the module docstring
    assert host.abs().max() > 1.5  # normalised (not [0, 1]): the comparison covers Normalize, not only the scaling


def test_a_chain_without_normalize_is_split_too():
    from torchvision import transforms

    chain = transforms.Compose([transforms.Grayscale(3), transforms.Resize((28, 28)), transforms.ToTensor()])  # tiny-clip's
    split = split_preprocess(chain)
    images = _images(1)
    assert split is not None and split.mean is None
    assert torch.equal(split.finish(torch.stack([split(im) for im in images])), torch.stack([chain(im) for im in images]))


def test_a_preprocess_that_cannot_be_split_keeps_the_host_path():
    from torchvision import transforms

    after = transforms.Compose([transforms.ToTensor(), transforms.Normalize([0.5], [0.5]), transforms.Lambda(lambda x: x * 2)])
    for preprocess in (lambda im: torch.zeros(1), after, transforms.Compose([transforms.Resize(8)])):
        assert split_preprocess(preprocess) is None
        assert pipeline_preprocess(preprocess, "device") is preprocess
    split = pipeline_preprocess(_mini_clip_preprocess(), "device")
    assert isinstance(split, DevicePreprocess) and pipeline_preprocess(split, "host") is split.full  # and back
    assert pipeline_preprocess(split, "device") is split  # a session reusing a backbone keeps its sources' preprocess


def test_an_image_wider_than_8_bits_is_refused_by_the_device_half():
    from torchvision import transforms

    split = split_preprocess(transforms.Compose([transforms.ToTensor()]))
    with pytest.raises(DatasetError, match="--image-pipeline host"):
        split(Image.fromarray(np.full((4, 4), 40000, dtype=np.uint16)))


def test_a_cached_source_holds_a_quarter_of_the_bytes_and_yields_the_same_batches():
    test = load_dataset("fashion", "test")
    host_pre = _mini_clip_preprocess()
    host = image_source(test, host_pre, np.arange(300))
    device = image_source(test, pipeline_preprocess(host_pre, "device"), np.arange(300))
    assert device.on_device and not host.on_device
    assert device.tensor.dtype == torch.uint8 and device.tensor.nbytes * 4 == host.tensor.nbytes
    chunks = chunked(range(300), 128)
    for (a, pa), (b, pb) in zip(iter_batches(host, chunks), iter_batches(device, chunks)):
        assert torch.equal(a, b) and torch.equal(pa, pb)


# ---- persistent workers ---------------------------------------------------------------------------

class _WorkerLog(ArrayDataset):
    """An in-memory split whose first image read in each process writes that process's id to ``log``: one line per process started."""

    log: str = ""
    seen: bool = False

    def load_image(self, i: int) -> Image.Image:
        if not self.seen:  # a forked worker starts with the parent's False: the parent never reads through here
            self.seen = True
            with open(self.log, "a") as f:
                f.write(f"{os.getpid()}\n")
        return super().load_image(i)


def _logged_source(tmp_path: Path, n: int = 40) -> tuple[ImageSource, Path]:
    test = load_dataset("fashion", "test")
    data = _WorkerLog(test.hierarchy, "test", test.images[:n], test.fine_labels[:n])
    data.log = str(tmp_path / "workers.log")
    return ImageSource(data, pipeline_preprocess(_tiny_backbone().preprocess, "device")), tmp_path / "workers.log"


def _starts(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def test_a_source_evaluated_twice_starts_its_workers_once(tmp_path):
    from ktmu.backbones.encode import embed_source

    source, log = _logged_source(tmp_path)
    backbone = _tiny_backbone()
    feats = [embed_source(backbone, source, batch_size=16, workers=1) for _ in range(2)]
    assert _starts(log) == 1  # one worker process for both evaluations (a DataLoader per pass: 2)
    assert torch.equal(feats[0], feats[1]) and len(feats[0]) == len(source)
    source.close()  # stops it: the next pass starts a new one, which the log sees
    embed_source(backbone, source, batch_size=16, workers=1)
    assert _starts(log) == 2
    source.close()
    assert int(log.read_text().split()[0]) != os.getpid()  # the reads happened in a worker, not here


def test_persistent_workers_leave_the_global_random_stream_as_a_loader_per_pass_does(tmp_path):
    """Each DataLoader pass draws one number from torch's global generator; the persistent loader keeps that."""
    source, _ = _logged_source(tmp_path)
    batches = chunked(range(len(source)), 16)
    torch.manual_seed(7)
    for _ in range(3):
        list(iter_batches(source, batches, workers=1))
    after = torch.rand(4)
    source.close()
    torch.manual_seed(7)
    for _ in range(3):
        torch.utils.data.DataLoader(source, batch_sampler=batches, num_workers=0)._get_iterator()  # one fresh pass's draws
    assert torch.equal(after, torch.rand(4))


def test_nested_passes_over_one_source_each_get_their_images(tmp_path):
    source, log = _logged_source(tmp_path)
    batches = chunked(range(len(source)), 8)
    expected = [source.finish(source.images(b)) for b in batches]
    for (a, _), (b, _), want in zip(iter_batches(source, batches, workers=1), iter_batches(source, batches[::-1], workers=1), expected):
        assert torch.equal(a, want)
    again = [x for x, _ in iter_batches(source, batches, workers=1)]  # the persistent loader after the nested pass
    assert all(torch.equal(a, b) for a, b in zip(again, expected))
    source.close()


def _tiny_backbone():
    from ktmu.backbones import load_backbone

    return load_backbone("tiny-clip", device="cpu")  # its own preprocess: grey to 3 channels, 28 px, no Normalize


# ---- end to end ---------------------------------------------------------------------------------

SCORES = ("quality", "utility", "qu", "quality_ca", "utility_ca", "qu_ca", "original", "unlearned", "per_class_fine", "selected_epoch")


def _unlearn(tmp_path: Path, name: str, args: list[str], monkeypatch) -> tuple[dict, bytes, int]:
    """results.json's scores, the weights' bytes and how many batches were finished on the device, of one ``ktmu unlearn``."""
    calls = []
    real = DevicePreprocess.finish
    monkeypatch.setattr(DevicePreprocess, "finish", lambda self, x: calls.append(1) or real(self, x))
    out = tmp_path / name
    assert main(["unlearn", "--method", "nhl-kl", "--epochs", "1", "--zero-shot", "none", "--quiet", "--out", str(out), *args]) == 0
    r = json.loads((out / "results.json").read_text())
    scores = {k: r[k] if k in r else r["config"][k] for k in SCORES} | {"pipeline": r["config"]["runtime"]["image_pipeline"]}
    return scores, (out / "model.safetensors").read_bytes(), len(calls)


def test_unlearn_on_the_embedded_model_gives_the_same_run_with_the_device_pipeline(tmp_path, monkeypatch):
    """Tolerance 0 on Q-U, every score and the weights: the images are bitwise the host path's (module docstring)."""
    common = ["--max-per-concept", "20"]
    host, host_weights, host_calls = _unlearn(tmp_path, "host", common, monkeypatch)
    device, device_weights, device_calls = _unlearn(tmp_path, "device", [*common, "--image-pipeline", "device"], monkeypatch)
    assert host_calls == 0 and device_calls > 0  # the device run finished its images on the device; the host run never did
    assert (host.pop("pipeline"), device.pop("pipeline")) == ("host", "device")  # results.json's runtime records it
    assert device["qu"] == host["qu"] and 0 < host["qu"] < 100
    assert device == host and device_weights == host_weights


def test_a_streamed_world_with_a_worker_gives_the_same_run_with_the_device_pipeline(tmp_path, monkeypatch):
    root, hierarchy = make_jsonl_world(tmp_path / "dogs", train=6, test=4, size=40)
    common = ["--model", "tiny-clip", "--force", "--world", "jsonl", "--data-root", str(root), "--hierarchy", str(hierarchy),
              "--forget", "golden", "--workers", "1"]
    host, host_weights, _ = _unlearn(tmp_path, "host", common, monkeypatch)
    device, device_weights, calls = _unlearn(tmp_path, "device", [*common, "--image-pipeline", "device"], monkeypatch)
    host.pop("pipeline"), device.pop("pipeline")
    assert calls > 0 and device == host and device_weights == host_weights


def test_a_bad_image_pipeline_is_one_error_line_with_a_suggestion(capsys):
    rc = main(["eval", "--model", "tiny-clip", "--image-pipeline", "devise", "--quiet"])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("ktmu: error: --image-pipeline"), err
    assert "Did you mean 'device'?" in lines[0] and "Traceback" not in err


def test_perf_times_the_evaluation_under_both_pipelines_when_asked(tmp_path):
    out = tmp_path / "perf.json"
    common = ["perf", "--model", "tiny-clip", "--methods", "nhl-kl", "--steps", "1", "--epochs", "1", "--repeats", "1", "--images", "64",
              "--device", "cpu", "--quiet"]
    assert main([*common, "--image-pipeline", "device", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    both = r["eval_by_image_pipeline"]
    assert r["image_pipeline"] == "device" and set(both) == {"host", "device"}
    assert all(v["eval_ratio"] > 0 and v["images_per_s"] > 0 and v["cached"] for v in both.values())
    assert r["eval_ratio"] == both["device"]["eval_ratio"]  # the run's own pipeline
    assert main([*common, "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["image_pipeline"] == "host" and "eval_by_image_pipeline" not in r  # asked for only
