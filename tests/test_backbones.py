"""The backbone interface on a random-init tiny open_clip config and on the embedded mini-CLIP."""
import json

import pytest
import torch
from safetensors.torch import load_file

from ktmu.backbones import BackboneError, load_backbone
from ktmu.backbones.mini_clip import DEFAULT_WEIGHTS, MANIFEST, build_mini_clip, minilm_dir, sha256

TINY_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def _check_interface(b, image_shape):
    feats = b.encode_image(torch.randn(*image_shape))
    text = b.encode_texts(["a photo of a sneaker.", "a boot."])
    assert feats.shape[0] == image_shape[0] and text.shape[0] == 2 and feats.shape[1] == text.shape[1]
    assert torch.allclose(feats.norm(dim=-1), torch.ones(len(feats)), atol=1e-5)
    assert torch.allclose(text.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert b.logit_scale().item() > 1
    assert len(list(b.named_trainable_parameters())) > 0


@pytest.fixture(scope="module")
def mini():
    return build_mini_clip()


def test_open_clip_random_tiny_config(tmp_path):
    import open_clip

    (tmp_path / "ktmu-test-tiny.json").write_text(json.dumps(TINY_CFG))
    open_clip.add_model_config(tmp_path)
    b = load_backbone("open_clip:ktmu-test-tiny")
    assert b.name == "open_clip:ktmu-test-tiny"
    _check_interface(b, (3, 3, 32, 32))
    # ktmu checkpoints round-trip through safetensors
    path = b.save_weights(tmp_path / "w.safetensors")
    again = load_backbone(f"open_clip:ktmu-test-tiny:{path}")
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(b.encode_image(x), again.encode_image(x))


def test_open_clip_unknown_arch_and_tag(tmp_path):
    with pytest.raises(BackboneError, match="Did you mean"):
        load_backbone("open_clip:ViT-B-33")
    with pytest.raises(BackboneError, match="neither a file nor a pretrained tag"):
        load_backbone("open_clip:ViT-B-32:no-such-tag")
    with pytest.raises(KeyError, match="Did you mean 'mini-clip'"):
        load_backbone("mini-clp")


def test_mini_clip_interface(mini):
    _check_interface(mini, (4, 1, 28, 28))
    from PIL import Image

    x = mini.preprocess(Image.new("RGB", (64, 48), (200, 10, 10)))
    assert x.shape == (1, 28, 28)


def test_mini_clip_text_tower_is_the_packaged_minilm(mini):
    packaged = load_file(str(minilm_dir() / "model.safetensors"))
    tower = mini.model.text.transformer.state_dict()
    compared = 0
    for key, value in packaged.items():
        k = key.removeprefix("bert.")
        if k in tower:
            assert torch.equal(tower[k], value), k
            compared += 1
    assert compared >= 100  # every encoder weight, not a handful
    # and it is frozen: never trained, never saved
    assert not any(p.requires_grad for p in mini.model.text.transformer.parameters())
    assert not any(k.startswith("text.transformer.") for k in mini.trainable_state_dict())


def test_mini_clip_text_matches_sentence_transformer_pooling(mini):
    """open_clip's mean pooler over MiniLM equals all-MiniLM-L6-v2's sentence embedding (up to our projection)."""
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(minilm_dir()))
    ref = AutoModel.from_pretrained(str(minilm_dir())).eval()
    enc = tok(["running shoe"], return_tensors="pt")
    with torch.no_grad():
        out = ref(**enc).last_hidden_state
        expected = (out * enc["attention_mask"][..., None]).sum(1) / enc["attention_mask"].sum()
        tokens = mini.tokenize(["running shoe"])
        mask = (tokens != 0).long()
        got = mini.model.text.pooler(mini.model.text.transformer(input_ids=tokens, attention_mask=mask), mask)
    assert torch.allclose(got, expected, atol=1e-5)


def test_shipped_checkpoint_sha256_and_size():
    manifest = json.loads(MANIFEST.read_text())
    assert DEFAULT_WEIGHTS.stat().st_size <= 10 * 1024 * 1024
    assert sha256(DEFAULT_WEIGHTS) == manifest["sha256"]
    assert manifest["command"].startswith("ktmu pretrain")


def test_checkpoint_that_does_not_fit_is_explained(tmp_path, mini):
    from safetensors.torch import save_file

    save_file({"visual.nonsense": torch.zeros(2)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(BackboneError, match="does not fit"):
        mini.load_weights(tmp_path / "bad.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(BackboneError, match="not a readable safetensors"):
        mini.load_weights(tmp_path / "junk.safetensors")


# ---- specs -------------------------------------------------------------------------------------
def test_every_kind_parses_its_own_spec(tmp_path):
    from ktmu.backbones import BACKBONES
    from ktmu.backbones.base import Backbone

    assert BACKBONES.names() == ["hf", "mini-clip", "open_clip", "tiny-clip"]
    assert all(issubclass(BACKBONES.get(k), Backbone) for k in BACKBONES.names())
    tiny = load_backbone("tiny-clip")
    path = tiny.save_weights(tmp_path / "tiny.safetensors")
    assert torch.equal(load_backbone(f"tiny-clip:{path}").logit_scale(), tiny.logit_scale())
    with pytest.raises(BackboneError, match="tiny-clip:PATH.safetensors"):
        load_backbone("tiny-clip:ViT-B-32")
    with pytest.raises(BackboneError, match="needs an architecture"):
        load_backbone("open_clip")
    with pytest.raises(KeyError, match="Did you mean 'hf'"):
        load_backbone("hff:somewhere")


# ---- the mini-clip text cache ----------------------------------------------------------------------
def test_mini_clip_numbers_are_the_open_clip_model_s(mini):
    x = torch.randn(3, 1, 28, 28)
    tokens = mini.tokenize(["a photo of a shirt.", "a boot.", "a photo of a shirt."])
    with torch.no_grad():
        assert torch.equal(mini.encode_image(x), mini.model.encode_image(x, normalize=True))
        mini.clear_text_cache()
        cached_first = mini.encode_text(tokens)
        cached_again = mini.encode_text(tokens)
        uncached = mini.model.encode_text(tokens, normalize=True)
    assert torch.allclose(cached_first, uncached, atol=1e-6)
    assert torch.equal(cached_first, cached_again)


def test_mini_clip_text_cache_runs_minilm_once_per_distinct_row(mini):
    calls = []
    hook = mini.model.text.transformer.register_forward_hook(lambda m, i, o: calls.append(len(i[0]) if i else 0))
    mini.clear_text_cache()
    try:
        mini.encode_texts(["a shirt", "a boot", "a shirt"])
        mini.encode_texts(["a boot", "a shirt", "a coat"])
    finally:
        hook.remove()
    assert len(calls) == 2  # the second call only encodes "a coat"
    assert len(mini._text_cache) == 3


def test_mini_clip_text_gradients_reach_the_projection(mini):
    tokens = mini.tokenize(["a shirt", "a boot"])
    mini.encode_text(tokens)  # fill the cache first: the cached path must still carry gradients
    mini.model.zero_grad(set_to_none=True)
    mini.encode_text(tokens).sum(0)[0].backward()
    assert mini.model.text.proj.weight.grad is not None and mini.model.text.proj.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in mini.model.text.transformer.parameters())
    mini.model.zero_grad(set_to_none=True)


def test_mini_clip_has_no_gradient_checkpointing(mini):
    with pytest.raises(BackboneError, match="no gradient checkpointing.*small enough"):
        mini.set_grad_checkpointing(True)
    mini.set_grad_checkpointing(False)  # turning it off is always fine


# ---- what trains ----------------------------------------------------------------------------------
def _trained(b):
    return {n for n, _ in b.named_trainable_parameters()}


@pytest.mark.parametrize("kind", ["tiny-clip", "mini-clip", "open_clip"])
def test_towers_cover_every_parameter_and_frozen_ones_never_train(kind, mini, tmp_path):
    import open_clip

    if kind == "open_clip":
        (tmp_path / "ktmu-test-towers.json").write_text(json.dumps(TINY_CFG))
        open_clip.add_model_config(tmp_path)
        b = load_backbone("open_clip:ktmu-test-towers")
    else:
        b = mini if kind == "mini-clip" else load_backbone(kind)
    names = [n for n, _ in b.model.named_parameters()]
    covered = tuple(p for prefixes in b.towers.values() for p in prefixes)
    assert all(n.startswith(covered) for n in names), [n for n in names if not n.startswith(covered)]
    free = {n for n in names if not n.startswith(b.frozen_prefixes)}
    b.set_trainable("both")
    assert _trained(b) == free
    b.set_trainable("default")
    assert _trained(b) == free
    for tower in ("image", "text", "temperature"):
        b.set_trainable(tower)
        assert _trained(b) and all(n.startswith(b.towers[tower]) for n in _trained(b))
        assert not any(n.startswith(b.frozen_prefixes) for n in _trained(b))
        assert b.text_trainable == (tower == "text")
    b.set_trainable("image+temperature")
    assert "logit_scale" in _trained(b) and not b.text_trainable
    assert any(n.startswith("visual.") for n in _trained(b))
    b.set_trainable("default")


def test_trainable_choice_errors_and_checkpoint_content(mini):
    before = set(mini.trainable_state_dict())
    with pytest.raises(BackboneError, match="unknown trainable choice 'imgae'.*Did you mean 'image'"):
        mini.set_trainable("imgae+temperature")
    assert mini.trainable_choice == "default"  # a refused choice changes nothing
    mini.set_trainable("Image + Temperature")
    assert mini.trainable_choice == "image + temperature"
    assert set(mini.trainable_state_dict()) == before  # checkpoints keep their content whatever trains
    assert mini.model.text.proj.weight.requires_grad is False
    mini.set_trainable("default")
    assert mini.model.text.proj.weight.requires_grad is True


def test_tiny_clip_gradient_checkpointing_gives_the_same_gradients():
    b = load_backbone("tiny-clip")
    x = torch.rand(2, 3, 28, 28)
    tokens = b.tokenize(["a shirt", "a boot"])

    def grads():
        b.model.zero_grad(set_to_none=True)
        (b.logit_scale() * b.encode_image(x) @ b.encode_text(tokens).T).logsumexp(-1).sum().backward()
        return {n: p.grad.clone() for n, p in b.named_trainable_parameters() if p.grad is not None}

    plain = grads()
    b.set_grad_checkpointing(True)
    assert b.model.transformer.grad_checkpointing
    checkpointed = grads()
    b.set_grad_checkpointing(False)
    assert not b.model.transformer.grad_checkpointing
    assert plain.keys() == checkpointed.keys()
    assert all(torch.allclose(plain[k], checkpointed[k], atol=1e-6) for k in plain)


# ---- weight state ------------------------------------------------------------------------------------
def test_copy_and_load_trainable_work_in_place():
    b = load_backbone("tiny-clip")
    b.set_trainable("image+temperature")
    state = b.copy_trainable()
    assert set(state) == {n for n, _ in b.named_trainable_parameters()}
    params = dict(b.model.named_parameters())
    assert all(state[k].device == params[k].device and not state[k].requires_grad for k in state)
    assert all(state[k].data_ptr() != params[k].data_ptr() for k in state)  # clones, not views
    ptrs = {k: params[k].data_ptr() for k in state}
    with torch.no_grad():
        for k in state:
            params[k].add_(1.0)
    b.load_trainable(state)
    assert all(torch.equal(params[k], state[k]) for k in state)
    assert all(params[k].data_ptr() == ptrs[k] for k in state)  # no reallocation
    with pytest.raises(BackboneError, match="not parameters of tiny-clip"):
        b.load_trainable({"nonsense": torch.zeros(1)})
    # the old snapshot/restore pair still works
    snap = b.snapshot()
    with torch.no_grad():
        params["logit_scale"].add_(1.0)
    b.restore(snap)
    assert torch.equal(params["logit_scale"].detach().cpu(), snap["logit_scale"])


def test_saved_weights_are_reproducible_and_readable(tmp_path, mini):
    import hashlib
    import stat

    from safetensors import safe_open

    meta = {"method": "nhl-kl", "seed": "0", "lr": "1e-4", "world": "fashion"}
    a = mini.save_weights(tmp_path / "a.safetensors", metadata=meta)
    b = mini.save_weights(tmp_path / "b.safetensors", metadata=dict(sorted(meta.items(), reverse=True)))
    assert hashlib.sha256(a.read_bytes()).hexdigest() == hashlib.sha256(b.read_bytes()).hexdigest()
    assert stat.S_IMODE(a.stat().st_mode) == 0o644
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left behind
    state = mini.trainable_state_dict()
    loaded = load_file(str(a))
    assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)
    assert all(loaded[k].dtype == state[k].dtype for k in state)  # int64 batch-norm counters included
    with safe_open(str(a), framework="pt") as f:
        assert f.metadata() == meta
    again = build_mini_clip(weights=a)
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(again.encode_image(x), mini.encode_image(x))


def test_open_clip_text_drops_padding_exactly(tiny_backbone):
    """The causal text tower pools at end-of-text, so dropping the padded tail changes nothing but the cost."""
    tok = tiny_backbone.tokenize(["a photo of a shirt.", "a blurry photo of an ankle boot.", "a."])
    assert (tok[:, -1] == 0).all()  # there is padding to drop
    full = tiny_backbone.model.encode_text(tok, normalize=True)
    assert torch.allclose(tiny_backbone.encode_text(tok), full, atol=1e-6)
    tiny_backbone.encode_text(tok).sum().backward()
    assert tiny_backbone.model.positional_embedding.grad[-1].abs().sum() == 0  # unused positions get no gradient
    assert tiny_backbone.model.positional_embedding.grad[0].abs().sum() > 0
