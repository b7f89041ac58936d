"""Where would a forgotten concept's image features have to go to fool the linear probe? (analysis for the knowledge audit)

The audit's linear probe (``ktmu.audit.linear_probe``, 100 train images per class outside the proxy
forget set) recalls 75.6 % of shirts on the original mini-CLIP and 58.7 % on the oracle that never
knew "shirt"; every unlearning method leaves it near the original. This script asks which edits
of the shirt image features *could* bring the probe to the oracle, by applying each edit directly
to the original's unit image features of every shirt image (probe train and test alike: the best
case for a method, whose network would still have to generalise the edit to unseen shirts) and
refitting the probe. Other classes' features are untouched.

Edits, per shirt image with feature f (unit), s(f) = its best kept fine class under the original's
text features (shirt excluded), t_k = class text features (test templates), and a = the strength:

* ``text shift``: f + a (t_top - t_shirt), f + a (t_t-shirt - t_shirt): move every shirt as the text
  of the coarse parent or a sibling differs from "shirt" (what a name-level method does);
* ``gap-model shift``: f + a (c^_s(f) - c_shirt) with c^_k = u(t_k + c_shirt - t_shirt), image
  centroids estimated from text plus the modality gap measured on the proxy forget set (retain-free);
* ``boundary shift``: as above with c^_k the mean of the proxy forget images the original itself
  calls k (retain-free: the forget set's own ambiguous images);
* ``true-centroid shift``: as above with the real test centroids c_k of the siblings' images
  (needs images of the siblings, i.e. retain data: an upper bound, not a method);
* ``random scatter``: f + a r, r a fresh random unit vector per image (destroys information, but no
  network trained on 150 images can reproduce it on unseen shirts).

Run: ``python scripts/probe_geometry.py`` (about 40 s on 2 cores). Prints probe recall of shirts /
probe accuracy on the other classes for each edit.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ktmu.audit.linear_probe import fit_linear_probe, probe_train_indices
from ktmu.backbones import load_backbone
from ktmu.backbones.encode import class_text_features, embed_source
from ktmu.data import load_dataset
from ktmu.data.stream import image_source
from ktmu.prompts import eval_templates
from ktmu.engine.request import UnlearningRequest, forget_set_indices

STRENGTHS = (0.25, 0.5, 1.0, 1.5)


def probe(train_x: torch.Tensor, train_y: np.ndarray, test_x: torch.Tensor, test_y: np.ndarray, forgotten: int) -> str:
    p = fit_linear_probe(train_x.numpy(), train_y, test_x.numpy(), test_y, [forgotten], per_class=10**9)
    return f"{p.forgotten_recall:5.1f} / {p.kept_accuracy:4.1f}"


def main() -> None:
    torch.manual_seed(0)
    train, test = load_dataset("fashion", "train"), load_dataset("fashion", "test")
    world = train.hierarchy
    names = [c.name for c in world.fine]
    shirt, top = names.index("shirt"), [c.name for c in world.coarse].index("top")
    request = UnlearningRequest.parse(world, ["shirt"])
    y_train, y_test = np.asarray(train.fine_labels), np.asarray(test.fine_labels)
    forget_idx = forget_set_indices(request, train, seed=0)
    pool = np.setdiff1d(np.arange(len(y_train)), forget_idx)
    probe_idx = pool[probe_train_indices(y_train[pool], 100, seed=0)]  # as the audit draws them
    yp = y_train[probe_idx]

    print("model                    | shirt probe recall / other-class probe accuracy")
    feats = {}
    for spec in ("mini-clip", "mini-clip:without-shirt"):
        bb = load_backbone(spec)
        xp = embed_source(bb, image_source(train, bb.preprocess), probe_idx)
        xt = embed_source(bb, image_source(test, bb.preprocess))
        print(f"{spec:24} | {probe(xp, yp, xt, y_test, shirt)}")
        if spec == "mini-clip":
            with torch.no_grad():
                text = class_text_features(bb, names, eval_templates(world))
                coarse = class_text_features(bb, [c.name for c in world.coarse], eval_templates(world))
            feats = {"probe": xp, "test": xt, "forget": embed_source(bb, image_source(train, bb.preprocess), forget_idx)}

    xp, xt, xf = feats["probe"], feats["test"], feats["forget"]

    def kept_best(x: torch.Tensor) -> torch.Tensor:
        z = x @ text.T
        z[:, shirt] = -torch.inf
        return z.argmax(1)

    def edit(x: torch.Tensor, y: np.ndarray, move) -> torch.Tensor:
        x = x.clone()
        m = torch.as_tensor(y == shirt)
        x[m] = F.normalize(x[m] + move(x[m]), dim=1)
        return x

    c_shirt = F.normalize(xf.mean(0), dim=0)  # the proxy forget set's centroid
    gap_model = F.normalize(text + (c_shirt - text[shirt]), dim=1)
    called = (xf @ text.T).argmax(1)
    boundary = torch.stack([F.normalize(xf[called == k].mean(0), dim=0) if int((called == k).sum()) >= 2 else gap_model[k]
                            for k in range(len(names))])
    true = torch.stack([F.normalize(xt[torch.as_tensor(y_test == k)].mean(0), dim=0) for k in range(len(names))])
    gen = torch.Generator().manual_seed(0)
    edits = {
        "text shift (coarse 'top')": lambda a: (lambda x: a * (coarse[top] - text[shirt])),
        "text shift ('t-shirt')": lambda a: (lambda x: a * (text[names.index("t-shirt")] - text[shirt])),
        "gap-model shift": lambda a: (lambda x: a * (gap_model[kept_best(x)] - c_shirt)),
        "boundary shift": lambda a: (lambda x: a * (boundary[kept_best(x)] - c_shirt)),
        "true-centroid shift (retain data)": lambda a: (lambda x: a * (true[kept_best(x)] - true[shirt])),
        "random scatter (not learnable)": lambda a: (lambda x: a * F.normalize(torch.randn(x.shape, generator=gen), dim=1)),
    }
    print("\nedit of the original's shirt features, strength " + " | ".join(f"a={a}" for a in STRENGTHS))
    for name, make in edits.items():
        cells = [probe(edit(xp, yp, make(a)), yp, edit(xt, y_test, make(a)), y_test, shirt) for a in STRENGTHS]
        print(f"{name:36} | " + " | ".join(cells))


if __name__ == "__main__":
    main()
