"""Writing a backbone in the format its own ecosystem loads, where ktmu is not installed.

* ``hf``: a ``save_pretrained`` folder (``config.json``, ``model.safetensors``, the tokenizer's
  files, ``preprocessor_config.json``) that ``transformers.CLIPModel.from_pretrained(DIR)`` loads;
* ``open_clip``: ``open_clip_model.safetensors`` (the full state dict) and
  ``open_clip_config.json`` (``{"model_cfg", "preprocess_cfg"}``, open_clip's hub layout), which
  ``open_clip.create_model_and_transforms(ARCH, pretrained=PATH)`` and
  ``create_model_and_transforms("local-dir:DIR")`` load;
* ``ktmu``: ``model.safetensors`` as :meth:`Backbone.save_weights` writes it, what
  ``--model mini-clip:PATH`` (or ``tiny-clip:PATH``) loads.

Which format applies is decided by the spec's kind before any model loads (:func:`check_format`).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from ktmu.backbones.base import Backbone, BackboneError, save_safetensors
from ktmu.outputs import write_json_atomic

FORMATS = ("hf", "open_clip", "ktmu")
# spec kind -> the formats it can be written in; the first is its native one (``--format auto``)
KIND_FORMATS: dict[str, tuple[str, ...]] = {
    "hf": ("hf",),
    "open_clip": ("open_clip",),
    "tiny-clip": ("ktmu", "open_clip"),  # an open_clip CLIP: its config travels in open_clip_config.json
    "mini-clip": ("ktmu",),
}
# why a format does not apply to a kind (the refusal says so, and what to use instead)
WHY_NOT = {
    ("mini-clip", "open_clip"): "its image tower is ktmu's own CNN (registered in timm by ktmu) and its text tower is read "
                                "from ktmu's MiniLM package, so open_clip cannot build it without ktmu",
    ("mini-clip", "hf"): "it is an open_clip CustomTextCLIP with a CNN image tower, which transformers' CLIPModel cannot hold",
    ("tiny-clip", "hf"): "it is an open_clip model; converting open_clip weights to transformers' CLIPModel layout is not supported",
    ("open_clip", "hf"): "converting open_clip weights to transformers' CLIPModel layout is not supported",
    ("open_clip", "ktmu"): "its open_clip export already loads in ktmu (--model open_clip:ARCH:DIR/open_clip_model.safetensors)",
    ("hf", "open_clip"): "converting transformers' CLIPModel weights to open_clip's layout is not supported",
    ("hf", "ktmu"): "its hf export already loads in ktmu (--model hf:DIR)",
}
HF_WEIGHTS, OPEN_CLIP_WEIGHTS, OPEN_CLIP_CONFIG, KTMU_WEIGHTS = ("model.safetensors", "open_clip_model.safetensors",
                                                                 "open_clip_config.json", "model.safetensors")


class ExportError(BackboneError):
    """An export that cannot be written as asked (a format that does not apply, a model it cannot write)."""


def check_format(spec: str, fmt: str = "auto") -> str:
    """The format a model of ``spec`` is exported in (``auto``: its native one); refuse one that does not apply, naming why."""
    kind = spec.partition(":")[0]
    if kind not in KIND_FORMATS:
        from ktmu.backbones import BACKBONES

        BACKBONES.get(kind)  # the registry's did-you-mean error for an unknown kind
        raise ExportError(f"ktmu cannot export {kind}: models; exports exist for {', '.join(KIND_FORMATS)}.")
    formats = KIND_FORMATS[kind]
    if fmt == "auto":
        return formats[0]
    if fmt not in FORMATS:
        raise ExportError(f"--format {fmt!r} is not an export format; use auto or one of {', '.join(FORMATS)}.")
    if fmt not in formats:
        why = WHY_NOT.get((kind, fmt), "it does not apply")
        raise ExportError(f"--format {fmt} does not apply to {kind}: models: {why}. Use --format "
                          f"{' or '.join(formats)} (or auto).")
    return fmt


def export_backbone(backbone: Backbone, spec: str, folder: str | Path, fmt: str, metadata: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Write ``backbone`` into ``folder`` (which must exist) in ``fmt``; returns the files written and how to load them.

    ``metadata``: more safetensors metadata (e.g. the checkpoint's ledger) for the formats whose
    weights ktmu writes itself (open_clip, ktmu); transformers' own writer takes none.
    """
    folder = Path(folder)
    kind = spec.partition(":")[0]
    writer = {"hf": _write_hf, "open_clip": _write_open_clip, "ktmu": _write_ktmu}[check_format(spec, fmt)]
    return writer(backbone, kind, spec, folder, dict(metadata or {}))


def _write_hf(backbone: Backbone, kind: str, spec: str, folder: Path, metadata: dict[str, str]) -> dict[str, Any]:
    """transformers' own save_pretrained of the model (safetensors) with the source folder's tokenizer and image processor."""
    from transformers import AutoTokenizer, CLIPImageProcessor

    source = Path(backbone.name.removeprefix("hf:")).expanduser()  # HFClipBackbone is named hf:DIR, the folder it came from
    backbone.model.save_pretrained(str(folder), safe_serialization=True)
    AutoTokenizer.from_pretrained(str(source), local_files_only=True).save_pretrained(str(folder))
    if (source / "preprocessor_config.json").is_file():
        processor = CLIPImageProcessor.from_pretrained(str(source), local_files_only=True)
    else:  # ktmu preprocessed with CLIPImageProcessor's defaults at the model's size (hf_clip.processor_transform)
        size = int(backbone.model.config.vision_config.image_size)
        processor = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    processor.save_pretrained(str(folder))
    files = sorted(p.name for p in folder.iterdir() if p.is_file())
    return {"format": "hf", "library": "transformers", "files": files,
            "load": "from transformers import CLIPModel, CLIPProcessor\n\n"
                    "model = CLIPModel.from_pretrained(DIR)\nprocessor = CLIPProcessor.from_pretrained(DIR)", "load_language": "python",
            "ktmu_spec": "hf:DIR"}


def _open_clip_config(backbone: Backbone, kind: str, spec: str) -> tuple[str, dict, dict]:
    """(architecture name, model config, preprocess config) of an open_clip model."""
    import open_clip

    if kind == "tiny-clip":
        from ktmu.backbones.open_clip_backbone import TINY_CLIP_CONFIG

        # ktmu feeds it 28 px grey images as three equal channels, unnormalised (build_tiny_clip's preprocess)
        return "ktmu-tiny-clip", dict(TINY_CLIP_CONFIG), {"size": 28, "mean": [0.0] * 3, "std": [1.0] * 3,
                                                          "interpolation": "bilinear", "resize_mode": "squash"}
    arch = spec.split(":")[1]
    cfg = open_clip.get_model_config(arch)
    if cfg is None:
        raise ExportError(f"open_clip has no model config for {arch!r}; export needs one of open_clip.list_models().")
    pre = open_clip.get_model_preprocess_cfg(backbone.model)
    return arch, cfg, {k: list(v) if isinstance(v, tuple) else v for k, v in pre.items()}


def _write_open_clip(backbone: Backbone, kind: str, spec: str, folder: Path, metadata: dict[str, str]) -> dict[str, Any]:
    """The full state dict as safetensors and the model/preprocess config in open_clip's hub layout."""
    arch, model_cfg, preprocess_cfg = _open_clip_config(backbone, kind, spec)
    state = {k: v.detach().cpu().contiguous() for k, v in backbone.model.state_dict().items()}
    save_safetensors(state, folder / OPEN_CLIP_WEIGHTS, {**metadata, "format": "pt", "architecture": arch})
    write_json_atomic(folder / OPEN_CLIP_CONFIG, {"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg})
    registered = kind == "open_clip"
    load = (f"import open_clip\n\nmodel, _, preprocess = open_clip.create_model_and_transforms({arch!r}, pretrained=DIR + '/{OPEN_CLIP_WEIGHTS}')\n"
            f"tokenizer = open_clip.get_tokenizer({arch!r})") if registered else (
            "import open_clip\n\nmodel, _, preprocess = open_clip.create_model_and_transforms('local-dir:' + DIR)\n"
            "tokenizer = open_clip.get_tokenizer('local-dir:' + DIR)")
    return {"format": "open_clip", "library": "open_clip", "architecture": arch, "files": [OPEN_CLIP_CONFIG, OPEN_CLIP_WEIGHTS],
            "load": load + ("\n# or, from the folder's own config: open_clip.create_model_and_transforms('local-dir:' + DIR)" if registered else ""),
            "load_language": "python",
            "ktmu_spec": f"open_clip:{arch}:DIR/{OPEN_CLIP_WEIGHTS}" if registered else f"{kind}:DIR/{OPEN_CLIP_WEIGHTS}"}


def _write_ktmu(backbone: Backbone, kind: str, spec: str, folder: Path, metadata: dict[str, str]) -> dict[str, Any]:
    """ktmu's own checkpoint: the trainable state (the frozen MiniLM of mini-clip comes from its package)."""
    backbone.save_weights(folder / KTMU_WEIGHTS, metadata={**metadata, "format": "ktmu-export", "kind": kind})
    return {"format": "ktmu", "library": "ktmu", "files": [KTMU_WEIGHTS],
            "load": f"ktmu eval --model {kind}:$DIR/{KTMU_WEIGHTS}   # in Python: ktmu.load_backbone(f'{kind}:{{DIR}}/{KTMU_WEIGHTS}')",
            "load_language": "bash",
            "ktmu_spec": f"{kind}:DIR/{KTMU_WEIGHTS}"}


def describe_files(folder: Path) -> dict[str, int]:
    """Each file in an export folder with its size in bytes (for the record)."""
    return {p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.is_file()}


def read_export_record(folder: Path) -> dict | None:
    """A folder's ``ktmu_export.json``, or None when it holds no ktmu export."""
    path = folder / "ktmu_export.json"
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, json.JSONDecodeError):
        return None
