"""Zero-shot domains: registered datasets outside the world being edited, each a class-name list plus templates.

A domain is measured by fine (class-name) accuracy only. Built-in worlds (``fashion``, ``digits``)
are domains; dataset folders on disk (Food101, CIFAR100, ...) are registered the same way and take
their root folder from ``--zero-shot NAME=DIR``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ktmu.data import ConceptDataset, DatasetError, load_dataset
from ktmu.prompts import TEMPLATES
from ktmu.registry import Registry


@dataclass(frozen=True)
class ZeroShotDomain:
    """A zero-shot evaluation set: ``load(root)`` returns its evaluation split; ``templates`` caption its class names."""

    name: str
    load: Callable[[Path | None], ConceptDataset]
    templates: tuple[str, ...] = TEMPLATES
    needs_root: bool = True  # False for built-in worlds that ship with ktmu

    def check_root(self, root: str | Path | None) -> Path | None:
        """The folder to read, checked: a domain read from disk needs one that exists."""
        if self.needs_root and root is None:
            raise DatasetError(f"zero-shot domain {self.name!r} is read from disk: pass --zero-shot {self.name}=DIR.")
        if root is not None and not Path(root).is_dir():
            raise DatasetError(f"zero-shot folder {root} for {self.name!r} does not exist.")
        return Path(root) if root is not None else None

    def open(self, root: str | Path | None = None) -> ConceptDataset:
        """The domain's evaluation split."""
        return self.load(self.check_root(root))


def _builtin(world: str) -> ZeroShotDomain:
    return ZeroShotDomain(world, lambda root: load_dataset(world, "test"), TEMPLATES, needs_root=False)


DOMAINS: Registry[ZeroShotDomain] = Registry("zero-shot domain")
DOMAINS.register("fashion", _builtin("fashion"))
DOMAINS.register("digits", _builtin("digits"))

EMBEDDED_BACKBONES = ("mini-clip", "tiny-clip")  # 28-px grey models that know the built-in worlds
BUILTIN_WORLDS = ("fashion", "digits")


@dataclass(frozen=True)
class DomainChoice:
    """One ``--zero-shot NAME[=DIR]`` entry, resolved."""

    domain: ZeroShotDomain
    root: Path | None = None


def parse_zero_shot(specs: Sequence[str] | None, backbone_name: str, world: str) -> tuple[list[DomainChoice], str | None]:
    """Resolve ``--zero-shot`` entries; returns the choices and a note to print once when a default was applied.

    Default (``specs`` None): for the embedded backbones the built-in worlds other than ``world``;
    for any other backbone no domain at all (their 28-px grey images would only cost time).
    ``["none"]`` asks for no domain.
    """
    if specs is None:
        if backbone_name.split(":")[0] in EMBEDDED_BACKBONES:
            return [DomainChoice(DOMAINS.get(w)) for w in BUILTIN_WORLDS if w != world], None
        return [], f"no zero-shot domain for {backbone_name} by default; add --zero-shot NAME=DIR (e.g. food101=/data/food-101)."
    if [s.lower() for s in specs] == ["none"]:
        return [], None
    out = []
    for spec in specs:
        name, sep, root = spec.partition("=")
        if name.lower() == "none":
            raise DatasetError("--zero-shot none cannot be combined with other domains.")
        domain = DOMAINS.get(name)
        out.append(DomainChoice(domain, domain.check_root(root if sep else None)))
    return out, None


# The reference study's zero-shot suite, each read from a local folder in torchvision's layout (ktmu.data.zero_shot).
DOMAINS.register("food101", "ktmu.data.zero_shot.food101:DOMAIN")
DOMAINS.register("flowers102", "ktmu.data.zero_shot.flowers102:DOMAIN")
DOMAINS.register("caltech101", "ktmu.data.zero_shot.caltech101:DOMAIN")
DOMAINS.register("oxford_pet", "ktmu.data.zero_shot.oxford_pet:DOMAIN")
DOMAINS.register("cifar100", "ktmu.data.zero_shot.cifar100:DOMAIN")
DOMAINS.register("stanford_cars", "ktmu.data.zero_shot.stanford_cars:DOMAIN")
