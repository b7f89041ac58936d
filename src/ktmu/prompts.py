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


# Held-out templates for the knowledge audit (``ktmu audit``) only: never used by pretraining, the
# unlearning trainer or the zero-shot ensemble. A method that removed the concept only under the
# ten prompts it trained with still answers to these. Written, before any measurement, to suit both
# small grey images and ordinary photos, and to share no full wording with TEMPLATES.
AUDIT_TEMPLATES: tuple[str, ...] = (
    "a black and white photo of a {}.",
    "a small grey picture of a {}.",
    "a pixelated image of a {}.",
    "a cropped photo of a {}.",
    "a bright photo of a {}.",
    "a dark photo of a {}.",
    "a photo of one {}.",
    "there is a {} in this picture.",
)


def train_templates(world) -> tuple[str, ...]:
    """The templates that caption class names while unlearning in ``world``: its own ``train`` list, else :data:`TEMPLATES`."""
    return tuple(getattr(world, "train_templates", ())) or TEMPLATES


def eval_templates(world) -> tuple[str, ...]:
    """The templates of zero-shot evaluation (and forget-set scoring) in ``world``: its own ``test`` list, else :data:`TEMPLATES`."""
    return tuple(getattr(world, "test_templates", ())) or TEMPLATES
