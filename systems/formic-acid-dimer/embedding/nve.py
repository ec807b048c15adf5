"""Energy conservation of each embedding scheme: NVE MD of the formic acid dimer in TIP3P.

Every run starts from the same structure (formic-acid-dimer-tip3p.pdb, 3 nm box, the solvent
minimised around the dimer held at its PDB geometry,
PME 0.9 nm, rigid TIP3P; the dimer flexible in the ML/MM schemes, and fixed in place in pure MM
because formic-acid.xml has nonbonded parameters only), draws
velocities at 300 K, equilibrates with Langevin dynamics (--equilibration, default EQUILIBRATION_PS:
the minimised start gives half its kinetic energy to the potential, a deficit that the thermostat
(friction 1/ps) closes as exp(-t/ps): after 1 ps the runs were at 242-249 K, after 5 ps at 289-296 K), then runs
velocity Verlet (NVE) for --ps picoseconds at 0.5 fs. Reported per scheme: the drift of the
total energy (slope of a straight-line fit, kJ/mol/ps, and per degree of freedom per ns), its
RMS fluctuation about the fit, the standard error of the drift from the spread of the slopes of
four consecutive blocks, and how many waters entered or left the embedding environment (oxygen
within 1.1 nm of a dimer atom; for the buffer scheme the buffer, 0.45 nm; checked every 10
steps). Results go to nve.json as each scheme finishes (several runs with different --schemes
may share it); a rerun skips the schemes already there. An unfinished run saves its state and
series every --save-every steps (default 1 ps) to OUTPUT-SCHEME.partial.json beside the output,
and a rerun with the same settings resumes from there (XML keeps positions and velocities
exactly, but OpenMM's CPU PME forces vary in the last digits between evaluations, so the
resumed run was 0.0016 kJ/mol from the uninterrupted one 100 steps later in a test; see the
README on seeds). Run from the repository root:
    .venv/bin/python systems/formic-acid-dimer/embedding/nve.py [--ps 20] [--schemes mm electrostatic]
At 300 K (nve-300K.json, and the buffer scheme with the network for MD in
nve-300K-buffer-anchored-contacts.json):
    .venv/bin/python systems/formic-acid-dimer/embedding/nve.py --schemes mm electrostatic \\
        --output systems/formic-acid-dimer/embedding/nve-300K.json
    .venv/bin/python systems/formic-acid-dimer/embedding/nve.py --schemes buffer \\
        --buffer-model model-anchored-contacts \\
        --output systems/formic-acid-dimer/embedding/nve-300K-buffer-anchored-contacts.json
and with the most accurate buffer model, the weighted mean of a PhysNet and a PaiNN
(nve-300K-buffer-mean-anchored-extra.json):
    .venv/bin/python systems/formic-acid-dimer/embedding/nve.py --schemes buffer \\
        --buffer-model mean-anchored-extra --threads 1 \\
        --output systems/formic-acid-dimer/embedding/nve-300K-buffer-mean-anchored-extra.json
    .venv/bin/python systems/formic-acid-dimer/embedding/nve.py --schemes buffer \\
        --buffer-model mean-anchored-extra --seed 8 \\
        --output systems/formic-acid-dimer/embedding/nve-300K-buffer-mean-anchored-extra-seed8.json
    .venv/bin/python systems/formic-acid-dimer/embedding/nve.py --schemes buffer \\
        --buffer-model mean-anchored-extra --seed 9 \\
        --output systems/formic-acid-dimer/embedding/nve-300K-buffer-mean-anchored-extra-seed9.json
and with the MD network's size trained on the extra snapshots
(nve-300K-buffer-anchored-contacts-extra.json):
    .venv/bin/python systems/formic-acid-dimer/embedding/nve.py --schemes buffer \\
        --buffer-model model-anchored-contacts-extra --threads 1 \\
        --output systems/formic-acid-dimer/embedding/nve-300K-buffer-anchored-contacts-extra.json
The files below were written with 1 ps of equilibration (add --equilibration 1 to repeat them).
The buffer scheme with the second-stage buffer network (nve-buffer-stage2.json):
    .venv/bin/python systems/formic-acid-dimer/embedding/nve.py --schemes buffer --buffer-model model-stage2 \\
        --output systems/formic-acid-dimer/embedding/nve-buffer-stage2.json
and with the in-field third stage (nve-buffer-field.json):
    .venv/bin/python systems/formic-acid-dimer/embedding/nve.py --schemes buffer --buffer-model model-field \\
        --threads 1 --output systems/formic-acid-dimer/embedding/nve-buffer-field.json
and with the charge-difference fourth stage (nve-buffer-field-dq.json):
    .venv/bin/python systems/formic-acid-dimer/embedding/nve.py --schemes buffer --buffer-model model-field-dq \\
        --output systems/formic-acid-dimer/embedding/nve-buffer-field-dq.json
and with the vacuum-anchored network trained with contact frames, seeds 7-10
(nve-buffer-anchored-contacts.json, nve-buffer-anchored-contacts-seed8.json, ...):
    .venv/bin/python systems/formic-acid-dimer/embedding/nve.py --schemes buffer \\
        --buffer-model model-anchored-contacts --threads 1 [--seed 8] \\
        --output systems/formic-acid-dimer/embedding/nve-buffer-anchored-contacts[-seed8].json
and with its two later stages, seeds 7 and 8 (nve-buffer-anchored-contacts2-seed7.json, ...,
nve-buffer-anchored-field-energy-seed8.json; seed 7 of the field-energy network ended in NaN):
    .venv/bin/python systems/formic-acid-dimer/embedding/nve.py --schemes buffer \\
        --buffer-model model-anchored-field-energy --threads 1 --seed 8 \\
        --output systems/formic-acid-dimer/embedding/nve-buffer-anchored-field-energy-seed8.json
A repeat with other velocities (nve-seed8.json):
    .venv/bin/python systems/formic-acid-dimer/embedding/nve.py --schemes mm --seed 8 \\
        --output systems/formic-acid-dimer/embedding/nve-seed8.json
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as u
import torch

import mlmm
from mlmm.bridge.simulation import degrees_of_freedom
from mlmm.embedding import surgery

HERE = Path(__file__).parent
SYSTEM = HERE.parent
MODELS = {"mechanical": SYSTEM / "model" / "model.pt", "mechanical-ml-charges": SYSTEM / "model" / "model.pt",
          "electrostatic": HERE / "model" / "model.pt"}  # buffer: SYSTEM / "buffer" / --buffer-model / "model.pt"
OPTIONS = {"buffer": {"buffer_cutoff": 0.45, "buffer_switch_distance": 0.35}}  # as the buffer network was trained
SCHEMES = ["mm", *MODELS, "buffer"]
TIMESTEP_PS = 0.0005
EQUILIBRATION_PS = 5.0
CHECK_EVERY = 10  # steps between environment checks
REPORT_EVERY = 20  # steps between total-energy samples
ENVIRONMENT_CUTOFF = 1.1  # nm, oxygen to the nearest dimer atom: the Coulomb environment of the schemes
BUFFER_CUTOFF = OPTIONS["buffer"]["buffer_cutoff"]  # nm: for the buffer scheme, entering or leaving the buffer counts
BLOCKS = 4  # the drift's standard error: spread of the slopes fitted to BLOCKS consecutive blocks
SEED = 7
SAVE_EVERY = 2000  # steps (1 ps) between saves of an unfinished run


def systems() -> tuple[app.PDBFile, openmm.System, list[int]]:
    pdb = app.PDBFile(str(SYSTEM / "formic-acid-dimer-tip3p.pdb"))
    forcefield = app.ForceField(str(SYSTEM / "formic-acid.xml"), "amber14/tip3p.xml")
    mm_system = forcefield.createSystem(pdb.topology, nonbondedMethod=app.PME, nonbondedCutoff=0.9 * u.nanometer,
                                        constraints=app.HBonds)
    dimer = [a.index for a in pdb.topology.atoms() if a.residue.name == "FMA"]
    return pdb, mm_system, dimer


def scheme_system(scheme: str, pdb: app.PDBFile, mm_system: openmm.System, dimer: list[int],
                  buffer_model: str = "model") -> openmm.System:
    if scheme == "mm":  # formic-acid.xml has no bonded terms: the dimer is held fixed in the solvent
        return surgery.frozen_copy(mm_system, dimer)
    model = SYSTEM / "buffer" / buffer_model / "model.pt" if scheme == "buffer" else MODELS[scheme]
    return mlmm.create_mixed_system(pdb.topology, mm_system, dimer, str(model), embedding=scheme,
                                     **OPTIONS.get(scheme, {}))


def minimised_positions(pdb: app.PDBFile, mm_system: openmm.System, dimer: list[int]) -> np.ndarray:
    """The solvent minimised around the dimer held at its PDB geometry (massless atoms do not move;
    formic-acid.xml has no bonded terms, so the dimer cannot be minimised with the force field)."""
    context = openmm.Context(surgery.frozen_copy(mm_system, dimer), openmm.VerletIntegrator(0.001),
                             openmm.Platform.getPlatformByName("CPU"), {"Threads": "1"})
    context.setPositions(pdb.positions)
    openmm.LocalEnergyMinimizer.minimize(context, 10.0, 500)
    return context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(u.nanometer)


def environment(positions: np.ndarray, box: np.ndarray, dimer: list[int], oxygens: np.ndarray, cutoff: float) -> set:
    """Indices of the water oxygens within ``cutoff`` (nm) of any dimer atom (minimum image, cubic box)."""
    delta = positions[oxygens][None, :, :] - positions[dimer][:, None, :]
    lengths = np.diag(box)
    delta -= lengths * np.round(delta / lengths)
    return set(oxygens[(np.linalg.norm(delta, axis=-1) < cutoff).any(0)].tolist())


def partial_path(output: Path, scheme: str) -> Path:
    """Where an unfinished run of ``scheme`` for ``output`` keeps its state and series."""
    return output.with_name(f"{output.stem}-{scheme}.partial.json")


def resumable(path: Path, settings: dict) -> dict | None:
    """The saved progress at ``path`` if it was made with ``settings``; None if there is none."""
    if not path.exists():
        return None
    saved = json.loads(path.read_text())
    if saved["settings"] != settings:
        raise ValueError(f"{path} holds an unfinished run with other settings ({saved['settings']}); "
                         "delete it or rerun with those")
    return saved


def save_progress(path: Path, progress: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(progress))
    tmp.replace(path)


def equilibrated_state(system: openmm.System, pdb: app.PDBFile, mm_system: openmm.System, dimer: list[int],
                       platform: openmm.Platform, threads: int, seed: int, equilibration: float) -> openmm.State:
    """Positions and velocities after minimising the solvent and ``equilibration`` ps of Langevin dynamics."""
    langevin = openmm.LangevinMiddleIntegrator(300 * u.kelvin, 1 / u.picosecond, TIMESTEP_PS * u.picosecond)
    langevin.setRandomNumberSeed(seed)
    context = openmm.Context(system, langevin, platform, {"Threads": str(threads)})
    context.setPositions(minimised_positions(pdb, mm_system, dimer))
    context.setVelocitiesToTemperature(300 * u.kelvin, seed)
    langevin.step(int(round(equilibration / TIMESTEP_PS)))
    return context.getState(getPositions=True, getVelocities=True)


def run(scheme: str, picoseconds: float, threads: int, seed: int, buffer_model: str = "model",
        equilibration: float = EQUILIBRATION_PS, progress_path: Path | None = None,
        save_every: int = SAVE_EVERY) -> dict:
    """NVE of one scheme; with ``progress_path``, saved there every ``save_every`` steps and resumed from it."""
    pdb, mm_system, dimer = systems()
    system = scheme_system(scheme, pdb, mm_system, dimer, buffer_model)
    oxygens = np.array([a.index for a in pdb.topology.atoms() if a.residue.name == "HOH" and a.element.symbol == "O"])
    platform = openmm.Platform.getPlatformByName("CPU")
    settings = {"scheme": scheme, "picoseconds": picoseconds, "seed": seed, "buffer_model": buffer_model,
                "equilibration_ps": equilibration}
    saved = resumable(progress_path, settings) if progress_path else None
    if saved:
        state = openmm.XmlSerializer.deserialize(saved["state"])
    else:
        state = equilibrated_state(system, pdb, mm_system, dimer, platform, threads, seed, equilibration)
        saved = {"settings": settings, "step": -CHECK_EVERY, "times": [], "energies": [], "temperatures": [],
                 "inside": None, "entered": 0, "left": 0, "seconds": 0.0}
    verlet = openmm.VerletIntegrator(TIMESTEP_PS * u.picosecond)
    nve = openmm.Context(system, verlet, platform, {"Threads": str(threads)})
    nve.setPositions(state.getPositions())
    nve.setVelocities(state.getVelocities())
    box = np.array(state.getPeriodicBoxVectors().value_in_unit(u.nanometer))
    n_steps = int(round(picoseconds / TIMESTEP_PS))
    times, energies, temperatures = saved["times"], saved["energies"], saved["temperatures"]
    dof = degrees_of_freedom(system)
    inside = None if saved["inside"] is None else set(saved["inside"])
    entered, left = saved["entered"], saved["left"]
    cutoff = BUFFER_CUTOFF if scheme == "buffer" else ENVIRONMENT_CUTOFF
    clock = time.perf_counter()
    for step in range(saved["step"] + CHECK_EVERY, n_steps + 1, CHECK_EVERY):
        if step:
            verlet.step(CHECK_EVERY)
        state = nve.getState(getPositions=True, getEnergy=True)
        now = environment(state.getPositions(asNumpy=True).value_in_unit(u.nanometer), box, dimer, oxygens, cutoff)
        if inside is not None:
            entered, left = entered + len(now - inside), left + len(inside - now)
        inside = now
        if step % REPORT_EVERY == 0:
            kinetic = state.getKineticEnergy().value_in_unit(u.kilojoule_per_mole)
            times.append(step * TIMESTEP_PS)
            energies.append(kinetic + state.getPotentialEnergy().value_in_unit(u.kilojoule_per_mole))
            temperatures.append(2 * kinetic / (dof * 0.0083144626))
        if progress_path and step and step % save_every == 0 and step < n_steps:
            save_progress(progress_path, {
                "settings": settings, "step": step, "times": times, "energies": energies,
                "temperatures": temperatures, "inside": sorted(inside), "entered": entered, "left": left,
                "seconds": saved["seconds"] + time.perf_counter() - clock,
                "state": openmm.XmlSerializer.serialize(nve.getState(getPositions=True, getVelocities=True))})
    seconds = saved["seconds"] + time.perf_counter() - clock
    times, energies = np.array(times), np.array(energies)
    slope, intercept = np.polyfit(times, energies, 1)
    block_slopes = [np.polyfit(t, e, 1)[0]
                    for t, e in zip(np.array_split(times, BLOCKS), np.array_split(energies, BLOCKS))]
    return {"picoseconds": picoseconds, "timestep_fs": TIMESTEP_PS * 1000, "seed": seed,
            "equilibration_ps": equilibration, "degrees_of_freedom": dof,
            "drift_kJ_per_mol_per_ps": float(slope),
            "drift_block_standard_error": float(np.std(block_slopes, ddof=1) / np.sqrt(BLOCKS)),
            "drift_kJ_per_mol_per_ns_per_dof": float(slope * 1000 / dof),
            "fluctuation_rms_kJ_per_mol": float(np.std(energies - (slope * times + intercept))),
            "mean_temperature_K": float(np.mean(temperatures)), "environment_cutoff_nm": cutoff,
            "waters_entered": entered, "waters_left": left,
            "ms_per_step": 1000 * seconds / max(n_steps, 1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ps", type=float, default=20.0, help="NVE length in ps (default 20)")
    parser.add_argument("--schemes", nargs="+", default=SCHEMES, choices=SCHEMES)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=SEED, help="velocities and Langevin noise (default 7)")
    parser.add_argument("--output", type=Path, default=HERE / "nve.json")
    parser.add_argument("--buffer-model", default="model", help="buffer network directory in ../buffer")
    parser.add_argument("--equilibration", type=float, default=EQUILIBRATION_PS,
                        help=f"Langevin ps before NVE (default {EQUILIBRATION_PS:g}; results without this key: 1)")
    parser.add_argument("--save-every", type=int, default=SAVE_EVERY,
                        help=f"NVE steps between saves of an unfinished run (default {SAVE_EVERY})")
    args = parser.parse_args()
    if args.save_every <= 0 or args.save_every % CHECK_EVERY:
        parser.error(f"--save-every {args.save_every}: give a positive multiple of {CHECK_EVERY} steps")
    torch.set_num_threads(args.threads)
    for scheme in args.schemes:
        done = json.loads(args.output.read_text()) if args.output.exists() else {}
        if scheme in done and (done[scheme]["picoseconds"], done[scheme].get("equilibration_ps", 1.0)) == (
                args.ps, args.equilibration):
            continue
        progress = partial_path(args.output, scheme)
        result = run(scheme, args.ps, args.threads, args.seed, args.buffer_model, args.equilibration, progress,
                     args.save_every)
        results = json.loads(args.output.read_text()) if args.output.exists() else {}  # another run may have added
        results[scheme] = result
        args.output.write_text(json.dumps(results, indent=2))
        progress.unlink(missing_ok=True)
        print(scheme, json.dumps(result))
    results = json.loads(args.output.read_text()) if args.output.exists() else {}
    mm = results.get("mm", {}).get("drift_kJ_per_mol_per_ps")
    for scheme, result in results.items():
        ratio = "" if not mm else f", |drift| / |pure MM drift| = {abs(result['drift_kJ_per_mol_per_ps'] / mm):.2f}"
        print(f"{scheme}: drift {result['drift_kJ_per_mol_per_ps']:+.3f} kJ/mol/ps{ratio}, "
              f"{result['waters_entered']} waters entered and {result['waters_left']} left the environment")


if __name__ == "__main__":
    main()
