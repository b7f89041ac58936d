"""Erase what a linear probe reads of a forgotten concept from a mini-CLIP checkpoint, in closed form (LEACE), for the audit to judge.

LEACE (Belrose et al., 2023, "LEACE: Perfect linear concept erasure in closed form") is the least-
squares edit that leaves no linear classifier better than chance at telling the concept from the
rest: with covariance Sigma of the features x, whitening W = Sigma^{-1/2} and the cross-covariance
Sigma_xz of x with the concept's indicator z, it maps x -> x - W^+ P W (x - mu), where P projects onto
W Sigma_xz. It is applied here to the 128-d pooled features that enter the image tower's last linear
layer (``visual.head.proj``, no bias), so it folds into that layer's weight: ``proj' = proj (I - W^+ P W)``
(the mean term moves every image by the same vector, which the class-conditional means do not see).

The eraser is fitted on what an unlearner has: the proxy forget set (the concept's images, z = 1) and
the neighbour exemplars (K train images of every kept concept, z = 0), drawn exactly as
``ktmu unlearn --neighbours K --neighbours-scope all --seed S`` draws them, so ``ktmu audit`` keeps its
own images apart from them. The written checkpoint carries no ledger (its weights are not the ones the
input's ledger names). Issue 13 asks for exactly this check: a projection that erases what a linear
probe reads can only be judged by the audit's other probes and attacks (docs/audit.md).

    python scripts/leace_erase.py --model mini-clip:runs/check/mm/model.safetensors --out runs/leace/model.safetensors
    ktmu audit --model mini-clip:runs/leace/model.safetensors --original mini-clip --oracle mini-clip:without-shirt \\
        --neighbours 16 --neighbours-scope all --out runs/leace-audit
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ktmu.backbones import load_backbone
from ktmu.data import load_dataset
from ktmu.data.stream import image_source, iter_batches, chunked
from ktmu.engine.neighbours import neighbour_indices
from ktmu.engine.request import UnlearningRequest, forget_set_indices


def pooled_features(backbone, source) -> torch.Tensor:
    """The inputs of ``visual.head.proj`` (the pooled CNN features) for every image of ``source``, in eval mode."""
    layer = backbone.model.visual.head.proj
    seen: list[torch.Tensor] = []
    hook = layer.register_forward_hook(lambda _m, inputs, _out: seen.append(inputs[0].detach().float()))
    backbone.model.eval()
    with torch.no_grad():
        for images, _ in iter_batches(source, chunked(range(len(source)), 256)):
            backbone.encode_image(images)
    hook.remove()
    return torch.cat(seen)


def leace_map(x: torch.Tensor, z: torch.Tensor, shrinkage: float = 1e-3) -> torch.Tensor:
    """The linear part ``I - W^+ P W`` of the LEACE eraser of indicator ``z`` from features ``x`` (rows), as a (d, d) matrix.

    ``shrinkage``: ridge added to the covariance, relative to its mean eigenvalue (a few hundred
    images estimate a 128-d covariance poorly; the erasure of the mean difference stays exact).
    """
    x = x.double()
    z = z.double()[:, None]
    xc, zc = x - x.mean(0), z - z.mean(0)
    sigma = xc.T @ xc / len(x)
    sigma += shrinkage * sigma.trace() / len(sigma) * torch.eye(len(sigma), dtype=x.dtype)
    vals, vecs = torch.linalg.eigh(sigma)
    w = vecs @ torch.diag(vals.rsqrt()) @ vecs.T
    w_inv = vecs @ torch.diag(vals.sqrt()) @ vecs.T
    u = w @ (xc.T @ zc / len(x))  # whitened cross-covariance, (d, 1)
    u = u / u.norm()
    return (torch.eye(len(sigma), dtype=x.dtype) - w_inv @ (u @ u.T) @ w).float()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a mini-clip spec, e.g. mini-clip:runs/check/mm/model.safetensors")
    ap.add_argument("--forget", default="shirt")
    ap.add_argument("--neighbours", type=int, default=16, help="K images of every kept concept (scope all), the z = 0 side")
    ap.add_argument("--seed", type=int, default=0, help="the unlearning run's seed: it fixes the forget set and the neighbours")
    ap.add_argument("--max-per-concept", type=int, default=150)
    ap.add_argument("--out", required=True, help="the edited checkpoint (.safetensors)")
    args = ap.parse_args()

    backbone = load_backbone(args.model)
    train = load_dataset("fashion", "train")
    request = UnlearningRequest.parse(train.hierarchy, [args.forget])
    forget = forget_set_indices(request, train, args.max_per_concept, args.seed)
    near = neighbour_indices(request, train, args.neighbours, "all", args.seed, args.max_per_concept)
    x = torch.cat([pooled_features(backbone, image_source(train, backbone.preprocess, idx)) for idx in (forget, near)])
    z = torch.cat([torch.ones(len(forget)), torch.zeros(len(near))])
    eraser = leace_map(x, z)
    layer = backbone.model.visual.head.proj
    with torch.no_grad():
        layer.weight.copy_(layer.weight @ eraser)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    backbone.save_weights(out, metadata={"format": "ktmu-leace", "fitted_on": f"{len(forget)} forget + {len(near)} neighbour images"})
    after = pooled_features(backbone, image_source(train, backbone.preprocess, forget[:4])) @ layer.weight.T
    print(f"wrote {out}: LEACE of {args.forget!r} fitted on {len(forget)} forget and {len(near)} neighbour images "
          f"(features of the first forget images still finite: {bool(torch.isfinite(after).all())})")


if __name__ == "__main__":
    main()
