"""The narrow vision-language model interface every part of ktmu talks to."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import nn


class BackboneError(ValueError):
    """A backbone that cannot be built or loaded; the message says what to do."""


class Backbone:
    """A CLIP-family model with its tokenizer and image preprocessing.

    ``frozen_prefixes`` name parameters that are never trained (and therefore never saved by
    :meth:`save_weights`, because they come from elsewhere, e.g. a text encoder's own package).
    """

    def __init__(
        self,
        name: str,
        model: nn.Module,
        tokenizer: Callable[[Sequence[str]], torch.Tensor],
        preprocess: Callable[[Image.Image], torch.Tensor],
        frozen_prefixes: tuple[str, ...] = (),
    ) -> None:
        self.name = name
        self.model = model
        self._tokenizer = tokenizer
        self.preprocess = preprocess
        self.frozen_prefixes = frozen_prefixes
        for n, p in model.named_parameters():
            p.requires_grad_(not n.startswith(frozen_prefixes))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        return self._tokenizer(list(texts)).to(self.device)

    def encode_image(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        return self.model.encode_image(images.to(self.device), normalize=normalize)

    def encode_text(self, tokens: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        return self.model.encode_text(tokens.to(self.device), normalize=normalize)

    def encode_texts(self, texts: Sequence[str], normalize: bool = True) -> torch.Tensor:
        """Tokenize and encode in one call."""
        return self.encode_text(self.tokenize(texts), normalize=normalize)

    def logit_scale(self) -> torch.Tensor:
        """The (exponentiated) temperature that turns cosine similarities into logits."""
        return self.model.logit_scale.exp()

    def named_trainable_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        return ((n, p) for n, p in self.model.named_parameters() if not n.startswith(self.frozen_prefixes))

    # ---- weights ------------------------------------------------------------------------------
    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Everything but the frozen parameters: what a checkpoint of this backbone must hold."""
        return {
            k: v.detach().cpu().contiguous()
            for k, v in self.model.state_dict().items()
            if not k.startswith(self.frozen_prefixes)
        }

    def save_weights(self, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
        """Write the trainable state as safetensors."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(self.trainable_state_dict(), str(path), metadata=metadata)
        return path

    def load_weights(self, path: str | Path) -> None:
        """Load a safetensors checkpoint written by :meth:`save_weights` (or a full state dict)."""
        path = Path(path)
        if not path.is_file():
            raise BackboneError(f"checkpoint {path} does not exist.")
        try:
            state = load_file(str(path))
        except Exception as e:  # safetensors raises its own error types
            raise BackboneError(f"{path} is not a readable safetensors file: {e}") from e
        result = self.model.load_state_dict(state, strict=False)
        missing = [k for k in result.missing_keys if not k.startswith(self.frozen_prefixes)]
        if missing or result.unexpected_keys:
            raise BackboneError(
                f"{path} does not fit backbone {self.name!r}: "
                f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                f"unexpected {result.unexpected_keys[:5]}{'...' if len(result.unexpected_keys) > 5 else ''}."
            )

    def snapshot(self) -> dict[str, torch.Tensor]:
        """A detached copy of the trainable state (for restoring or task vectors)."""
        return {k: v.clone() for k, v in self.trainable_state_dict().items()}

    def restore(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state, strict=False)
