"""Device resolution, precision checks and autocast, on CPU (CUDA answers are faked where needed)."""
import contextlib

import pytest
import torch
import torch.nn.functional as F

from ktmu.backbones import load_backbone
from ktmu.runtime.device import PRECISIONS, RuntimeSettingsError, autocast, check_precision, needs_grad_scaler, resolve_device


def test_resolve_device_on_this_machine():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(RuntimeSettingsError, match="unknown device 'gpu'.*auto, cpu, cuda, cuda:N, mps"):
        resolve_device("gpu")
    with pytest.raises(RuntimeSettingsError, match="unknown device"):
        resolve_device("cuda:x")


def test_cuda_that_is_missing_is_explained(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(RuntimeSettingsError, match="CUDA is not available on this machine; use --device cpu or --device auto"):
        resolve_device("cuda")
    with pytest.raises(RuntimeSettingsError, match="CUDA is not available"):
        resolve_device("cuda:0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(RuntimeSettingsError, match="this machine has 2 CUDA device.*cuda:0 to cuda:1"):
        resolve_device("cuda:2")


def test_mps_that_is_missing_is_explained(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(RuntimeSettingsError, match="MPS.*not available.*--device cpu"):
        resolve_device("mps")


def test_check_precision(monkeypatch):
    for p in PRECISIONS:
        assert check_precision(p, "cpu") == p
    with pytest.raises(RuntimeSettingsError, match="unknown precision 'fp16'; choose one of fp32, bf16, amp-fp16"):
        check_precision("fp16", "cpu")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Old GPU")
    with pytest.raises(RuntimeSettingsError, match=r"Old GPU\) does not support bf16; use --precision amp-fp16 or fp32"):
        check_precision("bf16", "cuda")
    assert check_precision("amp-fp16", "cuda") == "amp-fp16"
    assert check_precision("bf16", "cpu") == "bf16"  # the CUDA answer does not concern the CPU


def test_autocast_contexts():
    assert isinstance(autocast("cpu", "fp32"), contextlib.nullcontext)
    a, b = torch.randn(4, 8), torch.randn(8, 3)
    with autocast("cpu", "bf16"):
        assert (a @ b).dtype == torch.bfloat16
    with autocast(torch.device("cpu"), "amp-fp16"):
        assert (a @ b).dtype == torch.float16
    with autocast("cpu", "fp32"):
        assert (a @ b).dtype == torch.float32
    with pytest.raises(RuntimeSettingsError, match="unknown precision"):
        autocast("cpu", "int8")
    assert needs_grad_scaler("amp-fp16") and not needs_grad_scaler("bf16") and not needs_grad_scaler("fp32")


def test_bf16_backbone_runs_bf16_inside_and_returns_float32_close_to_fp32():
    fp32 = load_backbone("tiny-clip")
    bf16 = load_backbone("tiny-clip", precision="bf16")
    assert bf16.precision == "bf16" and not bf16.needs_grad_scaler
    assert load_backbone("tiny-clip", precision="amp-fp16").needs_grad_scaler
    seen = []
    hook = bf16.model.visual.transformer.resblocks[0].mlp.c_fc.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    x = torch.rand(4, 3, 28, 28)
    texts = ["a photo of a shirt.", "a boot."]
    a, ta = fp32.encode_image(x), fp32.encode_texts(texts)
    b, tb = bf16.encode_image(x), bf16.encode_texts(texts)
    hook.remove()
    assert seen == [torch.bfloat16]
    assert b.dtype == tb.dtype == torch.float32
    assert F.cosine_similarity(a, b).min() > 0.99 and F.cosine_similarity(ta, tb).min() > 0.99
    # weights stay float32, so tiny updates survive: bf16 weights would round 1 + 1e-7 back to 1
    assert all(p.dtype == torch.float32 for p in bf16.model.parameters())
    loss = (bf16.logit_scale() * b @ tb.T).logsumexp(-1).sum()
    loss.backward()
    assert all(p.grad is None or p.grad.dtype == torch.float32 for p in bf16.model.parameters())


def test_load_backbone_checks_device_and_precision():
    with pytest.raises(RuntimeSettingsError, match="unknown precision"):
        load_backbone("tiny-clip", precision="half")
    with pytest.raises(RuntimeSettingsError, match="unknown device"):
        load_backbone("tiny-clip", device="tpu")
    assert load_backbone("tiny-clip", device="auto").device == resolve_device("auto")
