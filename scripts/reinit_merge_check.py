"""Research check: re-initialise the image-tower weights most salient for the forgotten concept, then merge-mmd from there.

The audit finds the concept back after merge-mmd because the weights that carry it are still in
place (weight distance 0.04 against the oracle's 1.13), and a few relearning steps reuse them. This
check damages exactly those weights first, in the spirit of UNDO's "damage, then distil":

1. saliency: |gradient| of the cross-entropy of the forget images' own fine labels with respect to
   every image-tower weight (``--saliency forget``), or that over the neighbour images' saliency
   (``--saliency relative``: weights that matter to the concept more than to the kept ones);
2. the top ``--fraction`` of weight matrices' entries by saliency are re-initialised from a normal
   of their tensor's standard deviation (``--perturb reinit``), or shrunk and perturbed,
   0.5 w + 0.5 noise (``--perturb shrink``; Ash & Adams, 2020), with a seeded generator;
3. merge-mmd at its defaults (K = 16, scope all) from the damaged weights, its KL and anchor held
   to the *undamaged* original's outputs, which repairs what the kept concepts need.

It is a script, not a method: the trainer has no hook to damage weights before training, and what
it measured (docs/audit.md) costs too much zero-shot accuracy to ship as is.

    python scripts/reinit_merge_check.py --fraction 0.005 --out runs/check/reinit0.005
    ktmu audit --model mini-clip:runs/check/reinit0.005/model.safetensors --original mini-clip --oracle mini-clip:without-shirt \\
        --probe-per-class 300 --relearn-images 32 --neighbours 16 --neighbours-scope all --out runs/check/reinit0.005-audit
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ktmu.backbones.encode import class_text_features
from ktmu.data.stream import chunked, iter_batches
from ktmu.outputs import json_ready, write_json_atomic
from ktmu.prompts import eval_templates
from ktmu.workflows.session import Session, open_session, run_method, save_unlearned


def saliency(session: Session, source, labels: torch.Tensor, params: dict[str, torch.nn.Parameter], per_image: bool = False) -> dict[str, torch.Tensor]:
    """|d CE / d w| over ``source``'s images with their own fine labels, per image-tower weight.

    Batches of 64; each batch's mean is summed (``per_image``: the mean over every image instead).
    """
    bb = session.backbone
    text = class_text_features(bb, session.world.fine_names, eval_templates(session.world))
    for p in params.values():
        p.grad = None
    bb.model.train()
    for images, pos in iter_batches(source, chunked(range(len(source)), 64)):
        logits = bb.logit_scale() * bb.encode_image(images) @ text.T
        if per_image:
            torch.nn.functional.cross_entropy(logits, labels[pos], reduction="sum").div(len(source)).backward()
        else:
            torch.nn.functional.cross_entropy(logits, labels[pos]).backward()
    out = {k: p.grad.abs().clone() for k, p in params.items() if p.grad is not None}
    for p in params.values():
        p.grad = None
    return out


def damage_(params: dict[str, torch.nn.Parameter], scores: dict[str, torch.Tensor], fraction: float, perturb: str, seed: int) -> int:
    """Re-initialise (or shrink and perturb) the top ``fraction`` of the weight matrices' entries by score, in place; how many."""
    flat = torch.cat([s.flatten() for s in scores.values()])
    threshold = flat.kthvalue(max(1, int((1 - fraction) * len(flat)))).values
    generator = torch.Generator().manual_seed(seed)
    changed = 0
    with torch.no_grad():
        for name, p in params.items():
            if name not in scores or p.dim() < 2:  # weight matrices and kernels only: norms and biases stay
                continue
            mask = scores[name] >= threshold
            noise = torch.randn(p.shape, generator=generator) * p.std()
            p[mask] = 0.5 * p[mask] + 0.5 * noise[mask] if perturb == "shrink" else noise[mask]
            changed += int(mask.sum())
    return changed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fraction", type=float, default=0.005, help="share of the image tower's weights to damage (tried 0.005-0.02)")
    ap.add_argument("--saliency", choices=("forget", "relative"), default="forget")
    ap.add_argument("--perturb", choices=("reinit", "shrink"), default="reinit")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True, help="folder for model.safetensors and results.json")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    session = open_session(["shirt"], model="mini-clip", seed=args.seed, progress=False, neighbours=16, neighbours_scope="all")
    session.reference()  # the undamaged original's outputs: what merge-mmd's KL and anchor hold the model to
    params = {k: p for k, p in session.backbone.named_trainable_parameters() if k.startswith("visual")}
    scores = saliency(session, session.forget.source, session.forget.fine, params)
    if args.saliency == "relative":
        near = saliency(session, session.neighbours.source, session.neighbours.fine, params, per_image=True)
        scores = {k: v / (near[k] + near[k].mean() + 1e-12) for k, v in scores.items()}
    changed = damage_(params, scores, args.fraction, args.perturb, args.seed)
    session.original_state = session.backbone.copy_trainable()  # merge-mmd starts from the damaged weights
    record = run_method(session, "merge-mmd", progress=False)
    save_unlearned(session, args.out, record)
    write_json_atomic(Path(args.out) / "results.json", json_ready(record))
    print(f"damaged {changed} weights ({args.saliency} saliency, {args.perturb}); Q-U {record['qu']:.2f}, zero-shot "
          f"{record['unlearned']['zero_shot']:.1f} (original {record['original']['zero_shot']:.1f}); wrote {args.out}")


if __name__ == "__main__":
    main()
