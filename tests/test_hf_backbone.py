"""The Hugging Face backbone (``hf:DIR``) on a tiny random CLIPModel and byte-level tokenizer saved to a temp folder."""
import hashlib
import json
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from ktmu.backbones import BackboneError, load_backbone
from ktmu.backbones.hf_clip import HFClipBackbone


def _byte_vocab() -> dict[str, int]:
    """GPT-2/CLIP byte-to-unicode characters, each alone and as a word end, then the two special tokens (eos last)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + len(cs) - 188)  # 188 printable bytes map to themselves; the rest to 256, 257, ...
    chars = [chr(c) for c in cs]
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return vocab


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    """A folder as ``huggingface-cli download`` leaves it: config + weights, tokenizer files, preprocessor config."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    folder = tmp_path_factory.mktemp("tiny-hf-clip")
    vocab = _byte_vocab()
    eos = vocab["<|endoftext|>"]
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=16)
    cfg = CLIPConfig(
        # OpenAI's layout: the end-of-text token is also the padding token
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                         max_position_embeddings=16, eos_token_id=eos, bos_token_id=eos - 1, pad_token_id=eos),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=16,
    )
    torch.manual_seed(0)
    CLIPModel(cfg).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


@pytest.fixture()
def hf(hf_dir):
    return load_backbone(f"hf:{hf_dir}")


def test_byte_vocab_is_the_256_clip_characters():
    vocab = _byte_vocab()
    assert len(vocab) == 2 * 256 + 2 and vocab["<|endoftext|>"] == 513


def test_interface(hf):
    assert isinstance(hf, HFClipBackbone)
    feats = hf.encode_image(torch.randn(3, 3, 32, 32))
    text = hf.encode_texts(["a photo of a sneaker.", "a boot."])
    assert feats.shape == (3, 16) and text.shape == (2, 16)
    assert feats.dtype == text.dtype == torch.float32
    assert torch.allclose(feats.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.allclose(text.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert hf.logit_scale().item() > 1
    assert hf.encode_image(torch.randn(1, 3, 32, 32), normalize=False).norm().item() != pytest.approx(1.0)
    # weights are float32 whatever the checkpoint's dtype
    assert all(p.dtype == torch.float32 for p in hf.model.parameters())


def test_tokens_carry_an_attention_mask_that_keeps_the_end_token(hf):
    tokens = hf.tokenize(["a cat", "a photo of a dog"])
    assert set(tokens) == {"input_ids", "attention_mask"}
    assert all(t.device == hf.device for t in tokens.values())
    ids, mask = tokens["input_ids"], tokens["attention_mask"]
    eos = hf.eos_token_id
    first_eos = (ids == eos).int().argmax(-1)
    assert (ids[0, first_eos[0] + 1 :] == eos).all()  # padded with the end token itself, as OpenAI's checkpoints
    assert mask[torch.arange(2), first_eos].eq(1).all()


def test_text_features_pool_at_the_first_end_token(hf):
    """Padding with the end token changes nothing, and the features are CLIPModel's own."""
    tokens = hf.tokenize(["a cat", "a photo of a dog"])
    batch = hf.encode_text(tokens)
    alone = hf.encode_texts(["a cat"])
    assert torch.allclose(batch[0], alone[0], atol=1e-6)
    with torch.no_grad():
        ref = hf.model.get_text_features(**tokens)
    ref = ref if isinstance(ref, torch.Tensor) else ref.pooler_output
    assert torch.allclose(batch, F.normalize(ref, dim=-1), atol=1e-6)
    # ids without a mask give the same features: the text tower is causal
    assert torch.allclose(hf.encode_text(tokens["input_ids"]), batch, atol=1e-6)


def test_preprocess_is_picklable_and_matches_the_image_processor(hf, hf_dir):
    from transformers import CLIPImageProcessor

    rng = np.random.default_rng(0)
    image = Image.fromarray((rng.random((48, 64, 3)) * 255).astype(np.uint8))
    again = pickle.loads(pickle.dumps(hf.preprocess))
    x = again(image)
    assert x.shape == (3, 32, 32)
    expected = CLIPImageProcessor.from_pretrained(str(hf_dir))(image, return_tensors="pt")["pixel_values"][0]
    assert (x - expected).abs().mean() < 1e-3 and (x - expected).abs().max() < 0.05  # bicubic rounding only
    grey = hf.preprocess(Image.new("L", (40, 40), 128))
    assert grey.shape == (3, 32, 32)


def test_checkpoint_round_trip_through_the_spec(hf, hf_dir, tmp_path):
    with torch.no_grad():  # move away from the folder's weights so the checkpoint visibly matters
        hf.model.visual_projection.weight.mul_(-1)
        hf.model.logit_scale.add_(0.5)
    path = hf.save_weights(tmp_path / "unlearned.safetensors")
    again = load_backbone(f"hf:{hf_dir}:{path}")
    plain = load_backbone(f"hf:{hf_dir}")
    x = torch.randn(2, 3, 32, 32)
    texts = ["a cat", "a photo of a dog", "a boot"]

    def logits(b):
        with torch.no_grad():
            return b.logit_scale() * b.encode_image(x) @ b.encode_texts(texts).T

    assert torch.allclose(logits(hf), logits(again), atol=1e-6)
    assert not torch.allclose(logits(hf), logits(plain), atol=1e-3)
    assert again.name == f"hf:{hf_dir}"


def test_folder_without_clip_config_and_hub_ids_are_explained(tmp_path, hf_dir):
    with pytest.raises(BackboneError, match="no config.json.*save_pretrained"):
        load_backbone(f"hf:{tmp_path}")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(BackboneError, match="model_type 'bert', not a CLIP model"):
        load_backbone(f"hf:{tmp_path}")
    hub_hint = r"never downloads.*huggingface-cli download openai/clip-vit-base-patch32 --local-dir DIR` and use hf:DIR"
    with pytest.raises(BackboneError, match=hub_hint):
        load_backbone("hf:openai/clip-vit-base-patch32")
    with pytest.raises(BackboneError, match="is a file"):
        load_backbone(f"hf:{hf_dir / 'config.json'}")
    with pytest.raises(BackboneError, match="needs a local model folder"):
        load_backbone("hf:")
    with pytest.raises(BackboneError, match="does not exist"):
        load_backbone(f"hf:{hf_dir}:{tmp_path / 'missing.safetensors'}")


def test_towers_cover_every_parameter_and_choose_what_trains(hf):
    names = [n for n, _ in hf.model.named_parameters()]
    covered = tuple(p for prefixes in hf.towers.values() for p in prefixes)
    assert all(n.startswith(covered) for n in names)
    hf.set_trainable("text")
    trained = {n for n, _ in hf.named_trainable_parameters()}
    assert trained and all(n.startswith(("text_model.", "text_projection")) for n in trained)
    assert hf.text_trainable
    hf.set_trainable("image+temperature")
    trained = {n for n, _ in hf.named_trainable_parameters()}
    assert "logit_scale" in trained and "visual_projection.weight" in trained and not hf.text_trainable
    hf.set_trainable("both")
    assert {n for n, _ in hf.named_trainable_parameters()} == set(names)
    # a checkpoint holds the whole model whatever trains
    hf.set_trainable("temperature")
    assert set(hf.trainable_state_dict()) >= set(names)


def test_gradient_checkpointing_recomputes_and_gives_the_same_gradients(hf):
    x = torch.randn(2, 3, 32, 32)
    tokens = hf.tokenize(["a cat", "a dog"])

    def grads():
        hf.model.zero_grad(set_to_none=True)
        loss = (hf.logit_scale() * hf.encode_image(x) @ hf.encode_text(tokens).T).logsumexp(-1).sum()
        loss.backward()
        return {n: p.grad.clone() for n, p in hf.named_trainable_parameters() if p.grad is not None}

    calls = []
    # a pre-hook: the recomputation stops as soon as the last saved tensor is rebuilt, before forward hooks
    hook = hf.model.vision_model.encoder.layers[0].mlp.register_forward_pre_hook(lambda *a: calls.append(1))
    plain = grads()
    assert len(calls) == 1
    hf.set_grad_checkpointing(True)
    assert not hf.model.training  # ktmu trains in eval mode, and checkpointing still happens
    calls.clear()
    checkpointed = grads()
    assert len(calls) == 2  # forward, then recomputed in backward
    assert not any(m.training for m in hf.model.modules())
    hf.set_grad_checkpointing(False)
    calls.clear()
    grads()
    assert len(calls) == 1
    hook.remove()
    assert plain.keys() == checkpointed.keys()
    assert all(torch.allclose(plain[k], checkpointed[k], atol=1e-6) for k in plain)


def test_bf16_precision_keeps_float32_weights_and_outputs(hf_dir):
    fp32 = load_backbone(f"hf:{hf_dir}")
    bf16 = load_backbone(f"hf:{hf_dir}", precision="bf16")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        a, b = fp32.encode_image(x), bf16.encode_image(x)
        ta, tb = fp32.encode_texts(["a cat"]), bf16.encode_texts(["a cat"])
    assert b.dtype == tb.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in bf16.model.parameters())
    assert F.cosine_similarity(a, b).min() > 0.99 and F.cosine_similarity(ta, tb).min() > 0.99


def test_saved_checkpoints_are_byte_identical(hf, tmp_path):
    meta = {"method": "nhl-kl", "seed": "0", "backbone": hf.name, "lr": "1e-5"}
    a = hf.save_weights(tmp_path / "a.safetensors", metadata=meta)
    b = hf.save_weights(tmp_path / "b.safetensors", metadata=dict(reversed(list(meta.items()))))
    assert hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()
