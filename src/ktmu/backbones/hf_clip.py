"""Hugging Face ``transformers`` CLIP models, loaded from a local folder (ktmu never downloads).

Spec ``hf:DIR``: a folder written by ``CLIPModel.save_pretrained`` plus the tokenizer's and image
processor's ``save_pretrained`` (what ``huggingface-cli download openai/clip-vit-large-patch14
--local-dir DIR`` fetches). Spec ``hf:DIR:CKPT.safetensors``: that architecture, tokenizer and
preprocessing with the weights of a ktmu checkpoint (e.g. an unlearned model) on top.
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from PIL import Image
from torchvision import transforms

from ktmu.backbones.base import Backbone, BackboneError, Tokens, move_tokens

HF_TOWERS: dict[str, tuple[str, ...]] = {
    "image": ("vision_model.", "visual_projection"),
    "text": ("text_model.", "text_projection"),
    "temperature": ("logit_scale",),
}
MODEL_TYPES = ("clip",)  # config.json model_type values whose models have CLIPModel's layout

# CLIPImageProcessor's defaults, for keys a preprocessor_config.json leaves out.
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
# PIL resample codes (what image-processor configs store) -> torchvision's names for them.
_RESAMPLE = {
    0: transforms.InterpolationMode.NEAREST,
    1: transforms.InterpolationMode.LANCZOS,
    2: transforms.InterpolationMode.BILINEAR,
    3: transforms.InterpolationMode.BICUBIC,
    4: transforms.InterpolationMode.BOX,
    5: transforms.InterpolationMode.HAMMING,
}


class ConvertRGB:
    """Convert a PIL image to 3-channel RGB (a class, not a lambda, so DataLoader workers can pickle it)."""

    def __call__(self, image: Image.Image) -> Image.Image:
        return image.convert("RGB")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class HFTokenize:
    """A CLIP tokenizer call that returns input ids and attention mask, padded to the batch's longest text."""

    def __init__(self, tokenizer: Any, max_length: int) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length

    def __call__(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


def _pair(size: Any, what: str) -> tuple[int, int] | int:
    """An image-processor size entry -> (height, width), or an int for 'shortest edge'."""
    if isinstance(size, int):
        return size
    if isinstance(size, dict) and "shortest_edge" in size:
        return int(size["shortest_edge"])
    if isinstance(size, dict) and {"height", "width"} <= size.keys():
        return int(size["height"]), int(size["width"])
    raise BackboneError(f"cannot read {what} {size!r} in preprocessor_config.json; expected shortest_edge or height/width.")


def processor_transform(folder: str | Path, image_size: int) -> transforms.Compose:
    """A picklable torchvision transform equivalent to the folder's CLIP image processor.

    Reads ``preprocessor_config.json`` (CLIPImageProcessor's defaults for missing keys, sized to
    ``image_size`` when the file is absent): RGB, resize (shortest edge), centre crop, to tensor,
    rescale and normalise. Rescaling is folded into the normalisation.
    """
    path = Path(folder) / "preprocessor_config.json"
    try:
        cfg: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    except json.JSONDecodeError as e:
        raise BackboneError(f"{path} is not valid JSON ({e}); re-save the image processor with save_pretrained.") from e
    steps: list[Any] = [ConvertRGB()]
    out: tuple[int, int] | None = None
    if cfg.get("do_resize", True):
        size = _pair(cfg.get("size", {"shortest_edge": image_size}), "size")
        resample = _RESAMPLE.get(int(cfg.get("resample", 3)), transforms.InterpolationMode.BICUBIC)
        steps.append(transforms.Resize(size, interpolation=resample))
        out = size if isinstance(size, tuple) else None
    if cfg.get("do_center_crop", True):
        crop = _pair(cfg.get("crop_size", {"height": image_size, "width": image_size}), "crop_size")
        out = crop if isinstance(crop, tuple) else (crop, crop)
        steps.append(transforms.CenterCrop(out))
    if out is not None and out != (image_size, image_size):
        raise BackboneError(
            f"{path} makes {out[0]}x{out[1]} images but the model takes {image_size}x{image_size}; fix crop_size/size there."
        )
    steps.append(transforms.ToTensor())  # scales by 1/255
    scale = float(cfg.get("rescale_factor", 1 / 255)) * 255 if cfg.get("do_rescale", True) else 255.0
    if cfg.get("do_normalize", True):
        mean, std = cfg.get("image_mean", OPENAI_MEAN), cfg.get("image_std", OPENAI_STD)
    else:
        mean, std = (0.0,) * 3, (1.0,) * 3
    # (x * scale - m) / s == (x - m / scale) / (s / scale): one Normalize does rescale and normalise.
    steps.append(transforms.Normalize([m / scale for m in mean], [s / scale for s in std]))
    return transforms.Compose(steps)


def hf_folder(path: str) -> Path:
    """Check that ``path`` is a local folder holding a CLIP model; the error says how to get one."""
    folder = Path(path).expanduser()
    if not folder.exists():
        raise BackboneError(
            f"hf:{path}: no such local folder. ktmu never downloads models; if {path!r} is a Hugging Face Hub id, "
            f"fetch it once with `huggingface-cli download {path} --local-dir DIR` and use hf:DIR."
        )
    if not folder.is_dir():
        raise BackboneError(f"hf:{path} is a file; hf: expects a folder saved by transformers' save_pretrained.")
    config = folder / "config.json"
    expected = (
        "a folder written by transformers' CLIPModel.save_pretrained (config.json with model_type 'clip' and the "
        "weights) plus the tokenizer files and preprocessor_config.json"
    )
    if not config.is_file():
        raise BackboneError(f"{folder} has no config.json; hf: expects {expected}.")
    try:
        model_type = json.loads(config.read_text()).get("model_type")
    except json.JSONDecodeError as e:
        raise BackboneError(f"{config} is not valid JSON ({e}); hf: expects {expected}.") from e
    if model_type not in MODEL_TYPES:
        raise BackboneError(
            f"{config} has model_type {model_type!r}, not a CLIP model ({', '.join(MODEL_TYPES)}); hf: expects {expected}."
        )
    return folder


class HFClipBackbone(Backbone):
    """A ``transformers`` CLIPModel: spec ``hf:DIR`` or ``hf:DIR:CKPT.safetensors``.

    Text features are the final-layer state at each text's first end-of-text token, projected.
    OpenAI's checkpoints pad with that same token, so the position comes from the ids (the first
    occurrence) and the attention mask comes from the tokenizer, which keeps the end token unmasked.
    """

    towers = HF_TOWERS

    def __init__(
        self,
        name: str,
        model: torch.nn.Module,
        tokenizer: HFTokenize,
        preprocess: transforms.Compose,
        precision: str = "fp32",
    ) -> None:
        super().__init__(name, model, tokenizer, preprocess, (), precision)
        self.eos_token_id: int = tokenizer.tokenizer.eos_token_id
        self._grad_checkpointing = False

    @classmethod
    def from_spec(cls, rest: str, device: str | torch.device = "cpu", precision: str = "fp32") -> Backbone:
        """``rest`` is ``DIR`` or ``DIR:CKPT.safetensors`` (split at the last ':' only when it ends in .safetensors)."""
        folder, sep, ckpt = rest.rpartition(":")
        if not (sep and ckpt.endswith(".safetensors")):
            folder, ckpt = rest, ""
        if not folder:
            raise BackboneError("spec 'hf' needs a local model folder, e.g. hf:models/clip-vit-large-patch14.")
        return build_hf_clip(folder, checkpoint=ckpt or None, device=device, precision=precision)

    def _encode_image(self, images: torch.Tensor) -> torch.Tensor:
        with self._checkpointing():
            pooled = self.model.vision_model(pixel_values=images).pooler_output
        return self.model.visual_projection(pooled)

    def _encode_text(self, tokens: Tokens) -> torch.Tensor:
        if isinstance(tokens, torch.Tensor):
            # Ids alone: the text tower is causal, so padding after the end token cannot change its state.
            ids, mask = tokens, None
        else:
            ids, mask = tokens["input_ids"], tokens.get("attention_mask")
        with self._checkpointing():
            hidden = self.model.text_model(input_ids=ids, attention_mask=mask).last_hidden_state
        first_eos = (ids == self.eos_token_id).int().argmax(dim=-1)
        pooled = hidden[torch.arange(len(ids), device=hidden.device), first_eos]
        return self.model.text_projection(pooled)

    def _full_context_tokens(self, texts: Sequence[str]) -> Tokens:
        """Every text padded to the tokenizer's full context (77 for CLIP), as a plain pipeline pads."""
        tok = self._tokenizer
        enc = tok.tokenizer(list(texts), padding="max_length", truncation=True, max_length=tok.max_length, return_tensors="pt")
        return move_tokens({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}, self.device)

    def _encode_text_full_context(self, tokens: Tokens) -> torch.Tensor:
        return self._encode_text(tokens)

    def encoder_modules(self) -> dict[str, torch.nn.Module]:
        """transformers' vision and text transformers."""
        return {"image": self.model.vision_model, "text": self.model.text_model}

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Checkpoint every encoder layer of both towers (transformers' activation checkpointing).

        transformers only checkpoints modules in training mode, but ktmu trains in eval mode; so
        while gradients are on, the encoders run with the layers' own training flag set (their
        dropout and other submodules stay in eval mode).
        """
        if enable:
            on = getattr(self.model, "activation_checkpointing_enable", None) or self.model.gradient_checkpointing_enable
            on()
        else:
            off = getattr(self.model, "activation_checkpointing_disable", None) or self.model.gradient_checkpointing_disable
            off()
        self._grad_checkpointing = enable

    @contextlib.contextmanager
    def _checkpointing(self) -> Iterator[None]:
        """Mark checkpointed layers as training (non-recursively) for one forward pass, if checkpointing is on."""
        if not (self._grad_checkpointing and torch.is_grad_enabled()):
            yield
            return
        from transformers.modeling_layers import GradientCheckpointingLayer

        layers = [m for m in self.model.modules() if isinstance(m, GradientCheckpointingLayer) and not m.training]
        for m in layers:
            m.training = True
        try:
            yield
        finally:
            for m in layers:
                m.training = False


def build_hf_clip(
    path: str, checkpoint: str | None = None, device: str | torch.device = "cpu", precision: str = "fp32"
) -> HFClipBackbone:
    """Load the CLIPModel, tokenizer and preprocessing in local folder ``path`` (float32 weights), then ``checkpoint``."""
    from transformers import AutoTokenizer, CLIPModel

    folder = hf_folder(path)
    try:
        # SDPA attention: fused kernels (flash / memory-efficient on CUDA) instead of explicit softmax(QK^T) V.
        model = CLIPModel.from_pretrained(str(folder), local_files_only=True, dtype=torch.float32, attn_implementation="sdpa")
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except OSError as e:  # transformers' error for missing weight or tokenizer files
        raise BackboneError(f"cannot load the CLIP model in {folder}: {e}") from e
    if tokenizer.eos_token_id is None:
        raise BackboneError(f"the tokenizer in {folder} has no end-of-text token; CLIP's text features are read there.")
    tokenize = HFTokenize(tokenizer, int(model.config.text_config.max_position_embeddings))
    probe = tokenize(["a"])["input_ids"]
    if not (probe == tokenizer.eos_token_id).any():
        raise BackboneError(
            f"the tokenizer in {folder} does not end texts with its end-of-text token; re-save it from a CLIP tokenizer."
        )
    preprocess = processor_transform(folder, int(model.config.vision_config.image_size))
    backbone = HFClipBackbone(f"hf:{path}", model.to(device).eval(), tokenize, preprocess, precision)
    if checkpoint:
        backbone.load_weights(checkpoint)
    return backbone
