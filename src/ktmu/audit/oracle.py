"""Which oracle (a model that never learned the forgotten concept) an audit compares against by default.

ktmu ships one: ``mini-clip:without-shirt``, the embedded mini-CLIP pretrained with the same recipe
but never told the word "shirt" (docs/audit.md). It is the oracle of exactly one request: the
shipped ``mini-clip`` forgetting the fine concept shirt of the embedded fashion world, and nothing
else (a checkpoint path is another model, another concept another oracle). ``--oracle none`` turns
the default off; ``--oracle SPEC`` names any model of the audited architecture.
"""
from __future__ import annotations

from ktmu.engine.request import UnlearningRequest

NONE = "none"  # --oracle none: no oracle
SHIPPED = {("mini-clip", "fashion", ("shirt",), "fine"): "mini-clip:without-shirt"}  # (model, world, forgotten fine, goal) -> oracle


def default_oracle(model: str, request: UnlearningRequest) -> str | None:
    """The shipped oracle of ``model``'s ``request``, or None when ktmu ships none for it."""
    world = request.world
    forgotten = tuple(sorted(world.fine[i].name for i in request.forget_fine))
    if request.forget_coarse:
        return None  # a forgotten coarse concept: the shirt oracle still knows tops
    return SHIPPED.get((model.strip(), world.name, forgotten, request.goal))


def resolve_oracle(spec: str | None, model: str, request: UnlearningRequest) -> tuple[str | None, str]:
    """The oracle to audit against and a note to say once: ``spec`` as given, ``none`` for none, else :func:`default_oracle`."""
    if spec is not None and spec.strip().lower() == NONE:
        return None, ""
    if spec:
        return spec, ""
    shipped = default_oracle(model, request)
    if shipped is None:
        return None, ""
    return shipped, (f"auditing against the oracle {shipped} (the shipped model that never knew "
                     f"{', '.join(request.concepts)}); --oracle none leaves it out")
