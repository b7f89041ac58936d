"""Prompt templates that turn concept names into captions."""
from __future__ import annotations

# Ten generic templates in the style of CLIP's ImageNet ensemble, trimmed to what fits grey
# 28-pixel images of objects and digits. Used for pretraining captions, zero-shot ensembles and
# the one-random-template-per-step text features during unlearning.
TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a picture of a {}.",
    "an image of a {}.",
    "a grayscale photo of a {}.",
    "a low-resolution photo of a {}.",
    "a close-up photo of a {}.",
    "a photo of the {}.",
    "a blurry photo of a {}.",
    "a {}.",
    "this is a {}.",
)

