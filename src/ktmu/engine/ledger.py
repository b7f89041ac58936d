"""The ledger an unlearned checkpoint carries: its base model, then every unlearning request applied to it, in order.

A product forgets one concept in January and another in March, each time from the model it ships.
The ledger is what lets the March run know about January: the concepts already forgotten stay
forgotten (:attr:`ktmu.engine.request.UnlearningRequest.also_forgotten`), results are also scored
against the base model, and ``--audit`` audits every concept in it.

Where it lives (:func:`ledger_metadata` and :func:`write_sidecar` write it, :func:`read_ledger` reads it):

* in the checkpoint's safetensors metadata, under :data:`METADATA_KEY` (compact JSON with sorted
  keys): the record ktmu reads. Each request's ``date`` is left out there, so that the same command
  still writes the same bytes (docs/robustness.md);
* in a sidecar JSON beside it (``model.safetensors`` -> ``model.ledger.json``, :func:`sidecar_path`),
  dates included, for people and tools. A sidecar that differs from the ledger inside the checkpoint
  in anything but a date was edited by hand, and is refused naming the field.

The base model is named by its spec (a checkpoint path made absolute) and the sha256 of its
weights (:func:`weights_sha256`: ktmu's trainable state, so it is the same for a file and for the
shipped model); each request records the sha256 of the weights it wrote, so that a ledger copied
onto other weights is caught when they load. A checkpoint without a ledger (a base model, or one
written before ktmu kept ledgers) has the empty ledger and behaves as it always did.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

import torch

from ktmu.errors import KtmuError
from ktmu.outputs import write_json_atomic

LEDGER_FORMAT = "ktmu-ledger"
LEDGER_VERSION = 1  # raised when a field changes meaning; a reader refuses versions it does not know
METADATA_KEY = "ktmu_ledger"
SIDECAR_SUFFIX = ".ledger.json"
UNSTAMPED = ("date",)  # request fields kept out of the safetensors metadata: they would change the bytes of the same run
# Spec parts after the kind that name the architecture (the rest names weights): open_clip:ARCH[:TAG_OR_PATH].
ARCHITECTURE_PARTS = {"open_clip": 1}


class LedgerError(KtmuError, ValueError):
    """A ledger that cannot be trusted or used as asked (corrupt, edited, another base model); the message names the field."""


def checkpoint_of(spec: str) -> Path | None:
    """The ``.safetensors`` checkpoint a spec loads on top of its architecture (``mini-clip:X``, ``hf:DIR:X``, ...), if any."""
    tail = spec.rpartition(":")[2]
    return Path(tail) if tail.endswith(".safetensors") else None


def absolute_spec(spec: str) -> str:
    """``spec`` with its checkpoint path made absolute, so that a ledger names the same file from any folder."""
    ckpt = checkpoint_of(spec)
    return spec if ckpt is None else spec[: -len(str(ckpt))] + str(ckpt.resolve())


def architecture_of(spec: str) -> str:
    """What a spec says of the architecture alone: ``mini-clip:a.safetensors`` -> ``mini-clip``, ``open_clip:ViT-B-32:openai`` -> ``open_clip:ViT-B-32``."""
    kind, _, rest = spec.partition(":")
    parts = rest.split(":")[: ARCHITECTURE_PARTS.get(kind, 0)]
    return ":".join([kind, *parts])


def with_checkpoint(spec: str, checkpoint: str | Path) -> str:
    """The spec that loads ``checkpoint`` on ``spec``'s architecture: (``mini-clip``, ``a.safetensors``) -> ``mini-clip:a.safetensors``."""
    kind = spec.partition(":")[0]
    old = checkpoint_of(spec)
    if old is not None:
        return f"{spec[: -len(str(old)) - 1]}:{checkpoint}"
    return f"{spec if kind == 'hf' else architecture_of(spec)}:{checkpoint}"  # hf:DIR keeps its folder, the others their architecture


def weights_sha256(state: Mapping[str, torch.Tensor]) -> str:
    """sha256 over a state dict's names, dtypes, shapes and bytes in name order: equal exactly for equal weights."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def sidecar_path(checkpoint: str | Path) -> Path:
    """The ledger's JSON beside a checkpoint: ``DIR/model.safetensors`` -> ``DIR/model.ledger.json``."""
    p = Path(checkpoint)
    return p.with_name(p.name.removesuffix(".safetensors") + SIDECAR_SUFFIX)


@dataclass(frozen=True)
class BaseModel:
    """The model a ledger starts from: its spec, the architecture the spec names and its weights' sha256."""

    spec: str
    architecture: str
    sha256: str

    @classmethod
    def of(cls, spec: str, state: Mapping[str, torch.Tensor]) -> "BaseModel":
        """The base model loaded from ``spec`` whose trainable state is ``state``."""
        return cls(absolute_spec(spec), architecture_of(spec), weights_sha256(state))


@dataclass(frozen=True)
class LedgerEntry:
    """One unlearning request applied to the model, with what it ran with and the weights it wrote."""

    world: str
    goal: str
    concepts: tuple[str, ...]  # canonical names, as the request named them
    forget_fine: tuple[str, ...]  # the fine concepts whose images it forgot
    forget_coarse: tuple[str, ...]
    level: str | None  # the world's named request it came from (e.g. difficult), or None for --forget names
    method: str
    hyperparameters: dict[str, Any]
    train: dict[str, Any]  # the trainer settings (ktmu.engine.config.TrainConfig, with the rate and epochs that ran)
    seed: int
    forget_set_size: int
    max_per_concept: int
    forced: bool  # run with --force (a concept forgotten before, or one the model did not know)
    weights_sha256: str  # the weights this request wrote (weights_sha256 of their trainable state)
    commit: str  # ktmu's git commit
    ktmu_version: str
    date: str | None = None  # UTC, ISO 8601; only in the sidecar and results.json (see UNSTAMPED)


# LedgerEntry field -> (JSON type check, what to write): the reader's checks, one per field.
_KINDS: dict[str, tuple[Any, str]] = {
    "str": (lambda v: isinstance(v, str) and v != "", "a non-empty string"),
    "str?": (lambda v: v is None or isinstance(v, str), "a string or null"),
    "int": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0, "a whole number >= 0"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "names": (lambda v: isinstance(v, list) and all(isinstance(x, str) and x for x in v), "a list of names"),
    "concepts": (lambda v: isinstance(v, list) and v and all(isinstance(x, str) and x for x in v), "a non-empty list of names"),
    "mapping": (lambda v: isinstance(v, dict), "a mapping"),
    "sha256": (lambda v: isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v), "64 hex digits"),
}
_ENTRY_KINDS = {"world": "str", "goal": "str", "concepts": "concepts", "forget_fine": "names", "forget_coarse": "names", "level": "str?",
                "method": "str", "hyperparameters": "mapping", "train": "mapping", "seed": "int", "forget_set_size": "int",
                "max_per_concept": "int", "forced": "bool", "weights_sha256": "sha256", "commit": "str", "ktmu_version": "str",
                "date": "str?"}
_BASE_KINDS = {"spec": "str", "architecture": "str", "sha256": "sha256"}


def _checked(obj: Any, kinds: Mapping[str, str], where: str, optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """``obj``'s fields after checking each against ``kinds``; a missing, unknown or mistyped field is a :class:`LedgerError` naming it."""
    if not isinstance(obj, dict):
        raise LedgerError(f"{where} must be a mapping, got {type(obj).__name__}.")
    unknown = sorted(set(obj) - set(kinds))
    if unknown:
        raise LedgerError(f"{where} has unknown field {unknown[0]!r}; a ktmu ledger's fields are {', '.join(kinds)}.")
    out = {}
    for name, kind in kinds.items():
        if name not in obj:
            if name in optional:
                continue
            raise LedgerError(f"{where} lacks the field {name!r}.")
        check, what = _KINDS[kind]
        if not check(obj[name]):
            raise LedgerError(f"{where}.{name} must be {what}, got {obj[name]!r}.")
        out[name] = obj[name]
    return out


@dataclass(frozen=True)
class Ledger:
    """A checkpoint's history: its :class:`BaseModel` and the requests applied since, oldest first (empty: a base model)."""

    base: BaseModel | None = None
    requests: tuple[LedgerEntry, ...] = field(default_factory=tuple)

    @property
    def empty(self) -> bool:
        """True for a model no request has changed (a base model, or a checkpoint written without a ledger)."""
        return not self.requests

    def concepts_in(self, world: str) -> tuple[str, ...]:
        """Every concept the requests on ``world`` forgot, in the order they did, each once."""
        return tuple(dict.fromkeys(c for r in self.requests if r.world == world for c in r.concepts))

    def other_worlds(self, world: str) -> list[str]:
        """The worlds other than ``world`` that some request forgot concepts of."""
        return list(dict.fromkeys(r.world for r in self.requests if r.world != world))

    def holding(self, world: str, fine: str) -> int | None:
        """The number (1 = oldest) of the last request on ``world`` that forgot fine concept ``fine``'s images, or None."""
        found = [i for i, r in enumerate(self.requests, 1) if r.world == world and fine in r.forget_fine]
        return found[-1] if found else None

    def append(self, entry: LedgerEntry) -> "Ledger":
        """This ledger with one more request."""
        if self.base is None:
            raise ValueError("a ledger needs its base model before its first request (Ledger(base=BaseModel.of(...))).")
        return replace(self, requests=(*self.requests, entry))

    def to_json(self, dated: bool = True) -> dict[str, Any]:
        """The ledger as JSON; ``dated=False`` leaves out :data:`UNSTAMPED` fields (the safetensors metadata's form)."""
        entries = []
        for r in self.requests:
            d = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(r).items()}
            entries.append({k: v for k, v in d.items() if dated or k not in UNSTAMPED})
        return {"format": LEDGER_FORMAT, "version": LEDGER_VERSION, "base": asdict(self.base) if self.base else None, "requests": entries}

    @classmethod
    def from_json(cls, obj: Any, where: str) -> "Ledger":
        """Read a ledger written by :meth:`to_json`; anything else is a :class:`LedgerError` naming ``where`` and the field."""
        if not isinstance(obj, dict):
            raise LedgerError(f"{where} must be a mapping, got {type(obj).__name__}.")
        if obj.get("format") != LEDGER_FORMAT:
            raise LedgerError(f"{where}.format must be {LEDGER_FORMAT!r}, got {obj.get('format')!r}.")
        if obj.get("version") != LEDGER_VERSION:
            raise LedgerError(f"{where}.version is {obj.get('version')!r}; this ktmu reads ledger version {LEDGER_VERSION} "
                              "(a newer ktmu wrote it: upgrade ktmu).")
        unknown = sorted(set(obj) - {"format", "version", "base", "requests"})
        if unknown:
            raise LedgerError(f"{where} has unknown field {unknown[0]!r}; a ledger holds format, version, base and requests.")
        requests = obj.get("requests")
        if not isinstance(requests, list):
            raise LedgerError(f"{where}.requests must be a list, got {requests!r}.")
        if obj.get("base") is None:
            if requests:
                raise LedgerError(f"{where}.base is missing, but the ledger holds {len(requests)} request(s): which model did they start from?")
            return cls()
        base = BaseModel(**_checked(obj["base"], _BASE_KINDS, f"{where}.base"))
        entries = []
        for i, raw in enumerate(requests):
            values = _checked(raw, _ENTRY_KINDS, f"{where}.requests[{i}]", optional=UNSTAMPED)
            entries.append(LedgerEntry(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}))
        return cls(base, tuple(entries))


def ledger_metadata(ledger: Ledger) -> dict[str, str]:
    """The safetensors metadata entry that carries ``ledger`` (undated; empty for the empty ledger)."""
    if ledger.empty:
        return {}
    return {METADATA_KEY: json.dumps(ledger.to_json(dated=False), sort_keys=True, separators=(",", ":"), allow_nan=False)}


def write_sidecar(checkpoint: str | Path, ledger: Ledger) -> Path | None:
    """Write ``ledger`` (dated) as the sidecar JSON of a checkpoint saved with :func:`ledger_metadata`, atomically; the empty ledger writes nothing."""
    if ledger.empty:
        return None
    return write_json_atomic(sidecar_path(checkpoint), ledger.to_json())


def _header_metadata(path: Path) -> dict[str, str] | None:
    """The safetensors metadata of ``path``, or None when it is missing or not a readable safetensors file (its loader then says so)."""
    from safetensors import safe_open

    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception:  # safetensors raises its own (undocumented) error types; load_weights reports the file as unreadable
        return None


def _first_difference(a: Any, b: Any, where: str = "") -> tuple[str, Any, Any] | None:
    """The first field where ``a`` and ``b`` differ, as (path such as ``requests[0].concepts[0]``, a's value, b's), or None when equal."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            found = _first_difference(a.get(k), b.get(k), f"{where}.{k}" if where else k)
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return next((d for i, (x, y) in enumerate(zip(a, b)) if (d := _first_difference(x, y, f"{where}[{i}]"))), None)
    return None if a == b else (where, a, b)


def _parse(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise LedgerError(f"{where} is not valid JSON ({e}); the file is corrupt.") from e


def read_ledger(checkpoint: str | Path) -> Ledger:
    """The ledger of a checkpoint file (:class:`Ledger` ``()`` when it carries none); its sidecar, if any, must agree with it.

    A missing or unreadable checkpoint gives the empty ledger: loading it then reports the file.
    """
    path = Path(checkpoint)
    meta = _header_metadata(path)
    sidecar = sidecar_path(path)
    text = (meta or {}).get(METADATA_KEY)
    if text is None:
        if meta is not None and sidecar.is_file():
            raise LedgerError(f"{sidecar} holds a ledger but {path} carries none: the checkpoint was replaced or written by another tool. "
                              f"Remove {sidecar.name} if {path.name} is a base model, or restore the checkpoint that ledger describes.")
        return Ledger()
    inside = Ledger.from_json(_parse(text, f"the ledger in {path}"), f"the ledger in {path}")
    if not sidecar.is_file():
        return inside
    try:
        raw = _parse(sidecar.read_text(), str(sidecar))
    except OSError as e:
        raise LedgerError(f"cannot read {sidecar} ({e.strerror or e}).") from e
    beside = Ledger.from_json(raw, str(sidecar))
    differs = _first_difference(inside.to_json(dated=False), beside.to_json(dated=False))
    if differs:
        field_path, mine, theirs = differs
        raise LedgerError(f"{sidecar} differs from the ledger inside {path} at {field_path} ({theirs!r} there, {mine!r} in the checkpoint): "
                          f"it was edited by hand. ktmu reads the ledger inside the checkpoint; restore {sidecar.name} (or delete it) and run again.")
    return beside


__all__ = ["BaseModel", "Ledger", "LedgerEntry", "LedgerError", "absolute_spec", "architecture_of", "checkpoint_of", "ledger_metadata",
           "read_ledger", "sidecar_path", "weights_sha256", "with_checkpoint", "write_sidecar"]
