"""Timing and provenance helpers shared by the benchmark scripts."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import statistics
import time
from typing import Callable

import numpy as np
import openmm
import torch

import mlmm


def time_calls(call: Callable[[], None], calls: int) -> dict:
    """Median and mean ms per call over ``calls`` individually timed calls (after 20 untimed)."""
    for _ in range(20):
        call()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return {"median": 1e3 * statistics.median(times), "mean": 1e3 * statistics.fmean(times)}


def forward_backward(energy: Callable[[torch.Tensor], torch.Tensor], positions: torch.Tensor) -> None:
    """One call of ``energy(positions)`` and its backward pass (the work of one force evaluation)."""
    energy(positions.detach().clone().requires_grad_(True)).backward()


def machine() -> dict:
    """Where the numbers were measured."""
    model = ""
    try:
        with open("/proc/cpuinfo") as handle:
            model = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), "")
    except OSError:
        pass
    uname = platform.uname()
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {"processor": platform.processor() or uname.machine, "cpu_model": model, "cpu_count": os.cpu_count(),
            "cpus_available": affinity, "uname": f"{uname.system} {uname.release} {uname.machine}",
            "python": platform.python_version()}


def versions() -> dict:
    """Versions of the packages that set the speed (openmmtorch: its installed distribution)."""
    dists = importlib.metadata.packages_distributions().get("openmmtorch", [])
    return {"openmm": openmm.__version__, "torch": torch.__version__,
            "openmmtorch": ", ".join(f"{d} {importlib.metadata.version(d)}" for d in dists) or None,
            "mlmm": mlmm.__version__, "numpy": np.__version__}


