"""Timing primitives for the benchmark: a burn-in stage, then a timed stage (nanoGPT's bench.py style).

Latencies are wall-clock ``time.perf_counter`` around one call each; percentiles are computed over
the timed calls only.
"""

from __future__ import annotations

import os
import platform
import resource
import time
from collections.abc import Callable, Sequence

import numpy as np

from .quantize import cpu_flags, cpu_model, detect_isa

__all__ = ["latency_stats", "machine_info", "peak_rss_mb", "rss_mb", "time_calls"]

# Flags that decide which int8/fp32 kernels onnxruntime and PyTorch can use.
_ISA_PREFIXES = ("avx", "amx", "fma", "f16c", "sse4", "asimd", "sve", "neon", "i8mm", "bf16")


def time_calls(fn: Callable, inputs: Sequence, warmup: int) -> tuple[list[float], list]:
    """Call ``fn`` on ``inputs[:warmup]`` (cycled) untimed, then on every input timed.

    Returns:
        (seconds per timed call, outputs of the timed calls).
    """
    for i in range(warmup):
        fn(inputs[i % len(inputs)])
    seconds, outputs = [], []
    for x in inputs:
        start = time.perf_counter()
        out = fn(x)
        seconds.append(time.perf_counter() - start)
        outputs.append(out)
    return seconds, outputs


def latency_stats(seconds: Sequence[float], batch_size: int) -> dict:
    """Percentiles in milliseconds and throughput over timed calls of ``batch_size`` sentences each."""
    ms = np.asarray(seconds, dtype=np.float64) * 1000.0
    if ms.size == 0:
        return {"n": 0}
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return {"n": int(ms.size), "p50_ms": float(p50), "p95_ms": float(p95), "p99_ms": float(p99),
            "mean_ms": float(ms.mean()), "min_ms": float(ms.min()), "max_ms": float(ms.max()),
            "sentences_per_s": float(batch_size * 1000.0 / ms.mean())}


def rss_mb() -> float:
    """Resident memory of this process now, in MiB."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return float("nan")


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB.

    Linux's ``VmHWM`` starts afresh at exec; ``ru_maxrss`` does not (a child started from a large parent
    inherits the parent's peak), so it is only the fallback.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def machine_info() -> dict:
    """What the numbers depend on: CPU, ISA flags, cores, load, thread settings and library versions."""
    from importlib.metadata import version

    import onnxruntime
    import torch

    flags = cpu_flags()
    try:
        isa = detect_isa(flags)
    except RuntimeError:
        isa = "none"
    try:
        load = [float(x) for x in open("/proc/loadavg").read().split()[:3]]
    except OSError:
        load = None
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu_model": cpu_model(), "machine": platform.machine(), "os_cpu_count": os.cpu_count(),
        "usable_cpus": affinity, "isa_flags": sorted(f for f in flags if f.startswith(_ISA_PREFIXES)),
        "int8_isa": isa, "loadavg_1_5_15": load,
        "torch_default_threads": torch.get_num_threads(), "torch_interop_threads": torch.get_num_interop_threads(),
        "thread_env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if k in os.environ},
        "onnxruntime_providers": onnxruntime.get_available_providers(),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": version("transformers"), "onnxruntime": onnxruntime.__version__,
                     "optimum": version("optimum"), "numpy": np.__version__},
    }
