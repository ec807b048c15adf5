"""ms per MD step over a grid of MM environment sizes and ML region sizes, every scheme and transport.

Systems: TIP3P water boxes of about ``--mm-atoms`` atoms (OpenMM's Modeller, amber14 TIP3P, PME
0.9 nm, rigid water); the ML region is the ``--ml-waters`` waters nearest the box centre (1, 3, 10,
33 waters: 3, 9, 30, 99 atoms), run with the trained water models of systems/water (vacuum model
for mechanical and mechanical-ml-charges, embedding/ for electrostatic, buffer/ for buffer with
the 0.35-0.5 nm buffer it was trained for). LangevinMiddleIntegrator 300 K, 1/ps, 0.5 fs; OpenMM
CPU platform with ``--threads`` threads, torch with 1 thread, or (``--platform CUDA``) the CUDA platform in mixed
precision with the ML force on the same GPU. The ML atoms are held fixed (mass 0)
in every configuration, pure MM included: the water models know one water in solvent, not
contacts between ML waters, and a region of several free ML waters falls apart within tens of
steps (atoms flying through the box force OpenMM to rebuild its neighbour list every step,
which times the wreck, not the method). The ML force is still evaluated every step and the
solvent moves, so the cutoff and buffer populations change as in a real run.

Configurations: pure MM; mlmm's four schemes through TorchForce and through PythonForce; the
schemes but the buffer through PythonForce compiled by AOTInductor (``compiled=True``, compiled in
the warm-up); on CUDA, instead of the compiled ones, the four schemes through TorchForce with the ML force
captured in a CUDA graph (``cuda_graphs=True``); and openmm-ml 1.8's mechanical embedding with the identical
model, run the way openmm-ml runs its model families (an eager ``openmm.PythonForce`` callback on the ML
particles' positions, the model on the GPU when torch sees one).

Each configuration runs in its own process (a fresh interpreter: no caches or threads shared
between configurations), ``--steps`` steps after a warm-up, timed ``--repeats`` times (median);
the configurations of one grid point run one after another, so their ratios are measured within
minutes of each other. Prints one JSON object and writes DIR/scaling.json, DIR/scaling.md and
DIR/scaling.png (scaling-cuda.* on CUDA; DIR defaults to benchmarks/results). The JSON is rewritten after every
configuration, so an interrupted run keeps what it measured (``--report-only`` makes the table and plot of it).

    .venv/bin/python benchmarks/bench_scaling.py [--mm-atoms 1000 3000 10000 30000] [--ml-waters 1 3 10 33]
        [--configs ...] [--steps 50] [--repeats 3] [--threads 2] [--platform CPU] [--output-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as u

ROOT = Path(__file__).resolve().parents[1]
WATER = ROOT / "systems" / "water"
MODELS = {"mechanical": WATER / "model" / "model.pt", "mechanical-ml-charges": WATER / "model" / "model.pt",
          "electrostatic": WATER / "embedding" / "model" / "model.pt",
          "buffer": WATER / "buffer" / "model" / "model.pt"}
OPTIONS = {"buffer": {"buffer_cutoff": 0.5, "buffer_switch_distance": 0.35}}  # as the buffer network was trained
#: PythonForce with the module's energy and gradient compiled by AOTInductor (``compiled=True``; compiled at the
#: first call, in the warm-up): every scheme but the buffer, whose fixed-shape graph is ruled out on CPU.
COMPILED = [scheme for scheme in MODELS if scheme != "buffer"]
_EVERY_PLATFORM = ["pure MM",
                   *(f"{scheme}, {transport}" for transport in ("TorchForce", "PythonForce") for scheme in MODELS)]
#: The default configurations of each platform: CUDA graphs exist only on CUDA, and AOTInductor's GPU compilation
#: (minutes per configuration) is left out there.
PLATFORM_CONFIGS = {
    "CPU": [*_EVERY_PLATFORM, *(f"{scheme}, compiled" for scheme in COMPILED), "openmm-ml mechanical"],
    "CUDA": [*_EVERY_PLATFORM, *(f"{scheme}, CUDA graphs" for scheme in MODELS), "openmm-ml mechanical"],
}
CONFIGS = list(dict.fromkeys(PLATFORM_CONFIGS["CPU"] + PLATFORM_CONFIGS["CUDA"]))
WATER_PER_NM3 = 33.4  # TIP3P at 300 K, 1 bar
WARMUP_STEPS = 10
FAILURES = ("Failed runs are listed with their error. The electrostatic water model refuses boxes narrower than "
            "twice its 1.1 nm environment cutoff (the ~1k box). mechanical-ml-charges with 10 and 33 ML waters "
            "ends in NaN: the water model, trained on one molecule, predicts charges of up to +-4 e on water "
            "clusters (measured: -3.7 to +4.1 e for 10 waters), and MM hydrogens, which have no Lennard-Jones "
            "repulsion, collapse onto them.")
TIMESTEP_FS = 0.5


def water_box(atoms: int, path: Path) -> None:
    """Write a cubic TIP3P box of about ``atoms`` atoms to ``path`` (PDB)."""
    edge = (atoms / 3 / WATER_PER_NM3) ** (1 / 3)
    modeller = app.Modeller(app.Topology(), [])
    modeller.addSolvent(app.ForceField("amber14/tip3p.xml"), model="tip3p", boxSize=openmm.Vec3(edge, edge, edge))
    with open(path, "w") as handle:
        app.PDBFile.writeFile(modeller.topology, modeller.positions, handle)


def central_waters(pdb: app.PDBFile, count: int) -> list[int]:
    """Atom indices of the ``count`` waters whose oxygens lie nearest the box centre."""
    positions = np.asarray(pdb.positions.value_in_unit(u.nanometer))
    centre = np.diag(np.asarray(pdb.topology.getPeriodicBoxVectors().value_in_unit(u.nanometer))) / 2
    residues = list(pdb.topology.residues())
    oxygens = [next(a.index for a in r.atoms() if a.element.symbol == "O") for r in residues]
    nearest = np.argsort(np.linalg.norm(positions[oxygens] - centre, axis=1))[:count]
    return sorted(a.index for i in nearest for a in residues[i].atoms())


class _OpenMMMLStyle:
    """openmm-ml's way of running a model: an eager PythonForce callback on the ML particles only, the model on
    the torch device of ``species``."""

    def __init__(self, model, species):
        self.model, self.species = model, species

    def __call__(self, state: openmm.State):
        import torch

        positions = torch.tensor(state.getPositions(asNumpy=True).value_in_unit(u.nanometer),
                                 device=self.species.device, requires_grad=True)
        energy = self.model(self.species, positions)
        energy.backward()
        return float(energy.detach()), -positions.grad.cpu().numpy()


def openmmml_system(pdb: app.PDBFile, mm_system: openmm.System, ml_atoms: list[int]) -> openmm.System:
    """openmm-ml 1.8's mechanical embedding of the water model, as an openmm-ml potential family would add it
    (on the GPU when torch sees one, as openmm-ml's ``_getTorchDevice`` chooses)."""
    import torch
    from openmmml.mlpotential import MLPotential, MLPotentialImpl, MLPotentialImplFactory

    import mlmm

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = mlmm.load_potential(MODELS["mechanical"])[0].to(device)

    class Impl(MLPotentialImpl):
        def addForces(self, topology, system, atoms, forceGroup, **args):
            numbers = [a.element.atomic_number for a in topology.atoms()]
            species = torch.tensor([numbers[i] for i in atoms], device=device)
            force = openmm.PythonForce(_OpenMMMLStyle(model, species))
            force.setParticles(list(atoms))
            force.setForceGroup(forceGroup)
            system.addForce(force)

        def getMLLongRange(self):
            return False

    class Factory(MLPotentialImplFactory):
        def createImpl(self, name, **args):
            return Impl()

    MLPotential.registerImplFactory("bench-water", Factory())
    return MLPotential("bench-water").createMixedSystem(pdb.topology, mm_system, ml_atoms)


def build(config: str, pdb: app.PDBFile, ml_atoms: list[int]) -> openmm.System:
    """The System of one configuration, the ML atoms held fixed."""
    import mlmm
    from mlmm.embedding.surgery import frozen_copy

    mm_system = frozen_copy(app.ForceField("amber14/tip3p.xml").createSystem(
        pdb.topology, nonbondedMethod=app.PME, nonbondedCutoff=0.9 * u.nanometer, constraints=app.HBonds), ml_atoms)
    if config == "pure MM":
        return mm_system
    if config == "openmm-ml mechanical":
        return openmmml_system(pdb, mm_system, ml_atoms)
    scheme, transport = config.split(", ")
    return mlmm.create_mixed_system(pdb.topology, mm_system, ml_atoms, str(MODELS[scheme]), scheme,
                                    transport="python" if transport in ("PythonForce", "compiled") else "torch",
                                    compiled=transport == "compiled", cuda_graphs=transport == "CUDA graphs",
                                    **OPTIONS.get(scheme, {}))


def measure(task: dict) -> dict:
    """Worker: ms/step of one configuration (median over repeats)."""
    import torch

    torch.set_num_threads(1)
    pdb = app.PDBFile(task["pdb"])
    ml_atoms = central_waters(pdb, task["ml_waters"])
    system = build(task["config"], pdb, ml_atoms)
    integrator = openmm.LangevinMiddleIntegrator(300 * u.kelvin, 1 / u.picosecond, TIMESTEP_FS * u.femtosecond)
    integrator.setRandomNumberSeed(1)
    properties = {"Threads": str(task["threads"])} if task["platform"] == "CPU" else {"Precision": "mixed"}
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName(task["platform"]), properties)
    context.setPositions(pdb.positions)
    context.setVelocitiesToTemperature(300 * u.kelvin, 1)
    integrator.step(WARMUP_STEPS)
    times = []
    for _ in range(task["repeats"]):
        start = time.perf_counter()
        integrator.step(task["steps"])
        context.getState(getEnergy=True)  # waits for the steps to finish
        times.append(1e3 * (time.perf_counter() - start) / task["steps"])
    energy = context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(u.kilojoule_per_mole)
    result = {"ms_per_step": statistics.median(times), "repeats_ms": times, "final_energy": energy,
              "atoms": system.getNumParticles(), "ml_atoms": len(ml_atoms)}
    if task["platform"] == "CUDA":
        result["device"] = context.getPlatform().getPropertyValue(context, "DeviceName")
    return result


def run_worker(task: dict, timeout: float) -> dict:
    """One configuration in a fresh interpreter: its measurement, or ``{"error": ...}`` (last line of stderr)."""
    try:
        done = subprocess.run([sys.executable, __file__, "--worker", json.dumps(task)], capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"no result within {timeout:.0f} s"}
    if done.returncode != 0:
        return {"error": error_message(done.stderr) or f"exit status {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def error_message(stderr: str) -> str:
    """The last ``SomeError: message`` line of a traceback (C++ exceptions end in stack frames), else the last line."""
    lines = stderr.strip().splitlines()
    messages = [line.strip() for line in lines if re.match(r"\s*[\w.]*(Error|Exception): ", line)]
    return (messages or lines or [""])[-1]


def run_grid(args: argparse.Namespace, save: Callable[[list[dict]], None]) -> list[dict]:
    """Every (MM size, ML size, configuration), each measured in a fresh process; ``save(rows)`` after each."""
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for mm_atoms in args.mm_atoms:
            pdb_path = Path(scratch) / f"water-{mm_atoms}.pdb"
            water_box(mm_atoms, pdb_path)
            for ml_waters in args.ml_waters:
                for config in args.configs:
                    task = {"pdb": str(pdb_path), "ml_waters": ml_waters, "config": config, "steps": args.steps,
                            "repeats": args.repeats, "threads": args.threads, "platform": args.platform}
                    row = {"mm_atoms_target": mm_atoms, "ml_waters": ml_waters, "config": config,
                           **run_worker(task, args.worker_timeout)}
                    print(json.dumps(row), file=sys.stderr, flush=True)
                    rows.append(row)
                    save(rows)
    return rows


def table(rows: list[dict]) -> str:
    """Markdown: one line per grid point and configuration, ms/step, ns/day and the ratio to pure MM."""
    lines = ["| atoms | ML atoms | configuration | ms/step | ns/day | x pure MM |", "|---:|---:|---|---:|---:|---:|"]
    pure = {(r["mm_atoms_target"], r["ml_waters"]): r.get("ms_per_step") for r in rows if r["config"] == "pure MM"}
    for r in rows:
        if "error" in r:
            lines.append(f"| ~{r['mm_atoms_target']} | {3 * r['ml_waters']} | {r['config']} | failed: {r['error']} "
                         "| | |")
            continue
        ms, pure_ms = r["ms_per_step"], pure.get((r["mm_atoms_target"], r["ml_waters"]))
        ratio = f"{ms / pure_ms:.2f}" if pure_ms else ""
        ns_per_day = TIMESTEP_FS * 1e-6 * 86400e3 / ms
        lines.append(f"| {r['atoms']} | {r['ml_atoms']} | {r['config']} | {ms:.2f} | {ns_per_day:.2f} | {ratio} |")
    return "\n".join(lines)


def cuda_summary(ms: dict[tuple[int, int, str], float]) -> list[str]:
    """The GPU targets: mechanical with CUDA graphs at >= 50 % of pure-MM throughput; what the graphs gain."""
    lines = []
    for (box, waters, config), t in sorted(ms.items()):
        if config == "mechanical, CUDA graphs" and (box, waters, "pure MM") in ms:
            share = ms[(box, waters, "pure MM")] / t
            lines.append(f"- ~{box} atoms, {3 * waters} ML atoms: mechanical (CUDA graphs) throughput / pure MM = "
                         f"{share:.2f} (target >= 0.5: {'met' if share >= 0.5 else 'NOT met'})")
    for scheme in MODELS:
        gains = [f"{ms[(m, w, f'{scheme}, TorchForce')] / t:.2f} (~{m}, {3 * w})" for (m, w, c), t in sorted(ms.items())
                 if c == f"{scheme}, CUDA graphs" and (m, w, f"{scheme}, TorchForce") in ms]
        if gains:
            lines.append(f"- CUDA graphs speed-up of the {scheme} step (TorchForce without / with graphs; box, ML "
                         f"atoms): {', '.join(gains)}")
    return lines


def summary(rows: list[dict], platform: str) -> str:
    """The issue's targets read off the grid: cost ratios and how the added cost grows with the box."""
    ms = {(r["mm_atoms_target"], r["ml_waters"], r["config"]): r["ms_per_step"] for r in rows if "error" not in r}
    lines = cuda_summary(ms) if platform == "CUDA" else []
    pure, peer = "pure MM", "openmm-ml mechanical"
    for transport in ("TorchForce", "compiled", "CUDA graphs"):
        mech = f"mechanical, {transport}"
        if platform == "CPU" and (3000, 3, mech) in ms and (3000, 3, pure) in ms:
            ratio = ms[(3000, 3, mech)] / ms[(3000, 3, pure)]
            lines.append(f"- ~10-atom ML region (9 atoms) in ~3k atoms: mechanical ({transport}) / pure MM = "
                         f"{ratio:.2f} (target <= 1.15: {'met' if ratio <= 1.15 else 'NOT met'})")
        points = sorted({(m, w) for m, w, c in ms if c == mech and (m, w, peer) in ms})
        if points:
            faster = [(m, w) for m, w in points if ms[(m, w, mech)] < ms[(m, w, peer)]]
            ratios = ", ".join(f"{ms[(m, w, mech)] / ms[(m, w, peer)]:.2f}" for m, w in points)
            lines.append(f"- mlmm mechanical ({transport}) / openmm-ml mechanical, identical model: {ratios} "
                         f"(faster at {len(faster)} of {len(points)} grid points)")
    sizes = sorted({m for m, _, _ in ms})
    # pure MM costs the same whichever few waters are held fixed: the median over a box's ML sizes
    pure_runs = defaultdict(list)
    for (box, _, config), t in ms.items():
        if config == pure:
            pure_runs[box].append(t)
    box_pure = {box: statistics.median(times) for box, times in pure_runs.items()}
    lines.append("- growth of the cost added to pure MM (t - t_MM, t_MM the median of the box's pure-MM runs) from the "
                 "smallest to the largest box in which the configuration ran, per ML region size (linear scaling "
                 "would be the atom-count factor):")
    for config in dict.fromkeys(c for _, _, c in ms if c != pure):
        growth = []
        for waters in sorted({w for _, w, c in ms if c == config}):
            added = [(m, ms[(m, waters, config)] - box_pure[m]) for m in sizes
                     if (m, waters, config) in ms and m in box_pure]
            if len(added) >= 2:
                (m0, a0), (m1, a1) = added[0], added[-1]
                growth.append(f"{3 * waters} ML atoms {a0:.1f} -> {a1:.1f} ms "
                              f"(x{a1 / a0:.2f} for x{m1 / m0:.0f} atoms)")
        if growth:
            lines.append(f"  - {config}: " + "; ".join(growth))
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    """ms/step against the total atom count, one panel per ML region size, one line per configuration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({r["ml_waters"] for r in rows})
    figure, axes = plt.subplots(1, len(sizes), figsize=(4.5 * len(sizes), 4.6), squeeze=False, sharey=True)
    configs = list(dict.fromkeys(r["config"] for r in rows))
    colours = {config: plt.cm.tab10(i % 10) for i, config in enumerate(configs)}  # the same colour in every panel
    for axis, size in zip(axes[0], sizes):
        for config in configs:
            points = sorted((r["atoms"], r["ms_per_step"]) for r in rows
                            if r["ml_waters"] == size and r["config"] == config and "error" not in r)
            if points:
                axis.plot(*zip(*points), marker="o", color=colours[config], label=config)
        axis.set(xscale="log", yscale="log", xlabel="atoms", title=f"ML region: {3 * size} atoms")
    axes[0][0].set_ylabel("ms per MD step")
    handles = [plt.Line2D([], [], color=colours[c], marker="o", label=c) for c in configs]
    figure.legend(handles=handles, loc="lower center", ncol=5, fontsize=8)
    figure.tight_layout(rect=(0, 0.12, 1, 1))
    figure.savefig(path, dpi=120)


def header(result: dict) -> str:
    """Title and settings of the Markdown report: platform, device, steps, machine, versions."""
    if result["platform"] == "CPU":
        where = f"OpenMM CPU platform, {result['threads']} threads, torch 1 thread"
    else:
        devices = sorted({r["device"] for r in result["rows"] if "device" in r})
        where = f"OpenMM {result['platform']} platform (mixed precision) on {', '.join(devices) or 'an unnamed GPU'}"
    unfinished = "" if result.get("complete", True) else " Interrupted: the grid was not completed."
    return (f"# ms per MD step: MM environment x ML region size (bench_scaling.py)\n\n{where}; "
            f"{result['steps']} steps x {result['repeats']} repeats (median), {TIMESTEP_FS} fs; one process per "
            f"configuration; ML atoms held fixed. {result['machine']['cpu_model']}, "
            f"{result['machine']['cpus_available']} CPUs; {json.dumps(result['versions'])}; "
            f"{result['runtime_s'] / 60:.0f} min.{unfinished}\n\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mm-atoms", type=int, nargs="+", default=[1000, 3000, 10000, 30000])
    parser.add_argument("--ml-waters", type=int, nargs="+", default=[1, 3, 10, 33])
    parser.add_argument("--configs", nargs="+", choices=CONFIGS, metavar="CONFIG",
                        help="default: the platform's own list (PLATFORM_CONFIGS)")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="OpenMM CPU threads (CPU platform)")
    parser.add_argument("--platform", choices=list(PLATFORM_CONFIGS), default="CPU")
    parser.add_argument("--worker-timeout", type=float, default=900.0,
                        help="seconds after which a configuration is recorded as failed")
    parser.add_argument("--output-dir", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite the table and plot from the existing JSON of --platform")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(json.loads(args.worker))))
        return
    from timing import machine, versions

    args.configs = args.configs or PLATFORM_CONFIGS[args.platform]
    if args.platform == "CPU" and any(config.endswith("CUDA graphs") for config in args.configs):
        parser.error("CUDA graphs configurations need --platform CUDA")
    stem = "scaling" if args.platform == "CPU" else f"scaling-{args.platform.lower()}"
    args.output_dir.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        result = json.loads((args.output_dir / f"{stem}.json").read_text())
    else:
        start = time.perf_counter()
        result = {"benchmark": "scaling", "rows": [], "steps": args.steps, "repeats": args.repeats,
                  "threads": args.threads, "timestep_fs": TIMESTEP_FS, "platform": args.platform,
                  "machine": machine(), "versions": versions(), "complete": False}

        def save(rows: list[dict]) -> None:
            result.update(rows=rows, runtime_s=time.perf_counter() - start)
            (args.output_dir / f"{stem}.json").write_text(json.dumps(result, indent=1))

        run_grid(args, save)
        result["complete"] = True
        save(result["rows"])
    (args.output_dir / f"{stem}.md").write_text(header(result) + "## Targets\n\n"
                                                + summary(result["rows"], result["platform"]) + "\n\n"
                                                + "## All measurements\n\n" + FAILURES + "\n\n"
                                                + table(result["rows"]) + "\n")
    plot(result["rows"], args.output_dir / f"{stem}.png")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
