"""ms/step of pure MM versus mechanical ML/MM, and the bare cost of the potential, in one run.

System: alanine dipeptide in 860 TIP3P waters (3 nm cubic box, 2602 atoms), amber14, PME
0.9 nm, HBonds constraints (those inside the ML region removed by mlmm),
LangevinMiddleIntegrator 1 fs, OpenMM CPU platform. Two ML regions: the solute (22 atoms)
and the three waters nearest the box centre (9 atoms, the ~10-atom case). The ML potential is the force field
of the ML region as a TorchScript module (ForceFieldPotential, flexible water), so the
dynamics are sane and the potential's own cost can be measured separately. Configurations are measured interleaved,
``--repeats`` times, and medians reported, since the machine is shared.

    .venv/bin/python benchmarks/mechanical_overhead.py [--steps 300] [--repeats 3]

Prints a JSON object and writes benchmarks/results/mechanical_overhead.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as u
import torch

import mlmm
from mlmm.potentials import ForceFieldPotential

ROOT = Path(__file__).resolve().parents[1]
SYSTEM_DIR = ROOT / "systems" / "alanine-dipeptide"
TARGET_OVERHEAD_MS = 0.3


ML_REGIONS = ("solute (22 atoms)", "3 waters (9 atoms)")


def water_cluster(topology: app.Topology, positions: np.ndarray, count: int = 3) -> list[int]:
    """Atoms of the ``count`` waters whose oxygens are closest to the box centre (a compact cluster)."""
    centre = positions.mean(0)
    waters = [list(r.atoms()) for r in topology.residues() if r.name == "HOH"]
    waters.sort(key=lambda atoms: float(np.linalg.norm(positions[atoms[0].index] - centre)))
    return sorted(a.index for atoms in waters[:count] for a in atoms)


def build(threads: int):
    """Contexts of pure MM and of each ML region x transport; the potentials with their positions."""
    forcefield = app.ForceField("amber14-all.xml", "amber14/tip3p.xml")
    pdb = app.PDBFile(str(SYSTEM_DIR / "alanine-dipeptide-tip3p.pdb"))
    mm_system = forcefield.createSystem(pdb.topology, nonbondedMethod=app.PME, nonbondedCutoff=0.9 * u.nanometer,
                                        constraints=app.HBonds)
    flexible = forcefield.createSystem(pdb.topology, nonbondedMethod=app.NoCutoff, constraints=None,
                                       rigidWater=False)
    elements = [a.element.atomic_number for a in pdb.topology.atoms()]
    positions = np.asarray(pdb.positions.value_in_unit(u.nanometer))
    systems = {"pure MM": mm_system}
    potentials = {}
    regions = {ML_REGIONS[0]: list(range(22)), ML_REGIONS[1]: water_cluster(pdb.topology, positions)}
    for region, atoms in regions.items():
        potential = ForceFieldPotential.from_system(flexible, atoms, [elements[i] for i in atoms])
        potentials[region] = (potential, positions[atoms])
        for transport, label in (("torch", "TorchForce"), ("python", "PythonForce")):
            systems[f"mechanical, {region}, {label}"] = mlmm.create_mixed_system(
                pdb.topology, mm_system, atoms, potential, transport=transport)
    contexts = {}
    for name, system in systems.items():
        integrator = openmm.LangevinMiddleIntegrator(300 * u.kelvin, 1 / u.picosecond, 0.001 * u.picoseconds)
        integrator.setRandomNumberSeed(1)
        context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("CPU"),
                                 {"Threads": str(threads)})
        context.setPositions(pdb.positions)
        context.setVelocitiesToTemperature(300 * u.kelvin, 1)
        integrator.step(20)  # warm-up: neighbour lists, TorchScript profiling runs
        contexts[name] = (context, integrator)
    return contexts, potentials, pdb.topology.getNumAtoms()


def time_steps(integrator: openmm.Integrator, context: openmm.Context, steps: int) -> float:
    """Wall time per step in ms (the final getState waits for the last step to finish)."""
    start = time.perf_counter()
    integrator.step(steps)
    context.getState(getEnergy=True)
    return 1e3 * (time.perf_counter() - start) / steps


def time_potential(potential: torch.nn.Module, positions: np.ndarray, calls: int) -> float:
    """ms per forward + backward of the scripted potential alone (float64)."""
    scripted = torch.jit.script(potential)
    species = torch.zeros(len(positions), dtype=torch.long)
    x = torch.tensor(positions, dtype=torch.float64, requires_grad=True)
    for _ in range(20):
        torch.autograd.grad(scripted(species, x), x)
    start = time.perf_counter()
    for _ in range(calls):
        torch.autograd.grad(scripted(species, x), x)
    return 1e3 * (time.perf_counter() - start) / calls


def markdown(result: dict) -> str:
    medians = result["ms_per_step"]
    mm = medians["pure MM"]
    lines = ["| configuration | ms/step | ns/day (1 fs) | ratio to pure MM |", "|---|---:|---:|---:|"]
    for name, ms in medians.items():
        lines.append(f"| {name} | {ms:.3f} | {86.4 / ms:.2f} | {ms / mm:.3f} |")
    for region, ms in result["potential_ms_per_call"].items():
        lines.append(f"| potential alone, {region} (forward + backward) | {ms:.3f} | | |")
    lines += ["", f"Coupling overhead t_mlmm - t_mm - t_potential (target <= {TARGET_OVERHEAD_MS} ms/step):", ""]
    for name, overhead in result["coupling_overhead_ms"].items():
        verdict = "met" if overhead <= TARGET_OVERHEAD_MS else "NOT met"
        lines.append(f"- {name}: {overhead:.3f} ms/step ({verdict})")
    lines += ["", f"{result['atoms']} atoms, OpenMM CPU platform with {result['threads']} threads, torch "
              f"{result['torch_threads']} thread(s); medians of {result['repeats']} interleaved repeats of "
              f"{result['steps']} steps. Machine: {result['machine']}; openmm {result['versions']['openmm']}, "
              f"torch {result['versions']['torch']}, mlmm {result['versions']['mlmm']}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="MD steps per timing (default 300)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats (default 3)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="OpenMM CPU threads")
    parser.add_argument("--output-dir", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    torch.set_num_threads(1)
    contexts, potentials, atoms = build(args.threads)
    raw: dict[str, list[float]] = {name: [] for name in contexts}
    raw.update({f"potential alone, {region}": [] for region in potentials})
    for _ in range(args.repeats):
        for name, (context, integrator) in contexts.items():
            raw[name].append(time_steps(integrator, context, args.steps))
        for region, (potential, positions) in potentials.items():
            raw[f"potential alone, {region}"].append(time_potential(potential, positions, 10 * args.steps))
    medians = {name: statistics.median(raw[name]) for name in contexts}
    t_potential = {region: statistics.median(raw[f"potential alone, {region}"]) for region in potentials}
    mm = medians["pure MM"]
    overhead = {name: value - mm - t_potential[region] for name, value in medians.items()
                for region in potentials if region in name}
    result = {
        "benchmark": "mechanical_overhead", "atoms": atoms, "ml_regions": list(ML_REGIONS), "steps": args.steps,
        "repeats": args.repeats, "threads": args.threads, "torch_threads": torch.get_num_threads(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.system()}",
        "versions": {"openmm": openmm.__version__, "torch": torch.__version__, "mlmm": mlmm.__version__},
        "raw_ms": raw, "ms_per_step": medians, "potential_ms_per_call": t_potential,
        "coupling_overhead_ms": overhead, "ratio_to_mm": {name: value / mm for name, value in medians.items()},
    }
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "mechanical_overhead.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.output_dir / "mechanical_overhead.md").write_text(markdown(result))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
