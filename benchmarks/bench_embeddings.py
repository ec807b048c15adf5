"""Cost per MD step of each embedding scheme against pure MM, for the formic acid dimer in two box sizes.

Systems: the cyclic formic acid dimer (10 ML atoms) in TIP3P, the 3 nm box of
systems/formic-acid-dimer/formic-acid-dimer-tip3p.pdb (2629 atoms) and a 5 nm box solvated
here with OpenMM's Modeller (about 12 000 atoms); formic-acid.xml + amber14 TIP3P, PME 0.9 nm,
rigid water, LangevinMiddleIntegrator (300 K, 1/ps, 0.5 fs), CPU platform with each of the
``--threads`` thread counts (default 1 and 2), torch with 1 thread. The solvent is first minimised
around the fixed dimer. OpenMM's threads and torch's share the cores (two here), so whether a
scheme gains from leaving the torch thread a core of its own is measured, not assumed: every
configuration runs at every count, and the summary takes each configuration at its fastest count
(what a user would choose).

Configurations: pure MM (the dimer held fixed: formic-acid.xml has no bonded terms, so the
force field alone cannot move it; the cost is that of the MM forces on all atoms), and the
mixed systems of ``mlmm.create_mixed_system`` with the trained dimer models: mechanical and
mechanical-ml-charges (systems/formic-acid-dimer/model/model.pt), electrostatic
(systems/formic-acid-dimer/embedding/model/model.pt) and buffer (buffer 0.35-0.45 nm) with the
"ml-charges" outer coupling: the network run in dynamics (systems/formic-acid-dimer/buffer/
model-anchored-contacts/model.pt, a 32-feature PhysNet on a vacuum network of the dimer) and the
weighted mean of a 64-feature PhysNet and a PaiNN (mean-anchored-extra/model.pt, the most accurate
model), and with the "charge-difference" coupling (model-field-dq/model.pt, a 32-feature PhysNet
without the vacuum network), TorchForce transport;
and mechanical, mechanical-ml-charges and electrostatic through PythonForce with the energy and
gradient compiled ahead of time by AOTInductor (``compiled=True``; the compilation falls in the
warm-up; the electrostatic model's vacuum and embedding terms are two libraries).

All configurations of both boxes and all thread counts are timed interleaved, ``--repeats`` times in
alternating order (the machine is shared and noisy), ``--steps`` steps each after a warm-up; medians
are reported for each thread count, and at each configuration's fastest count with the ratio to
mechanical and the cost the embedding adds to pure MM (t - t_MM), whose growth from the 3 nm to
the 5 nm box shows how the per-step work scales with the MM environment.

Diagnostics: each scheme's embedding module alone (ms per forward + backward call) in each box,
and the electrostatic model's two networks alone, to show where the per-step cost goes.

    .venv/bin/python benchmarks/bench_embeddings.py [--steps 100] [--repeats 5] [--threads 1 2] [--calls 200]
        [--output-dir DIR]

Prints one JSON object and writes DIR/embeddings.json and DIR/embeddings.md
(DIR defaults to benchmarks/results).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import openmm
import openmm.app as app
import openmm.unit as u
import torch

import mlmm
from mlmm.bridge.mixed import compilable_potential, plan_embedding
from mlmm.bridge.transports import EagerComputation, inference_script
from mlmm.embedding.surgery import frozen_copy
from timing import forward_backward, machine, versions, time_calls

ROOT = Path(__file__).resolve().parents[1]
SYSTEM_DIR = ROOT / "systems" / "formic-acid-dimer"
#: Configuration: (embedding scheme, model file).
MODELS = {"mechanical": ("mechanical", SYSTEM_DIR / "model" / "model.pt"),
          "mechanical-ml-charges": ("mechanical-ml-charges", SYSTEM_DIR / "model" / "model.pt"),
          "electrostatic": ("electrostatic", SYSTEM_DIR / "embedding" / "model" / "model.pt"),
          "buffer": ("buffer", SYSTEM_DIR / "buffer" / "model-anchored-contacts" / "model.pt"),
          "buffer, mean of two networks": ("buffer", SYSTEM_DIR / "buffer" / "mean-anchored-extra" / "model.pt"),
          "buffer, charge-difference": ("buffer", SYSTEM_DIR / "buffer" / "model-field-dq" / "model.pt")}
OPTIONS = {"buffer": {"buffer_cutoff": 0.45, "buffer_switch_distance": 0.35}}  # as the buffer network was trained
#: The same schemes through PythonForce compiled by AOTInductor (at the first call, during the warm-up).
COMPILED = {"mechanical, compiled": "mechanical", "mechanical-ml-charges, compiled": "mechanical-ml-charges",
            "electrostatic, compiled": "electrostatic"}
SCHEMES = ["pure MM", *MODELS, *COMPILED]
BOXES = {"3 nm": None, "5 nm": 5.0}  # None: the shipped PDB
WARMUP_STEPS = 20
TIMESTEP_FS = 0.5


def solvated(box_nm) -> tuple[app.Topology, list]:
    if box_nm is None:
        pdb = app.PDBFile(str(SYSTEM_DIR / "formic-acid-dimer-tip3p.pdb"))
        return pdb.topology, pdb.positions
    pdb = app.PDBFile(str(SYSTEM_DIR / "formic-acid-dimer.pdb"))
    modeller = app.Modeller(pdb.topology, pdb.positions)
    modeller.addSolvent(forcefield(), model="tip3p", boxSize=openmm.Vec3(box_nm, box_nm, box_nm) * u.nanometer)
    return modeller.topology, modeller.positions


def forcefield() -> app.ForceField:
    return app.ForceField(str(SYSTEM_DIR / "formic-acid.xml"), "amber14/tip3p.xml")


def prepared(box_nm) -> dict:
    """Every configuration's System for one box, and the solvent minimised once around the fixed dimer."""
    topology, positions = solvated(box_nm)
    mm_system = forcefield().createSystem(topology, nonbondedMethod=app.PME, nonbondedCutoff=0.9 * u.nanometer,
                                          constraints=app.HBonds)
    dimer = [a.index for a in topology.atoms() if a.residue.name == "FMA"]
    pure_mm = frozen_copy(mm_system, dimer)
    platform = openmm.Platform.getPlatformByName("CPU")
    minimiser = openmm.Context(pure_mm, openmm.VerletIntegrator(0.001), platform)
    minimiser.setPositions(positions)
    openmm.LocalEnergyMinimizer.minimize(minimiser, 10.0, 200)
    start = minimiser.getState(getPositions=True).getPositions()
    systems = {"pure MM": pure_mm}
    for name, (scheme, model) in MODELS.items():
        systems[name] = mlmm.create_mixed_system(topology, mm_system, dimer, str(model), embedding=scheme,
                                                   **OPTIONS.get(scheme, {}))
    for name, scheme in COMPILED.items():
        systems[name] = mlmm.create_mixed_system(topology, mm_system, dimer, str(MODELS[scheme][1]), embedding=scheme,
                                                   transport="python", compiled=True)
    box = [[v.x, v.y, v.z] for v in topology.getPeriodicBoxVectors().value_in_unit(u.nanometer)]
    return {"atoms": topology.getNumAtoms(), "systems": systems, "start": start,
            "inputs": (topology, mm_system, dimer, start.value_in_unit(u.nanometer), box)}


def contexts(box: dict, threads: int) -> dict:
    """One Context per configuration of a :func:`prepared` box with ``threads`` OpenMM threads, warmed up
    from the minimised positions."""
    platform = openmm.Platform.getPlatformByName("CPU")
    result = {}
    for scheme, system in box["systems"].items():
        integrator = openmm.LangevinMiddleIntegrator(300 * u.kelvin, 1 / u.picosecond, TIMESTEP_FS * u.femtosecond)
        integrator.setRandomNumberSeed(1)
        context = openmm.Context(system, integrator, platform, {"Threads": str(threads)})
        context.setPositions(box["start"])
        context.setVelocitiesToTemperature(300 * u.kelvin, 1)
        integrator.step(WARMUP_STEPS)
        result[scheme] = (context, integrator)
    return result


def module_costs(topology: app.Topology, mm_system: openmm.System, dimer: list, positions, box, calls: int) -> dict:
    """ms per call of each scheme's embedding module alone (forward + backward, TorchScript as
    TorchForce runs it, torch on one thread), and of the electrostatic scheme's two networks: the
    vacuum network on the dimer and the embedding network in the field of the MM molecules
    (gathered once); the rest of that module is the environment (screen, placement, weights)."""
    x = torch.tensor(positions, dtype=torch.float64)
    cell = torch.tensor(box, dtype=torch.float64)
    costs = {}
    for name, (scheme, model) in MODELS.items():
        plan = plan_embedding(topology, mm_system, dimer, str(model), scheme, **OPTIONS.get(scheme, {}))
        module = inference_script(plan.module)
        costs[name] = time_calls(lambda: forward_backward(lambda p: module(p, cell), x), calls)["median"]
        if scheme == "electrostatic":
            dtype = plan.module.model_dtype_probe.dtype
            x_ml = plan.module.ml_positions(x, cell).to(dtype)
            mm_x, mm_q, _ = (t.detach().to(dtype) for t in plan.module.environment(x_ml, x, cell))
            species, potential = plan.module.species, module.potential
            costs["electrostatic: vacuum network"] = time_calls(
                lambda: forward_backward(lambda p: potential.vacuum(species, p), x_ml), calls)["median"]
            costs["electrostatic: embedding network in the field"] = time_calls(lambda: forward_backward(
                lambda p: potential.embedding.evaluate_in_field(species, p, mm_x, mm_q, 0.0)["energy"].sum(), x_ml),
                calls)["median"]
    for name, scheme in COMPILED.items():
        plan = plan_embedding(topology, mm_system, dimer, compilable_potential(str(MODELS[scheme][1]), scheme),
                              scheme)
        computation = EagerComputation(plan.module, True, compiled=True)
        costs[name] = time_calls(lambda: computation.energy_and_gradient(x, cell), calls)["median"]
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="OpenMM CPU thread counts")
    parser.add_argument("--calls", type=int, default=200, help="timed calls of each module alone")
    parser.add_argument("--output-dir", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    torch.set_num_threads(1)
    boxes = {box: prepared(size) for box, size in BOXES.items()}
    setups = {(box, threads): contexts(boxes[box], threads) for box in BOXES for threads in args.threads}
    times = {(box, threads, scheme): [] for box, threads in setups for scheme in SCHEMES}
    for repeat in range(args.repeats):
        order = list(times) if repeat % 2 == 0 else list(reversed(times))
        for box, threads, scheme in order:
            context, integrator = setups[(box, threads)][scheme]
            start = time.perf_counter()
            integrator.step(args.steps)
            context.getState(getEnergy=True)  # wait for the last step
            times[(box, threads, scheme)].append(1e3 * (time.perf_counter() - start) / args.steps)
    results = {"machine": machine(), "versions": versions(), "steps": args.steps, "repeats": args.repeats,
               "threads": args.threads, "boxes": {},
               "module_ms_per_call": {box: module_costs(*boxes[box]["inputs"], args.calls) for box in BOXES}}
    for box in BOXES:
        by_threads = {str(t): {s: statistics.median(times[(box, t, s)]) for s in SCHEMES} for t in args.threads}
        fastest = {s: min(args.threads, key=lambda t: by_threads[str(t)][s]) for s in SCHEMES}
        medians = {s: by_threads[str(fastest[s])][s] for s in SCHEMES}
        results["boxes"][box] = {"atoms": boxes[box]["atoms"], "ms_per_step_by_threads": by_threads,
                                 "fastest_threads": fastest, "ms_per_step": medians,
                                 "ratio_to_mechanical": {s: medians[s] / medians["mechanical"] for s in SCHEMES},
                                 "ratio_to_pure_mm": {s: medians[s] / medians["pure MM"] for s in SCHEMES},
                                 "added_to_pure_mm_ms": {s: medians[s] - medians["pure MM"] for s in SCHEMES}}
    added = {box: results["boxes"][box]["added_to_pure_mm_ms"] for box in BOXES}
    results["added_cost_growth_3_to_5_nm"] = {s: added["5 nm"][s] / added["3 nm"][s] - 1.0
                                              for s in SCHEMES if s != "pure MM"}
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "embeddings.json").write_text(json.dumps(results, indent=2))
    (args.output_dir / "embeddings.md").write_text(markdown(results))
    print(json.dumps(results, indent=2))


def markdown(results: dict) -> str:
    threads = results["threads"]
    boxes = results["boxes"]
    lines = ["# Embedding schemes: ms per MD step, formic acid dimer in TIP3P",
             "",
             f"`benchmarks/bench_embeddings.py`, {results['steps']} steps x {results['repeats']} interleaved repeats, "
             f"medians; CPU platform with {' and '.join(map(str, threads))} threads, torch 1 thread; "
             f"{results['machine']['cpu_model']} ({results['machine']['cpus_available']} CPUs available); "
             f"OpenMM {results['versions']['openmm']}, torch {results['versions']['torch']}.",
             "",
             "Each configuration at its fastest OpenMM thread count (in brackets):",
             "",
             "| scheme | " + " | ".join(f"{box} box ({r['atoms']} atoms): ms/step (threads), x mechanical, added to MM "
                                       "(ms)" for box, r in boxes.items()) + " | added cost growth 3 -> 5 nm |",
             "|---|" + "---|" * (len(boxes) + 1)]
    for scheme in SCHEMES:
        cells = []
        for r in boxes.values():
            cells.append(f"{r['ms_per_step'][scheme]:.1f} ({r['fastest_threads'][scheme]}), "
                         f"{r['ratio_to_mechanical'][scheme]:.2f}, {r['added_to_pure_mm_ms'][scheme]:.1f}")
        growth = results["added_cost_growth_3_to_5_nm"].get(scheme)
        growth_cell = "" if growth is None else f"{100 * growth:+.0f} %"
        lines.append(f"| {scheme} | " + " | ".join(cells) + f" | {growth_cell} |")
    small = boxes["3 nm"]
    lines += ["", "Targets: electrostatic at most 1.3x and buffer at most 2.5x mechanical; added cost growing by at "
              "most 20 % from 3 to 5 nm. Mechanical / pure MM (3 nm box, the ~10-atom solute in ~3k atoms of "
              "TIP3P of the CPU target <= 1.15x): TorchForce "
              f"{small['ratio_to_pure_mm']['mechanical']:.2f}, compiled PythonForce "
              f"{small['ratio_to_pure_mm']['mechanical, compiled']:.2f}. Electrostatic / "
              "mechanical, both compiled: " + ", ".join(
                  f"{box} {r['ms_per_step']['electrostatic, compiled'] / r['ms_per_step']['mechanical, compiled']:.2f}"
                  for box, r in boxes.items()) + ".", "",
              "ms/step at each OpenMM thread count (x mechanical at the same count):", "",
              "| scheme | " + " | ".join(f"{box}, {t} thread{'s' if t > 1 else ''}" for box in boxes for t in threads)
              + " |", "|---|" + "---|" * (len(boxes) * len(threads))]
    for scheme in SCHEMES:
        counts = [r["ms_per_step_by_threads"][str(t)] for r in boxes.values() for t in threads]
        cells = [f"{ms[scheme]:.1f} ({ms[scheme] / ms['mechanical']:.2f})" for ms in counts]
        lines.append(f"| {scheme} | " + " | ".join(cells) + " |")
    lines += ["", "Each embedding module alone, ms per call (forward + backward, torch on 1 thread; TorchScript, "
              "or the AOTInductor library for the compiled rows):", "",
              "| module | " + " | ".join(f"{box} box" for box in results["module_ms_per_call"]) + " |",
              "|---|" + "---|" * len(results["module_ms_per_call"])]
    module_boxes = list(results["module_ms_per_call"].values())
    for name in module_boxes[0]:
        lines.append(f"| {name} | " + " | ".join(f"{costs[name]:.2f}" for costs in module_boxes) + " |")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
