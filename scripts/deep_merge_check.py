"""Research check: merge-mmd with its MMD also on mini-CLIP's intermediate image activations, for the audit to judge.

merge-mmd (``ktmu.methods.merge_mmd``) merges the forgotten images into their neighbours' in the
image tower's *output* features. With larger audit budgets a probe and relearning still find the
concept (docs/audit.md), so the information lives on below the last layer. This variant adds, for
two intermediate layers of mini-CLIP's CNN (after the first and the second block: 32 channels at
28 px and 64 at 14 px), the same per-parent MMD between the forget images' and the neighbours'
globally pooled, unit-normalised activations (neighbours held fixed in that term), times
``--deep-weight``. Everything else is merge-mmd at its defaults. It is a script, not a registered
method: what it measured (docs/audit.md) did not earn it a place among the methods.

    python scripts/deep_merge_check.py --deep-weight 300 --out runs/check/deep300
    ktmu audit --model mini-clip:runs/check/deep300/model.safetensors --original mini-clip --oracle mini-clip:without-shirt \\
        --probe-per-class 300 --relearn-images 32 --neighbours 16 --neighbours-scope all --out runs/check/deep300-audit
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import torch

from ktmu.methods import METHODS
from ktmu.methods.base import Batch
from ktmu.methods.merge_mmd import MergeMMD
from ktmu.methods.terms import mmd_rbf
from ktmu.outputs import json_ready, write_json_atomic
from ktmu.workflows.session import open_session, run_method, save_unlearned

LAYERS = (5, 12)  # the ReLUs closing mini-CLIP's first two convolution blocks (visual.trunk.features)
ACTIVATIONS: dict[int, torch.Tensor] = {}  # each hooked layer's output of the latest forward pass (forget images, then neighbours)


@dataclass
class DeepMergeMMD(MergeMMD):
    name = "merge-mmd-deep"
    deep_weight: float = 300.0  # the weight of the intermediate-layer MMD (tried: 100, 300)

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        out = super().loss(batch)
        n, nb = len(batch.fine_target), batch.neighbours
        deep = batch.image_features.new_zeros(())
        for layer in LAYERS:
            pooled = torch.nn.functional.normalize(ACTIVATIONS[layer].mean((2, 3)).float(), dim=1)
            f, g = pooled[:n], pooled[n:].detach()
            for parent in batch.coarse_target.unique():
                mine, near = batch.coarse_target == parent, nb.coarse_target == parent
                deep = deep + mine.float().mean() * mmd_rbf(f[mine], g[near] if bool(near.any()) else g)
        return {**out, "loss": out["loss"] + self.deep_weight * deep, "deep": deep}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--deep-weight", type=float, default=300.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True, help="folder for model.safetensors and results.json")
    args = ap.parse_args()
    METHODS.register(DeepMergeMMD.name, DeepMergeMMD)
    session = open_session(["shirt"], model="mini-clip", seed=args.seed, progress=False, neighbours=16, neighbours_scope="all")
    features = session.backbone.model.visual.trunk.features
    for layer in LAYERS:
        features[layer].register_forward_hook(lambda _m, _i, output, layer=layer: ACTIVATIONS.__setitem__(layer, output))
    record = run_method(session, DeepMergeMMD.name, progress=False, deep_weight=args.deep_weight)
    save_unlearned(session, args.out, record)
    write_json_atomic(Path(args.out) / "results.json", json_ready(record))
    print(f"deep weight {args.deep_weight:g}: Q-U {record['qu']:.2f}, zero-shot {record['unlearned']['zero_shot']:.1f} "
          f"(original {record['original']['zero_shot']:.1f}); wrote {args.out}")


if __name__ == "__main__":
    main()
