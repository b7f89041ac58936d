"""Where a plain training step's time goes (``ktmu perf --profile``): torch's profiler over one run of steps, by kernel and by kind."""
from __future__ import annotations

import re
import time

import torch

from ktmu.workflows.perf import Bench

TOP = 15  # rows listed
# Kernel / operator kinds, by name: matrix products and convolutions, attention, the rest (elementwise, norms, copies, ...).
KINDS = {
    "matmul": re.compile(r"gemm|matmul|\bmm\b|addmm|bmm|linear|cutlass|xmma|cublas|conv|cudnn|mkldnn|onednn", re.I),
    "attention": re.compile(r"attention|flash|fmha|sdp", re.I),
}


def _self_time(event: object, device: bool) -> float:
    """Self time of a profiler row in microseconds, on the device or the CPU."""
    if device:
        return float(getattr(event, "self_device_time_total", None) or getattr(event, "self_cuda_time_total", 0.0))
    return float(event.self_cpu_time_total)  # type: ignore[attr-defined]


def profile_part(bench: Bench) -> dict:
    """``{"wall_ms_per_step", "busy_share", "by_kind", "rows"}`` of a plain run of ``--steps`` steps (no scoring pass).

    ``busy_share``: the time the device (the CPU on CPU runs) spent in kernels over the wall time; well
    below 1 on a GPU means the step is launch-bound (the host cannot issue kernels fast enough).
    ``rows``: the top kernels by self time, per step, with their share of the kernel time.
    """
    from torch.profiler import ProfilerActivity, profile

    cuda = bench.device.type == "cuda"
    cfg = bench.config(1, "study")
    bench.run("plain-ce", cfg)  # warm
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        bench.sync()
        t0 = time.perf_counter()
        seconds = bench.run("plain-ce", cfg)
        bench.sync()
        wall = time.perf_counter() - t0
    steps = bench.opts.steps
    events = [e for e in prof.key_averages() if _self_time(e, cuda) > 0]
    total = sum(_self_time(e, cuda) for e in events) or 1.0
    by_kind = {k: 0.0 for k in (*KINDS, "other")}
    for e in events:
        kind = next((k for k, rx in KINDS.items() if rx.search(e.key)), "other")
        by_kind[kind] += _self_time(e, cuda) / total
    rows = sorted(events, key=lambda e: _self_time(e, cuda), reverse=True)[:TOP]
    return {
        "wall_ms_per_step": round(seconds["steps"] / steps * 1000, 2),
        "busy_share": round(min(1.0, total / 1e6 / wall), 3) if cuda else None,
        "by_kind": {k: round(v, 3) for k, v in by_kind.items()},
        "rows": [{"name": e.key, "ms": round(_self_time(e, cuda) / 1000 / steps, 3), "share": round(_self_time(e, cuda) / total, 4),
                  "calls": int(e.count)} for e in rows],
    }
