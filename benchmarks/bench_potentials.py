"""Forward + backward time of the network potentials on one CPU thread, beside TorchANI's ANI-2x.

For 10, 30 and 100 atoms (seeded H/C/N/O clusters at liquid density, 100 atoms/nm^3, no
pair closer than 0.1 nm) every model is TorchScript-compiled and called the way TorchForce
calls it: a fresh leaf tensor of positions, energy, ``backward()`` for the forces, with
parameters that do not require gradients (as ``mlmm`` hands models to TorchForce). Models
run in float32 (TorchANI's default; mlmm models cast OpenMM's float64 positions to their
own dtype). ANI-2x is built with TorchANI's own assembler and random weights (no download),
once as one network and once as its 8-network ensemble.

Measurements are interleaved: each repeat times every (model, size) once, in an order that
rotates between repeats; the reported value is the median over repeats of the per-repeat
median ms/call. Targets: the default PhysNet-style model at most 1 ms/call at 10 atoms, and
no slower than one ANI-2x network at 30 atoms.

    python benchmarks/bench_potentials.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Callable

import torch

from mlmm.bridge.transports import inference_script
from mlmm.potentials import HDNNP, PhysNet, SchNet
from timing import machine, time_calls, versions

RESULTS = Path(__file__).resolve().parent / "results"
SIZES = (10, 30, 100)
ELEMENTS = ("H", "C", "N", "O")
DENSITY = 100.0  # atoms per nm^3, about that of liquid water or organic liquids
TARGET_PHYSNET_10_MS = 1.0
ANI = "ANI-2x (1 network)"
ANI_ENSEMBLE = "ANI-2x (8-network ensemble)"
PHYSNET = "mlmm PhysNet-style (default)"


def cluster(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Atomic numbers [n] and positions [n, 3] (nm) of a random cluster at liquid density."""
    generator = torch.Generator().manual_seed(seed)
    radius = (3.0 * n / (4.0 * torch.pi * DENSITY)) ** (1.0 / 3.0)
    positions: list[torch.Tensor] = []
    while len(positions) < n:
        trial = (torch.rand(3, generator=generator, dtype=torch.float64) * 2.0 - 1.0) * radius
        if trial.norm() <= radius and all((trial - p).norm() >= 0.1 for p in positions):
            positions.append(trial)
    species = torch.tensor([1, 6, 7, 8, 1, 1, 6, 1, 8, 1])[torch.arange(n) % 10]
    return species, torch.stack(positions)


class TorchANIEnergy(torch.nn.Module):
    """ANI-2x behind mlmm's contract: atomic numbers and nm in, energy out (Hartree, unconverted)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, species: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return self.model((species.unsqueeze(0), 10.0 * positions.unsqueeze(0))).energies.sum()


def models() -> dict[str, torch.nn.Module]:
    """Every benchmarked model, TorchScript-compiled as TorchForce gets it (no parameter gradients), float32."""
    torch.manual_seed(0)
    built = {
        PHYSNET: PhysNet(ELEMENTS),
        "mlmm PhysNet-style, committee of 4": PhysNet(ELEMENTS, n_members=4),
        "mlmm SchNet": SchNet(ELEMENTS),
        "mlmm HDNNP-wACSF": HDNNP(ELEMENTS),
    }
    try:
        from mlmm_torchani import ani2x_architecture

        built[ANI] = TorchANIEnergy(ani2x_architecture(8)[0])
        built[ANI_ENSEMBLE] = TorchANIEnergy(ani2x_architecture(8))
    except ImportError:
        print("torchani or plugins/mlmm-torchani is not installed (make install); ANI-2x is left out")
    return {name: inference_script(model.float()) for name, model in built.items()}


def forward_backward(model: torch.jit.ScriptModule, species: torch.Tensor,
                     positions: torch.Tensor) -> Callable[[], None]:
    """One call as TorchForce makes it: fresh leaf positions, energy, backward for the forces."""
    def call() -> None:
        x = positions.float().clone().requires_grad_(True)
        model(species, x).backward()
    return call


def measure(repeats: int) -> dict:
    """Median ms/call per (model, size) over interleaved repeats."""
    compiled = models()
    calls = {(name, n): forward_backward(model, *cluster(n)) for name, model in compiled.items() for n in SIZES}
    per_repeat: dict[tuple[str, int], list[float]] = {key: [] for key in calls}
    keys = list(calls)
    for repeat in range(repeats):
        shift = repeat * len(keys) // repeats
        for key in keys[shift:] + keys[:shift]:
            budget_calls = max(5, min(200, int(0.3 / max(_estimate(calls[key]), 1e-5))))
            per_repeat[key].append(time_calls(calls[key], budget_calls)["median"])
    return {key: {"median_ms": statistics.median(v), "min_ms": min(v), "repeats_ms": v}
            for key, v in per_repeat.items()}


def _estimate(call: Callable[[], None]) -> float:
    """Seconds of one call (after warming up the TorchScript profiling executor)."""
    for _ in range(3):
        call()
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def summarize(timings: dict) -> dict:
    """Per-model table rows and the two targets."""
    names = sorted({name for name, _ in timings}, key=lambda s: (not s.startswith("mlmm"), s))
    rows = []
    for name in names:
        row = {"model": name}
        for n in SIZES:
            row[f"{n}_atoms_ms"] = timings[(name, n)]["median_ms"]
            if (ANI, n) in timings:
                row[f"{n}_atoms_vs_ani2x"] = timings[(name, n)]["median_ms"] / timings[(ANI, n)]["median_ms"]
        rows.append(row)
    targets = {"physnet_10_atoms_ms": timings[(PHYSNET, 10)]["median_ms"],
               "physnet_10_atoms_target_ms": TARGET_PHYSNET_10_MS}
    targets["physnet_10_atoms_met"] = targets["physnet_10_atoms_ms"] <= TARGET_PHYSNET_10_MS
    if (ANI, 30) in timings:
        targets["physnet_30_atoms_vs_ani2x"] = timings[(PHYSNET, 30)]["median_ms"] / timings[(ANI, 30)]["median_ms"]
        targets["physnet_30_atoms_met"] = targets["physnet_30_atoms_vs_ani2x"] <= 1.0
    return {"rows": rows, "targets": targets}


def markdown(result: dict) -> str:
    """The results table for results/potentials.md."""
    sizes = " | ".join(f"{n} atoms (ms) | vs ANI-2x" for n in SIZES)
    lines = ["# Network potentials: forward + backward per call, 1 CPU thread, float32\n",
             f"Measured {result['date']} on {result['machine']['cpu_model']} ({result['versions']['torch']}); "
             f"median of {result['repeats']} interleaved repeats. Ratios are to one ANI-2x network at the same size, "
             "in the same run.\n",
             f"| model | {sizes} |", "|---|" + "---:|---:|" * len(SIZES)]
    for row in result["rows"]:
        cells = " | ".join(f"{row[f'{n}_atoms_ms']:.3f} | {row.get(f'{n}_atoms_vs_ani2x', float('nan')):.2f}"
                           for n in SIZES)
        lines.append(f"| {row['model']} | {cells} |")
    t = result["targets"]
    lines += ["", f"- Default PhysNet-style model at 10 atoms: {t['physnet_10_atoms_ms']:.3f} ms "
              f"(target <= {t['physnet_10_atoms_target_ms']} ms: {'met' if t['physnet_10_atoms_met'] else 'NOT met'})."]
    if "physnet_30_atoms_vs_ani2x" in t:
        lines.append(f"- At 30 atoms: {t['physnet_30_atoms_vs_ani2x']:.2f} x one ANI-2x network (target <= 1: "
                     f"{'met' if t['physnet_30_atoms_met'] else 'NOT met'}).")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repeats (default 5)")
    args = parser.parse_args()
    os.environ.setdefault("TORCHANI_NO_WARN_EXTENSIONS", "1")
    torch.set_num_threads(1)
    wall = time.perf_counter()
    load_start = os.getloadavg()[0]
    timings = measure(args.repeats)
    result = {"benchmark": "potentials", "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "repeats": args.repeats, "torch_threads": torch.get_num_threads(), "dtype": "float32",
              "density_atoms_per_nm3": DENSITY, "machine": machine(), "versions": versions(),
              **summarize(timings),
              "raw": {f"{name} | {n}": value for (name, n), value in timings.items()},
              "load_average": {"start": load_start, "end": os.getloadavg()[0]}}
    try:
        import torchani
        result["versions"]["torchani"] = torchani.__version__
    except ImportError:
        pass
    result["runtime_s"] = time.perf_counter() - wall
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "potentials.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "potentials.md").write_text(markdown(result))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
