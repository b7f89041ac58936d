"""The narrow vision-language model interface every part of ktmu talks to."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, ClassVar, ContextManager, Iterable, Iterator, Mapping, Sequence, Union

import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file
from torch import nn

from ktmu.outputs import atomic_path
from ktmu.registry import suggest
from ktmu.runtime.device import autocast, check_precision, needs_grad_scaler
from ktmu.errors import KtmuError

# What ``Backbone.tokenize`` returns and only ``Backbone.encode_text`` reads: a tensor of token ids
# (open_clip) or a dict of tensors (Hugging Face: input ids and attention mask).
Tokens = Union[torch.Tensor, dict[str, torch.Tensor]]

TOWERS = ("image", "text", "temperature")
TOKEN_CACHE_ENTRIES = 4096  # tokenized lists of texts kept per backbone (a list of 1,000 CLIP prompts: 0.6 MB of ids)
TRAINABLE_CHOICES = ("default", "both", *TOWERS)


class BackboneError(KtmuError, ValueError):
    """A backbone that cannot be built or loaded; the message says what to do."""


def move_tokens(tokens: Tokens, device: torch.device) -> Tokens:
    """``tokens`` (a tensor or a dict of tensors) on ``device``."""
    if isinstance(tokens, torch.Tensor):
        return tokens.to(device)
    return {k: v.to(device) for k, v in tokens.items()}


class Backbone:
    """A CLIP-family model with its tokenizer and image preprocessing.

    Each kind (a subclass registered in :data:`ktmu.backbones.BACKBONES`) parses its own spec in
    :meth:`from_spec` and declares its ``towers``: the parameter-name prefixes of the image tower,
    the text tower and the temperature, which :meth:`set_trainable` chooses among.

    ``frozen_prefixes`` name parameters that are never trained, whatever the choice (and therefore
    never saved by :meth:`save_weights`, because they come from elsewhere, e.g. a text encoder's own
    package). ``precision`` (see :mod:`ktmu.runtime.device`) chooses the arithmetic of the encoders; the
    weights stay float32 and the encoders always return float32.
    """

    towers: ClassVar[dict[str, tuple[str, ...]]] = {}

    def __init__(
        self,
        name: str,
        model: nn.Module,
        tokenizer: Callable[[Sequence[str]], Tokens],
        preprocess: Callable[[Image.Image], torch.Tensor],
        frozen_prefixes: tuple[str, ...] = (),
        precision: str = "fp32",
        towers: Mapping[str, tuple[str, ...]] | None = None,
    ) -> None:
        self.name = name
        self.model = model
        self._tokenizer = tokenizer
        self.preprocess = preprocess
        self.frozen_prefixes = frozen_prefixes
        self.precision = check_precision(precision, self.device)
        if towers is not None:
            self.towers = dict(towers)
        self._token_cache: dict[tuple, Tokens] = {}  # (device, *texts) -> tokenize's result
        # Text features that no trainable weight can change, by (precision, prompts): see ktmu.backbones.encode.
        self.frozen_text_cache: dict[tuple, torch.Tensor] = {}
        self.compiled: str | None = None  # the torch.compile mode of the encoders (compile()), None when eager
        self.channels_last = False  # images (and convolution weights) channels-last (set_channels_last())
        self.trainable_choice = "default"
        self.set_trainable("default")

    @classmethod
    def from_spec(cls, rest: str, device: str | torch.device = "cpu", precision: str = "fp32") -> Backbone:
        """Build this kind from what follows ``kind:`` in a spec (possibly empty)."""
        raise NotImplementedError(f"{cls.__name__} does not parse specs; register a kind that does.")

    # ---- running --------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def autocast(self) -> ContextManager[object]:
        """The context the encoders run under: nothing for fp32, ``torch.autocast`` for bf16 / amp-fp16."""
        return autocast(self.device, self.precision)

    @property
    def needs_grad_scaler(self) -> bool:
        """Whether training this backbone needs a gradient scaler (amp-fp16)."""
        return needs_grad_scaler(self.precision)

    def tokenize(self, texts: Sequence[str]) -> Tokens:
        """Token ids (and whatever else the text encoder needs) for ``texts``, on the model's device.

        Remembered per list of texts and device: tokenizing is a pure function of the texts, and
        re-tokenizing the class prompts of every checkpoint-scoring pass cost more than encoding them
        (mini-clip: 20 ms against 0.5 ms for 100 prompts).
        """
        key = (str(self.device), *texts)
        tokens = self._token_cache.get(key)
        if tokens is None:
            if len(self._token_cache) >= TOKEN_CACHE_ENTRIES:
                self._token_cache.clear()
            tokens = self._token_cache[key] = move_tokens(self._tokenizer(list(texts)), self.device)
        return tokens

    def encode_image(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Float32 image features of a preprocessed batch, unit-length when ``normalize``."""
        images = images.to(self.device)
        if self.channels_last and images.dim() == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        with self.autocast():
            feats = self._encode_image(images)
        feats = feats.float()
        return F.normalize(feats, dim=-1) if normalize else feats

    def encode_text(self, tokens: Tokens, normalize: bool = True) -> torch.Tensor:
        """Float32 text features of :meth:`tokenize`'s output, unit-length when ``normalize``."""
        with self.autocast():
            feats = self._encode_text(move_tokens(tokens, self.device))
        feats = feats.float()
        return F.normalize(feats, dim=-1) if normalize else feats

    def encode_texts(self, texts: Sequence[str], normalize: bool = True) -> torch.Tensor:
        """Tokenize and encode in one call."""
        return self.encode_text(self.tokenize(texts), normalize=normalize)

    def encode_texts_full_context(self, texts: Sequence[str], normalize: bool = True) -> torch.Tensor:
        """Float32 features of ``texts`` as a plain CLIP pipeline computes them: tokenized now, every position of the
        tokenizer's full context through every text layer, nothing trimmed or cached.

        The same features as :meth:`encode_texts` (to float rounding) at a plain pipeline's cost: the
        reference study's per-step text encoding, which ``ktmu perf --baseline study`` times.
        """
        tokens = self._full_context_tokens(texts)
        with self.autocast():
            feats = self._encode_text_full_context(tokens).float()
        return F.normalize(feats, dim=-1) if normalize else feats

    def _full_context_tokens(self, texts: Sequence[str]) -> Tokens:
        return move_tokens(self._tokenizer(list(texts)), self.device)  # tokenized now: a plain pipeline keeps no token cache

    def _encode_text_full_context(self, tokens: Tokens) -> torch.Tensor:
        return self.model.encode_text(tokens, normalize=False)

    def _encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(images, normalize=False)

    def _encode_text(self, tokens: Tokens) -> torch.Tensor:
        return self.model.encode_text(tokens, normalize=False)

    def logit_scale(self) -> torch.Tensor:
        """The (exponentiated) temperature that turns cosine similarities into logits."""
        return self.model.logit_scale.exp()

    # ---- speed (ktmu.backbones.speed): same features, faster -----------------------------------------
    def encoder_modules(self) -> dict[str, nn.Module]:
        """The modules whose forward does the encoders' work, by tower (``image``, ``text``); each kind names its own."""
        return {}

    def compile(self, mode: str = "default") -> None:
        """Compile the encoders with torch.compile (in place: parameter names and state unchanged).

        Compilation happens on each encoder's first call (and once more when shapes vary). Raises
        :class:`BackboneError` when torch cannot compile here, saying why.
        """
        from ktmu.backbones.speed import compile_modules, compile_unavailable

        reason = compile_unavailable(self.device)
        if reason:
            raise BackboneError(f"cannot compile {self.name} on {self.device}: {reason}. Run without --compile.")
        modules = list(self.encoder_modules().values())
        if not modules:
            raise BackboneError(f"backbone {self.name} names no encoder module to compile; run without --compile.")
        compile_modules(modules, mode)
        self.compiled = mode

    def uncompile(self) -> None:
        """Run the encoders eagerly again after :meth:`compile`."""
        from ktmu.backbones.speed import uncompile_modules

        uncompile_modules(self.encoder_modules().values())
        self.compiled = None

    def set_channels_last(self, enable: bool = True) -> None:
        """Keep the image tower's convolution weights and the images channels-last (faster convolutions on some devices)."""
        from ktmu.backbones.speed import set_channels_last

        image = self.encoder_modules().get("image")
        if image is None:
            raise BackboneError(f"backbone {self.name} names no image encoder module; leave channels-last off.")
        set_channels_last([image], enable)
        self.channels_last = enable

    def set_image_pipeline(self, pipeline: str) -> bool:
        """Where the images of sources built from :attr:`preprocess` from now on are scaled and normalised: ``host`` or ``device``.

        ``device`` splits the preprocess (:mod:`ktmu.data.device_preprocess`): decode, resize and crop
        to uint8 in the data workers, the rest where the batch lands. A preprocess that is not the
        standard torchvision chain cannot be split and keeps the host path (no error). Returns whether
        the images are now finished on the device.
        """
        from ktmu.data.device_preprocess import DevicePreprocess, pipeline_preprocess

        self.preprocess = pipeline_preprocess(self.preprocess, pipeline)
        return isinstance(self.preprocess, DevicePreprocess)

    # ---- what trains ----------------------------------------------------------------------------
    def set_trainable(self, choice: str) -> None:
        """Choose which parameters train: ``default``, ``both``, ``image``, ``text``, ``temperature`` or a '+'-join.

        ``default`` trains everything not under ``frozen_prefixes``; ``both`` is image + text +
        temperature (the study's setting); ``image+temperature`` and the like combine towers.
        Parameters under ``frozen_prefixes`` never train.
        """
        prefixes = self._choice_prefixes(choice)
        trains = {
            n: not n.startswith(self.frozen_prefixes) and (prefixes is None or n.startswith(prefixes))
            for n, _ in self.model.named_parameters()
        }
        if not any(trains.values()):
            raise BackboneError(f"trainable choice {choice!r} leaves nothing to train in {self.name}; pick another tower.")
        for n, p in self.model.named_parameters():
            p.requires_grad_(trains[n])
        self.trainable_choice = choice.strip().lower()
        self.frozen_text_cache.clear()  # text weights may have trained under the previous choice

    def _choice_prefixes(self, choice: str) -> tuple[str, ...] | None:
        """The parameter prefixes ``choice`` trains, or None for ``default``."""
        key = choice.strip().lower()
        if key == "default":
            return None
        prefixes: list[str] = []
        for part in (p.strip() for p in key.split("+")):
            towers = TOWERS if part == "both" else (part,)
            for tower in towers:
                if tower not in TOWERS:
                    raise BackboneError(
                        f"unknown trainable choice {part!r} in {choice!r}.{suggest(part, list(TRAINABLE_CHOICES))} "
                        f"Choose {', '.join(TRAINABLE_CHOICES)}, or towers joined by '+' such as image+temperature."
                    )
                if tower not in self.towers:
                    raise BackboneError(f"backbone {self.name} declares no {tower} tower; choose among {', '.join(self.towers)}.")
                prefixes += self.towers[tower]
        return tuple(prefixes)

    def named_trainable_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """The parameters that currently train (``requires_grad``), by name."""
        return ((n, p) for n, p in self.model.named_parameters() if p.requires_grad)

    @property
    def text_trainable(self) -> bool:
        """Whether any text-tower parameter trains (then text features must be recomputed every step)."""
        text = self.towers.get("text", ())
        return any(p.requires_grad for n, p in self.model.named_parameters() if n.startswith(text))

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute activations in the backward pass instead of storing them (memory for compute)."""
        if enable:
            raise BackboneError(f"backbone {self.name} has no gradient checkpointing; train it without.")

    # ---- weights ----------------------------------------------------------------------------------
    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Everything but the frozen parameters: what a checkpoint of this backbone must hold."""
        return {
            k: v.detach().cpu().contiguous()
            for k, v in self.model.state_dict().items()
            if not k.startswith(self.frozen_prefixes)
        }

    def save_weights(self, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
        """Write the trainable state as safetensors, byte-identical for identical weights (atomic, mode 0644)."""
        return save_safetensors(self.trainable_state_dict(), path, metadata)

    def load_weights(self, path: str | Path) -> None:
        """Load a safetensors checkpoint written by :meth:`save_weights` (or a full state dict)."""
        path = Path(path)
        if not path.is_file():
            raise BackboneError(f"checkpoint {path} does not exist.")
        try:
            state = load_file(str(path))
        except Exception as e:  # safetensors raises its own (undocumented) error types for corrupt files
            raise BackboneError(f"{path} is not a readable safetensors file: {e}") from e
        result = self.model.load_state_dict(state, strict=False)
        missing = [k for k in result.missing_keys if not k.startswith(self.frozen_prefixes)]
        if missing or result.unexpected_keys:
            raise BackboneError(
                f"{path} does not fit backbone {self.name!r}: "
                f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                f"unexpected {result.unexpected_keys[:5]}{'...' if len(result.unexpected_keys) > 5 else ''}."
            )
        self._weights_changed(state)

    def snapshot(self) -> dict[str, torch.Tensor]:
        """A detached CPU copy of the trainable state, buffers included (for restoring or task vectors)."""
        return {k: v.clone() for k, v in self.trainable_state_dict().items()}

    def restore(self, state: dict[str, torch.Tensor]) -> None:
        """Load a :meth:`snapshot` back."""
        self.model.load_state_dict(state, strict=False)
        self._weights_changed(state)

    def copy_trainable(self) -> dict[str, torch.Tensor]:
        """Detached clones of the parameters that currently train, on their own device (no CPU round trip)."""
        return {n: p.detach().clone() for n, p in self.named_trainable_parameters()}

    def load_trainable(self, state: Mapping[str, torch.Tensor]) -> None:
        """Copy ``state`` (e.g. from :meth:`copy_trainable`) into the model's parameters in place."""
        params = dict(self.model.named_parameters())
        unknown = [k for k in state if k not in params]
        if unknown:
            raise BackboneError(f"{unknown[:5]} are not parameters of {self.name}; pass a state from copy_trainable().")
        with torch.no_grad():
            for k, v in state.items():
                params[k].copy_(v)
        self._weights_changed(state)

    def _weights_changed(self, keys: Iterable[str]) -> None:
        """Called after the weights named by ``keys`` were replaced; forgets what was computed from them.

        Kinds that cache more extend this (and call it).
        """
        text = tuple(self.towers.get("text", ())) + tuple(self.frozen_prefixes)
        if any(k.startswith(text) for k in keys):
            self.frozen_text_cache.clear()


# safetensors' dtype names (https://github.com/huggingface/safetensors, "Format").
_ST_DTYPES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL",
}


def save_safetensors(tensors: Mapping[str, torch.Tensor], path: str | Path, metadata: Mapping[str, str] | None = None) -> Path:
    """Write ``tensors`` as a safetensors file whose bytes depend only on the tensors and ``metadata``.

    safetensors' own writer orders the metadata by a per-process random hash, so the same weights
    gave different files. Here the header is JSON with sorted keys and the data is laid out in
    (element size descending, name) order, which keeps every tensor aligned to its element size
    for memory-mapping readers. The file is written atomically with mode 0644.
    """
    meta = dict(metadata or {})
    bad = [k for k, v in meta.items() if not (isinstance(k, str) and isinstance(v, str))]
    if bad:
        raise TypeError(f"safetensors metadata must map str to str; offending keys: {bad}.")
    flat: dict[str, torch.Tensor] = {}
    for name, t in tensors.items():
        if t.dtype not in _ST_DTYPES:
            raise TypeError(f"tensor {name!r} has dtype {t.dtype}, which ktmu does not write to safetensors.")
        flat[name] = t.detach().cpu().contiguous()
    order = sorted(flat, key=lambda k: (-flat[k].element_size(), k))
    header: dict[str, object] = {"__metadata__": meta} if meta else {}
    offset = 0
    for name in order:
        t = flat[name]
        nbytes = t.numel() * t.element_size()
        header[name] = {"dtype": _ST_DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    blob = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # the data starts 8-byte aligned, as safetensors' writer pads it
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(len(blob).to_bytes(8, "little"))
            f.write(blob)
            for name in order:
                f.write(flat[name].reshape(-1).view(torch.uint8).numpy().data)
    return Path(path)
