"""Cost of mechanical ML/MM against pure MM, and of the potential alone, measured in one run.

System: alanine dipeptide (ACE-ALA-NME, 22 atoms) in 860 TIP3P waters, 3 nm cubic box, 2602
atoms; amber14 + TIP3P, PME with a 0.9 nm cutoff, HBonds constraints, LangevinMiddleIntegrator
(300 K, 1/ps, 1 fs), OpenMM CPU platform with ``--threads`` threads (default 2).

Measured (ms/step over ``--steps`` steps after a 50-step warm-up; ms/call for the potential):

(a) pure MM;
(b) mechanical ML/MM through ``mlmm.create_mixed_system`` with the solute as ML region,
    once with ``transport="torch"`` (openmmtorch.TorchForce) and once with ``"python"``
    (openmm.PythonForce). The potential is ``ForceFieldPotential`` built from a NoCutoff,
    unconstrained vacuum system of the solute: it reproduces the force field, so the
    dynamics are sane and the cost of the potential can be separated from the coupling;
(c) the potential alone: forward + backward (autograd forces) on the 22 solute positions,
    TorchScript (scripted and frozen, as TorchForce does), float64, torch with 1 thread;
(d) derived: coupling overhead t_mlmm - t_mm - t_potential (target <= 0.3 ms/step) and the
    ratio t_mlmm / t_mm.

Diagnostics (skip with ``--no-diagnostics``) split the TorchForce overhead: MD of the mixed
system without its ML force ("MM part"); the whole embedding module (index_select +
make_whole + potential) called from Python; the ML force alone as OpenMM evaluates it
(``getState(getForces=True, groups=...)`` of its force group minus that of an empty group),
for the real module and for a null module (the TorchForce floor) and for PythonForce.

All configurations are measured interleaved, ``--repeats`` times, in alternating order (the
machine is shared and noisy); medians are reported. Compare ratios within one run.

    .venv/bin/python benchmarks/bench_mechanical.py [--steps 500] [--repeats 7] [--output-dir DIR]

Prints one JSON object and writes DIR/mechanical.json and DIR/mechanical.md
(DIR defaults to benchmarks/results).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as u
import torch

import mlmm
from mlmm.bridge.mixed import EmbeddingPlan, build_mm_part, plan_embedding
from mlmm.bridge.transports import make_force
from mlmm.potentials import ForceFieldPotential
from timing import machine, time_calls, versions

ROOT = Path(__file__).resolve().parents[1]
SYSTEM_DIR = ROOT / "systems" / "alanine-dipeptide"
ML_SELECTION = "resname ACE or resname ALA or resname NME"
TARGET_OVERHEAD_MS = 0.3
WARMUP_STEPS = 50
TIMESTEP_FS = 1.0
TORCH_THREADS = 1
ML_GROUP, EMPTY_GROUP = 1, 30  # force group of the ML force; a group with no force

MM = "pure MM"
TORCH = "mechanical ML/MM, TorchForce"
PYTHON = "mechanical ML/MM, PythonForce"
MM_PART = "MM part of the mixed system (no ML force)"
POTENTIAL = "potential alone (forward + backward)"
MODULE = "embedding module alone, from Python (forward + backward)"
EMPTY_EVAL = "OpenMM evaluation of an empty force group"
TORCH_EVAL = "TorchForce evaluation in OpenMM"
NULL_EVAL = "TorchForce(null module) evaluation in OpenMM"
PYTHON_EVAL = "PythonForce evaluation in OpenMM"


class NullModule(torch.nn.Module):
    """The cheapest TorchForce module: zero energy that still depends on the positions."""

    def forward(self, positions: torch.Tensor, boxvectors: Optional[torch.Tensor] = None) -> torch.Tensor:
        return positions[0, 0] * 0.0


def scripted(module: torch.nn.Module) -> torch.jit.ScriptModule:
    """TorchScript as openmm-torch runs it (scripted, eval mode, frozen)."""
    return torch.jit.freeze(torch.jit.script(module).eval())


def mm_part(mm_system: openmm.System, plan: EmbeddingPlan) -> openmm.System:
    """The mixed system without its ML force, the ML atoms frozen (mass 0).

    Without the ML force nothing holds the solute together; frozen, it keeps the dynamics sane
    (and stable over the run) at the cost of the MM part.
    """
    system = build_mm_part(mm_system, plan)
    for i in plan.ml_atoms:
        system.setParticleMass(i, 0.0)
    return system


def make_context(system: openmm.System, pdb: app.PDBFile, threads: int) -> tuple[openmm.Context, openmm.Integrator]:
    """A CPU-platform context with the benchmark's integrator, at the PDB positions."""
    integrator = openmm.LangevinMiddleIntegrator(300 * u.kelvin, 1 / u.picosecond, TIMESTEP_FS * u.femtosecond)
    integrator.setRandomNumberSeed(1)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("CPU"), {"Threads": str(threads)})
    context.setPositions(pdb.positions)
    return context, integrator


def build(threads: int, diagnostics: bool) -> dict:
    """Contexts for every MD configuration, the timed calls and sanity energies."""
    forcefield = app.ForceField("amber14-all.xml", "amber14/tip3p.xml")
    pdb = app.PDBFile(str(SYSTEM_DIR / "alanine-dipeptide-tip3p.pdb"))
    solute = app.PDBFile(str(SYSTEM_DIR / "alanine-dipeptide.pdb"))
    mm_system = forcefield.createSystem(pdb.topology, nonbondedMethod=app.PME, nonbondedCutoff=0.9 * u.nanometer,
                                        constraints=app.HBonds)
    # Vacuum, no cutoff, no constraints: mlmm removes the constraints inside the ML region.
    vacuum = forcefield.createSystem(solute.topology, nonbondedMethod=app.NoCutoff, constraints=None)
    n_ml = solute.topology.getNumAtoms()
    numbers = [a.element.atomic_number for a in solute.topology.atoms()]
    potential = ForceFieldPotential.from_system(vacuum, range(n_ml), numbers)

    systems = {MM: mm_system}
    for name, transport in ((TORCH, "torch"), (PYTHON, "python")):
        # The force group does not change the MD cost; it lets the diagnostics evaluate the ML force alone.
        systems[name] = mlmm.create_mixed_system(pdb.topology, mm_system, ML_SELECTION, potential,
                                                 embedding="mechanical", transport=transport, force_group=ML_GROUP)
    plan = plan_embedding(pdb.topology, mm_system, ML_SELECTION, potential, "mechanical")
    if plan.ml_atoms != list(range(n_ml)):
        raise ValueError(f"the selection {ML_SELECTION!r} gave atoms {plan.ml_atoms}, expected the first {n_ml} "
                         "(the order of alanine-dipeptide.pdb the potential was built for).")
    if diagnostics:
        systems[MM_PART] = mm_part(mm_system, plan)

    contexts, energies, threads_used = {}, {}, {}
    for name, system in systems.items():
        context, integrator = make_context(system, pdb, threads)
        energies[name] = context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(u.kilojoule_per_mole)
        context.setVelocitiesToTemperature(300 * u.kelvin, 1)
        integrator.step(WARMUP_STEPS)  # neighbour lists, PME plans, TorchScript profiling runs
        threads_used[name] = context.getPlatform().getPropertyValue(context, "Threads")
        contexts[name] = (context, integrator)

    positions = np.ascontiguousarray(pdb.getPositions(asNumpy=True).value_in_unit(u.nanometer), dtype=np.float64)
    species = torch.tensor(numbers, dtype=torch.long)
    calls: dict[str, Callable[[], None]] = {
        POTENTIAL: _backward_call(scripted(potential), positions[:n_ml].copy(), lambda x: (species, x))}
    if diagnostics:
        box = torch.tensor([v.value_in_unit(u.nanometer) for v in pdb.topology.getPeriodicBoxVectors()],
                           dtype=torch.float64)
        calls[MODULE] = _backward_call(scripted(plan.module), positions, lambda x: (x, box))
        null_system = mm_part(mm_system, plan)
        null_force = make_force(NullModule(), True, "torch")
        null_force.setForceGroup(ML_GROUP)
        null_system.addForce(null_force)
        null_context, null_integrator = make_context(null_system, pdb, threads)
        null_integrator.step(WARMUP_STEPS)
        contexts_only_evaluated = {NULL_EVAL: null_context}  # kept alive; never stepped
        calls[EMPTY_EVAL] = _group_call(contexts[TORCH][0], EMPTY_GROUP)
        calls[TORCH_EVAL] = _group_call(contexts[TORCH][0], ML_GROUP)
        calls[NULL_EVAL] = _group_call(null_context, ML_GROUP)
        calls[PYTHON_EVAL] = _group_call(contexts[PYTHON][0], ML_GROUP)
    else:
        contexts_only_evaluated = {}
    return {"contexts": contexts, "evaluated": contexts_only_evaluated, "calls": calls, "energies": energies,
            "threads_used": threads_used, "atoms": pdb.topology.getNumAtoms(), "ml_atoms": n_ml,
            "waters": sum(1 for r in pdb.topology.residues() if r.name == "HOH"),
            "constraints": {name: s.getNumConstraints() for name, s in systems.items()}}


def _backward_call(module: torch.jit.ScriptModule, positions: np.ndarray, arguments) -> Callable[[], None]:
    """One forward + backward the way TorchForce does it: a fresh leaf tensor, energy.backward()."""
    def call() -> None:
        x = torch.from_numpy(positions).requires_grad_(True)
        module(*arguments(x)).backward()
        x.grad.numpy()
    return call


def _group_call(context: openmm.Context, group: int) -> Callable[[], None]:
    """Energy and forces of one force group of ``context`` (only that group's kernels run)."""
    def call() -> None:
        context.getState(getForces=True, getEnergy=True, groups=1 << group)
    return call


def time_steps(context: openmm.Context, integrator: openmm.Integrator, steps: int) -> float:
    """Wall time per MD step in ms (the final getState waits for the last step)."""
    start = time.perf_counter()
    integrator.step(steps)
    context.getState(getEnergy=True)
    return 1e3 * (time.perf_counter() - start) / steps


def summarize(raw: dict, diagnostics: bool) -> dict:
    """Medians, ratios, the coupling overhead (d) and, with diagnostics, its split."""
    steps, calls = raw["ms_per_step"], raw["ms_per_call"]
    md = {name: statistics.median(values) for name, values in steps.items()}
    fastest = {name: min(values) for name, values in steps.items()}
    per_call = {name: statistics.median(v["median"] for v in values) for name, values in calls.items()}
    t_mm, t_pot = md[MM], per_call[POTENTIAL]
    overhead = {name: md[name] - t_mm - t_pot for name in (TORCH, PYTHON)}
    # The same quantities within each repeat (neighbouring measurements, less exposed to slow drifts).
    per_repeat = {name: [s - m - p["median"] for s, m, p in zip(steps[name], steps[MM], calls[POTENTIAL])]
                  for name in (TORCH, PYTHON)}
    result = {
        "ms_per_step": md, "ns_per_day": {name: 86.4 * TIMESTEP_FS / ms for name, ms in md.items()},
        "ratio_to_mm": {name: ms / t_mm for name, ms in md.items()},
        "ms_per_call": per_call,
        "coupling_overhead_ms_per_step": overhead,
        "coupling_overhead_per_repeat_ms": per_repeat,
        # Contention on a shared machine only slows runs down: the fastest repeat is a second estimate.
        "ms_per_step_fastest": fastest,
        "coupling_overhead_fastest_ms": {name: fastest[name] - fastest[MM] - t_pot for name in (TORCH, PYTHON)},
        "target_overhead_ms_per_step": TARGET_OVERHEAD_MS,
        "target_met": {name: value <= TARGET_OVERHEAD_MS for name, value in overhead.items()},
    }
    if diagnostics:
        empty = per_call[EMPTY_EVAL]
        net = {name: per_call[name] - empty for name in (TORCH_EVAL, NULL_EVAL, PYTHON_EVAL)}
        result["ml_force_alone_ms"] = net
        # The ML force as OpenMM evaluates it, minus the potential: precise (call timings), but blind
        # to what changes inside an MD step (MM part, caches after the MM work).
        result["coupling_overhead_isolated_ms"] = {TORCH: net[TORCH_EVAL] - t_pot, PYTHON: net[PYTHON_EVAL] - t_pot}
        split = {
            "MM part vs pure MM (MD; ML-internal terms and constraints removed, ML-ML exceptions added, "
            "ML atoms frozen)":
                md[MM_PART] - t_mm,
            "embedding wrapper (module from Python - potential alone; index_select, make_whole, casts, "
            "full-size gradient)": per_call[MODULE] - t_pot,
            "TorchForce transport (ML force evaluated by OpenMM - module from Python)":
                net[TORCH_EVAL] - per_call[MODULE],
        }
        split["rest: interference inside the MD step and noise"] = overhead[TORCH] - sum(split.values())
        result["overhead_split_torch_ms_per_step"] = split
        result["torchforce_floor_ms"] = net[NULL_EVAL]
        result["pythonforce_overhead_ms"] = net[PYTHON_EVAL] - t_pot
    return result


def markdown(result: dict) -> str:
    """The results as a Markdown page."""
    s = result["summary"]
    md, per_call = s["ms_per_step"], s["ms_per_call"]
    lines = ["# Mechanical ML/MM vs pure MM (bench_mechanical.py)", "",
             "| configuration | ms/step | ns/day | ratio to pure MM |", "|---|---:|---:|---:|"]
    for name in (MM, TORCH, PYTHON):
        lines.append(f"| {name} | {md[name]:.3f} | {s['ns_per_day'][name]:.2f} | {s['ratio_to_mm'][name]:.3f} |")
    lines.append(f"| {POTENTIAL}, {result['ml_atoms']} atoms (ms/call) | {per_call[POTENTIAL]:.3f} | | |")
    lines += ["", f"Coupling overhead t_mlmm - t_mm - t_potential (target <= {TARGET_OVERHEAD_MS} ms/step):", ""]
    for name, value in s["coupling_overhead_ms_per_step"].items():
        verdict = "target met" if s["target_met"][name] else "target NOT met"
        spread = s["coupling_overhead_per_repeat_ms"][name]
        lines.append(f"- {name}: {value:.3f} ms/step, {verdict} (per repeat {min(spread):.3f} to {max(spread):.3f})")
    fast = s["coupling_overhead_fastest_ms"]
    lines.append(f"- from the fastest repeat of each configuration instead of the median: TorchForce "
                 f"{fast[TORCH]:.3f}, PythonForce {fast[PYTHON]:.3f} ms/step")
    if "coupling_overhead_isolated_ms" in s:
        iso = s["coupling_overhead_isolated_ms"]
        lines.append(f"- isolated (ML force evaluated alone by OpenMM - potential alone; precise, excludes effects "
                     f"inside the MD step): TorchForce {iso[TORCH]:.3f}, PythonForce {iso[PYTHON]:.3f} ms/call")
    if "overhead_split_torch_ms_per_step" in s:
        lines += ["", "## Diagnostics: where the TorchForce overhead goes", "",
                  "| measurement | ms |", "|---|---:|",
                  f"| {MM_PART}, ms/step | {md[MM_PART]:.3f} |",
                  f"| {MODULE}, {result['atoms']} positions + box, ms/call | {per_call[MODULE]:.3f} |"]
        for name, value in s["ml_force_alone_ms"].items():
            lines.append(f"| {name} (minus an empty group's {per_call[EMPTY_EVAL]:.3f}), ms/call | {value:.3f} |")
        lines += ["", "Split of the TorchForce coupling overhead (ms/step, sums to the overhead above):", ""]
        for name, value in s["overhead_split_torch_ms_per_step"].items():
            lines.append(f"- {name}: {value:+.3f}")
        lines.append(f"- (TorchForce floor, a null module evaluated by OpenMM: {s['torchforce_floor_ms']:.3f}; "
                     f"PythonForce evaluation - potential alone: {s['pythonforce_overhead_ms']:.3f})")
    st, m, v = result["settings"], result["machine"], result["versions"]
    lines += ["", f"{result['atoms']} atoms ({result['ml_atoms']} ML, {result['waters']} TIP3P waters); "
              f"{st['forcefield']}, PME {st['cutoff_nm']} nm, {st['constraints']} constraints, "
              f"LangevinMiddleIntegrator {st['timestep_fs']:g} fs; OpenMM CPU platform with Threads="
              f"{st['openmm_threads']}; torch {st['torch_threads']} intra-op thread for the ML module (default "
              f"was {st['torch_threads_default']}). Medians of {st['repeats']} interleaved repeats (alternating "
              f"order) of {st['steps']} steps after a {WARMUP_STEPS}-step warm-up; calls: median per call over "
              f"{st['calls']} calls per repeat. Machine: {m['cpu_model'] or m['processor']}, {m['cpu_count']} CPUs, "
              f"{m['uname']}, load average {result['load_average']['start']:.2f} at start; openmm {v['openmm']}, "
              f"torch {v['torch']}, openmmtorch ({v['openmmtorch']}), mlmm {v['mlmm']}. Run time "
              f"{result['runtime_s']:.0f} s. Compare ratios within one run; absolute numbers vary between runs "
              f"on a shared machine.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500, help="MD steps per timing (default 500)")
    parser.add_argument("--repeats", type=int, default=7, help="interleaved repeats (default 7)")
    parser.add_argument("--calls", type=int, default=1000, help="calls per repeat for call timings (default 1000)")
    parser.add_argument("--threads", type=int, default=2, help="OpenMM CPU platform threads (default 2)")
    parser.add_argument("--no-diagnostics", dest="diagnostics", action="store_false",
                        help="skip the measurements that split the overhead")
    parser.add_argument("--output-dir", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()
    if min(args.steps, args.repeats, args.calls, args.threads) < 1:
        parser.error("--steps, --repeats, --calls and --threads must be positive integers")

    wall = time.perf_counter()
    load_start = os.getloadavg()[0]
    torch_threads_default = torch.get_num_threads()
    # One intra-op thread for the ML module: TorchForce and PythonForce run it in the thread that
    # calls integrator.step (this one); the OpenMM CPU platform has its own --threads workers.
    torch.set_num_threads(TORCH_THREADS)
    setup = build(args.threads, args.diagnostics)
    setup_s = time.perf_counter() - wall

    raw: dict = {"ms_per_step": {name: [] for name in setup["contexts"]},
                 "ms_per_call": {name: [] for name in setup["calls"]}}
    jobs = [("md", name) for name in setup["contexts"]] + [("call", name) for name in setup["calls"]]
    for repeat in range(args.repeats):
        for kind, name in (jobs if repeat % 2 == 0 else jobs[::-1]):
            if kind == "md":
                raw["ms_per_step"][name].append(time_steps(*setup["contexts"][name], args.steps))
            else:
                raw["ms_per_call"][name].append(time_calls(setup["calls"][name], args.calls))

    final = {name: context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(u.kilojoule_per_mole)
             for name, (context, _) in setup["contexts"].items()}
    if not all(math.isfinite(e) for e in final.values()):
        raise RuntimeError(f"a simulation blew up; final potential energies (kJ/mol): {final}")
    e0 = setup["energies"]
    result = {
        "benchmark": "bench_mechanical",
        "system": "alanine dipeptide in TIP3P (systems/alanine-dipeptide/alanine-dipeptide-tip3p.pdb)",
        "atoms": setup["atoms"], "ml_atoms": setup["ml_atoms"], "waters": setup["waters"],
        "ml_selection": ML_SELECTION,
        "machine": machine(), "versions": versions(),
        "settings": {
            "platform": "CPU", "openmm_threads": args.threads, "openmm_threads_in_context": setup["threads_used"],
            "torch_threads": torch.get_num_threads(), "torch_threads_default": torch_threads_default,
            "torch_interop_threads": torch.get_num_interop_threads(),
            "forcefield": "amber14-all + amber14/tip3p", "nonbonded": "PME", "cutoff_nm": 0.9,
            "constraints": "HBonds", "num_constraints": setup["constraints"],
            "integrator": "LangevinMiddleIntegrator 300 K, 1/ps", "timestep_fs": TIMESTEP_FS,
            "warmup_steps": WARMUP_STEPS, "steps": args.steps, "repeats": args.repeats, "calls": args.calls,
            "order": "interleaved; forward order in even repeats, reversed in odd ones",
            "potential": "ForceFieldPotential of the solute (vacuum, NoCutoff, no constraints), float64; "
                         "TorchScript scripted + frozen for the call timings",
            "embedding": "mechanical", "ml_force_group": ML_GROUP,
        },
        "sanity": {
            "initial_potential_energy_kj_mol": e0,
            "torch_minus_python_kj_mol": e0[TORCH] - e0[PYTHON],
            "mlmm_minus_mm_kj_mol": e0[TORCH] - e0[MM],
            "note": "ML/MM - MM differs by the periodic images and LJ cutoff of intra-solute pairs, "
                    "which the NoCutoff potential does not see",
            "final_potential_energy_kj_mol": final,
        },
        "raw": raw,
        "summary": summarize(raw, args.diagnostics),
        "load_average": {"start": load_start, "end": os.getloadavg()[0]},
        "setup_s": setup_s,
    }
    result["runtime_s"] = time.perf_counter() - wall
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "mechanical.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.output_dir / "mechanical.md").write_text(markdown(result))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
