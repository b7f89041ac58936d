"""What every unlearning method sees: logits of one forget-set batch, never the model or the trainer."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import ClassVar, Iterator

import torch

from ktmu.settings import in_range, validate as validate_settings


@dataclass
class NeighbourBatch:
    """A batch of neighbour images (``--neighbours K``): train images of kept concepts near the forgotten ones.

    Everything in it is knowledge to keep: each image keeps its fine and its coarse label. The
    original model's logits and features are filled for methods that read the reference, the
    trainable features for methods with ``needs_features``.
    """

    fine_logits: torch.Tensor  # (M, F)
    coarse_logits: torch.Tensor  # (M, C)
    fine_target: torch.Tensor  # (M,)
    coarse_target: torch.Tensor  # (M,)
    ref_fine_logits: torch.Tensor | None = None  # the original model's, same shapes
    ref_coarse_logits: torch.Tensor | None = None
    image_features: torch.Tensor | None = None  # (M, D) unit image features (trainable)
    ref_image_features: torch.Tensor | None = None  # (M, D) the original model's, frozen


@dataclass
class Batch:
    """Zero-shot logits of a forget-set batch at both levels, plus the frozen original's where needed.

    Every sample forgets its fine label. ``forget_coarse`` marks samples whose coarse label is
    forgotten too (coarse and hybrid goals); elsewhere the coarse label is knowledge to keep.
    """

    fine_logits: torch.Tensor  # (B, F) scaled cosine similarities to fine class captions
    coarse_logits: torch.Tensor  # (B, C)
    fine_target: torch.Tensor  # (B,) fine index of each image
    coarse_target: torch.Tensor  # (B,)
    forget_coarse: torch.Tensor  # (B,) bool
    ref_fine_logits: torch.Tensor | None = None  # the original model's logits, same shapes
    ref_coarse_logits: torch.Tensor | None = None
    generator: torch.Generator | None = None  # for methods that draw random labels
    # Class masks of everything the request forgets at each level, (F,) and (C,). A forgotten
    # image must not land on *any* forgotten class (a shirt must not become a forgotten coat);
    # None means only each sample's own target is forgotten.
    fine_forgotten: torch.Tensor | None = None
    coarse_forgotten: torch.Tensor | None = None
    # Features, filled only for methods with ``needs_features = True`` (representation-space losses).
    image_features: torch.Tensor | None = None  # (B, D) unit image features of the batch (trainable)
    ref_image_features: torch.Tensor | None = None  # (B, D) the original model's, frozen
    fine_text: torch.Tensor | None = None  # (F, D) unit class text features under this step's template
    coarse_text: torch.Tensor | None = None  # (C, D)
    forgotten_name_text: torch.Tensor | None = None  # (A, D) every method-visible name (canonical + aliases) of the forgotten fine concepts
    logit_scale: torch.Tensor | None = None  # () the temperature that turned features into logits
    # The step's neighbour images, filled only for methods with ``needs_neighbours = True`` (``--neighbours K``, K > 0).
    neighbours: NeighbourBatch | None = None


@dataclass
class UnlearningMethod:
    """Base of all methods. Subclasses are dataclasses whose fields are their hyperparameters.

    ``lr`` and ``epochs`` are each method's tuned training defaults; the trainer uses them unless
    told otherwise. Two hooks, declared here with defaults that do nothing:
    :meth:`update_mask_fraction` (the trainer restricts updates to the weights most salient for
    :meth:`saliency_loss`) and :meth:`finalize_` (the trainer maps trained weights to the weights
    that are scored and kept, in place; ``rewrites_weights`` says it does).
    """

    name: ClassVar[str] = ""
    needs_reference: ClassVar[bool] = False  # the trainer builds the frozen original only when True
    needs_features: ClassVar[bool] = False  # the trainer fills the Batch's feature fields only when True
    needs_neighbours: ClassVar[bool] = False  # the method reads Batch.neighbours: it runs only with --neighbours K > 0
    # A checkpoint-selection rule of the method's own, used where ktmu's default rule ("ours") would be:
    # "last" for methods whose representation objective the forget-accuracy rule cannot see (they keep
    # improving after the names are gone). The study's rule, when asked for, always applies.
    selection: ClassVar[str | None] = None
    # Ranges declared here hold for every subclass, also where it re-declares the default.
    lr: float = field(default=1e-4, metadata=in_range(
        gt=0, hint="Use a positive learning rate such as 1e-4 (--lr, or --set lr=...)."))
    epochs: int = field(default=10, metadata=in_range(ge=1, hint="Train for at least one epoch."))

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every hyperparameter's type and declared range (ints in float fields become floats).

        Raises :class:`ktmu.settings.SettingsError` naming the hyperparameter and what to write.
        """
        validate_settings(self)

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Named loss terms; ``"loss"`` is the total that is minimised."""
        raise NotImplementedError

    def hyperparameters(self) -> dict[str, float | int | str]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    # ---- trainer hooks ----------------------------------------------------------------------
    rewrites_weights: ClassVar[bool] = False  # True when finalize_ maps trained weights to other weights

    def update_mask_fraction(self) -> float | None:
        """Fraction of weights the trainer may update (chosen by saliency), or None for all of them."""
        return None

    def saliency_loss(self, batch: Batch) -> torch.Tensor:
        """The loss whose gradient magnitude ranks weights when :meth:`update_mask_fraction` is set."""
        raise NotImplementedError(f"method {self.name!r} sets an update mask but defines no saliency_loss.")

    def finalize_(self, params: dict[str, torch.Tensor], original: dict[str, torch.Tensor]) -> None:
        """Map trained weights (``params``, modified in place) to final weights, given the original ones."""

    def sharpness_radius(self) -> float | None:
        """The radius of sharpness-aware minimisation (Foret et al., 2021) the trainer applies to this loss, or None for plain steps.

        With a radius rho the trainer takes each step with the gradient at the weights moved by
        rho * g / ||g|| (g: the loss's gradient, over all trainable weights): the loss is minimised
        over a neighbourhood, not at a point, so that nearby weights forget too.
        """
        return None

    def relearning_adversary(self) -> "Adversary | None":
        """The relearning attack the trainer simulates at every step against this loss (tamper resistance), or None.

        With an :class:`Adversary` the trainer fine-tunes a copy of the step's weights on half of
        the step's forget images with their true labels (and the neighbours with theirs), ``steps``
        Adam steps at ``lr``, and adds ``weight`` x the gradient of :meth:`tamper_loss` on the other
        half, taken at the attacked weights (first order, as MAML's and TAR's approximations), to
        the step's gradient: the weights are pushed to where a few steps of relearning do not bring
        the concept back.
        """
        return None

    def tamper_loss(self, batch: Batch) -> torch.Tensor:
        """The loss, at the attacked weights, of forget images the attack did not train on (with :meth:`relearning_adversary`).

        The batch has no neighbour side (``batch.neighbours`` is None): the trainer does not encode
        the step's neighbour images a further time for it.
        """
        raise NotImplementedError(f"method {self.name!r} simulates a relearning attack but defines no tamper_loss.")


@dataclass(frozen=True)
class Adversary:
    """The simulated relearning attack of :meth:`UnlearningMethod.relearning_adversary`."""

    steps: int  # Adam steps of the attack per training step
    lr: float  # the attack's learning rate
    weight: float  # the weight of the tamper loss's gradient in the step's
    neighbours: int | None = None  # the attack trains on the first this many of the step's neighbour images (None: all of them)
    every: int = 1  # the attack runs on every this-many-th step of the run (the first step included)


def forgotten_mask(logits: torch.Tensor, target: torch.Tensor, classes: torch.Tensor | None) -> torch.Tensor:
    """(B, K) mask of the classes each sample must not be assigned: its target plus the request's forgotten classes."""
    mask = torch.nn.functional.one_hot(target, logits.shape[-1]).bool()
    return mask if classes is None else mask | classes.to(mask.device)[None, :]


@dataclass
class Level:
    """One forgotten level of a batch."""

    logits: torch.Tensor
    target: torch.Tensor
    samples: torch.Tensor  # (B,) which samples forget this level
    ref_logits: torch.Tensor | None
    forgotten: torch.Tensor  # (B, K) classes that must not be predicted


def forget_levels(b: Batch) -> Iterator[Level]:
    """The fine level (every sample) and, where some sample forgets it, the coarse level."""
    yield Level(b.fine_logits, b.fine_target, torch.ones_like(b.forget_coarse), b.ref_fine_logits,
                forgotten_mask(b.fine_logits, b.fine_target, b.fine_forgotten))
    if bool(b.forget_coarse.any()):
        yield Level(b.coarse_logits, b.coarse_target, b.forget_coarse, b.ref_coarse_logits,
                    forgotten_mask(b.coarse_logits, b.coarse_target, b.coarse_forgotten))
