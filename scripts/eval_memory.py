"""Peak resident memory of `ktmu eval` on a streamed 224-px jsonl world of N images, for several N.

Usage: python scripts/eval_memory.py [--model open_clip:ViT-B-32] [--sizes 128 1024] [--out runs/eval_memory]
Writes one synthetic world per size (random 224x224 JPEGs, 8 fine classes under 2 coarse ones),
runs `ktmu eval --world jsonl --data-root W --zero-shot none` on each as a child process and prints
its peak RSS (from the kernel's rusage of the child) and the ratio to the smallest size.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image


def make_world(root: Path, n: int, seed: int = 0) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    if (root / "test.jsonl").is_file():
        return root
    rng = np.random.default_rng(seed)
    names = [("terrier", f"terrier {i}") for i in range(4)] + [("retriever", f"retriever {i}") for i in range(4)]
    (root / "img").mkdir(exist_ok=True)
    for split, count in (("train", 8), ("test", n)):
        lines = []
        for k in range(count):
            coarse, fine = names[k % len(names)]
            path = root / "img" / f"{split}_{k}.jpg"
            Image.fromarray(rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)).save(path, quality=80)
            lines.append(json.dumps({"img_path": f"img/{path.name}", "coarse_label": coarse, "fine_label": fine}))
        (root / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    return root


def peak_rss_mb(cmd: list[str]) -> tuple[float, float]:
    """Run ``cmd``; return (peak RSS of the child in MB, seconds)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.time()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(after, before) / 1024, time.time() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="open_clip:ViT-B-32")
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 1024])
    p.add_argument("--out", default="runs/eval_memory")
    args = p.parse_args()
    ktmu = str(Path(sys.executable).with_name("ktmu"))
    rows = []
    for n in sorted(args.sizes):  # smallest first: RUSAGE_CHILDREN keeps the maximum over children run so far
        world = make_world(Path(args.out) / f"world_{n}", n)
        rss, secs = peak_rss_mb([ktmu, "eval", "--model", args.model, "--world", "jsonl", "--data-root", str(world),
                                 "--zero-shot", "none", "--device", "cpu", "--quiet"])
        rows.append((n, rss, secs))
        print(f"{n:>6} images: peak RSS {rss:8.0f} MB, {secs:6.1f} s, ratio to {rows[0][0]} images {rss / rows[0][1]:.3f}", flush=True)


if __name__ == "__main__":
    main()
