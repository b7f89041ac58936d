"""The frozen original model's outputs on the forget set (and the neighbour images), computed once and read by the methods that compare with it."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ktmu.backbones import Backbone
from ktmu.backbones.encode import TemplateTextFeatures, embed_source
from ktmu.concepts import Hierarchy
from ktmu.engine.forget_set import ForgetSet
from ktmu.engine.neighbours import NeighbourSet
from ktmu.methods import UnlearningMethod
from ktmu.prompts import train_templates


def reads_reference(method: UnlearningMethod) -> bool:
    """Whether ``method`` reads the original's forget-set outputs: its logits (``needs_reference``) or its features (``needs_features``)."""
    return method.needs_reference or method.needs_features


@dataclass
class Reference:
    """The original model's outputs on the forget set: image features and per-template text features.

    The forget images are not augmented and the original never changes, so one pass serves every
    step, epoch and method of a session.
    """

    image: torch.Tensor  # (N, D) unit features, CPU
    fine_text: torch.Tensor  # (T, F, D)
    coarse_text: torch.Tensor  # (T, C, D)
    scale: torch.Tensor  # ()
    neighbour_image: torch.Tensor | None = None  # (M, D) unit features of the neighbour images, CPU (None without neighbours)
    # The same tensors per device they were asked on (a few MB): copied once, so that no step waits for a host copy.
    _on_device: dict[torch.device, tuple[torch.Tensor | None, ...]] = field(default_factory=dict, repr=False, compare=False)

    def logits(self, positions: torch.Tensor, template: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The original's fine and coarse logits of the forget images at ``positions`` under training template ``template``."""
        return self._logits(0, positions, template, device)

    def neighbour_logits(self, positions: torch.Tensor, template: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The same for the neighbour images at ``positions``."""
        if self.neighbour_image is None:
            raise ValueError("this reference was computed without neighbour images")  # an internal bug: the trainer passes them together
        return self._logits(1, positions, template, device)

    def _logits(self, which: int, positions: torch.Tensor, template: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        device = torch.device(device)
        if device not in self._on_device:
            self._on_device[device] = tuple(None if t is None else t.to(device)
                                            for t in (self.image, self.neighbour_image, self.fine_text, self.coarse_text, self.scale))
        image, neighbour_image, fine_text, coarse_text, scale = self._on_device[device]
        img = (image, neighbour_image)[which][positions.to(device, non_blocking=True)]
        return scale * img @ fine_text[template].T, scale * img @ coarse_text[template].T


@torch.no_grad()
def compute_reference(backbone: Backbone, forget: ForgetSet, world: Hierarchy, batch_size: int = 256, workers: int = 0,
                      neighbours: NeighbourSet | None = None) -> Reference:
    """The frozen original's forget-set (and neighbour) image features and per-template class text features (computed once)."""
    image = embed_source(backbone, forget.source, batch_size=batch_size, workers=workers)
    near = embed_source(backbone, neighbours.source, batch_size=batch_size, workers=workers) if neighbours is not None else None
    templates = train_templates(world)
    fine = TemplateTextFeatures(backbone, world.fine_names, templates).stacked()
    coarse = TemplateTextFeatures(backbone, world.coarse_names, templates).stacked()
    return Reference(image, fine, coarse, backbone.logit_scale().detach().float().cpu(), near)
