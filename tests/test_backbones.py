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
