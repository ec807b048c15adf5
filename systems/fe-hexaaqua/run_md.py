"""ML/MM MD of Fe3+ in TIP3P with the buffer embedding, for the power spectrum of the Fe-O motions.

The ion is the ML region; its buffer is every water whose oxygen lies within 0.57 nm (weight 1
inside 0.47 nm: the first and second shells), computed by the network of a model folder's model.pt (--model) as
E_NN(Fe + B) - E_NN(B); the rest is TIP3P (rigid), with the ion's network charge (+3) for its
Coulomb interaction with the outer waters. Protocol: fe-tip3p.pdb, 5 ps Langevin at 300 K
(1/ps, 2 fs), then NVE (velocity Verlet, 2 fs; the waters are rigid) for --ps picoseconds, saving
positions and velocities of the ion and its first-shell waters at the start of the NVE run every
4 fs (trajectory.npz), and every 0.1 ps the embedding's report (embedding.csv: buffer waters,
energy parts), the total energy and the number of first-shell waters (oxygen within 0.30 nm;
run_md.json). Run from the repository root:
    .venv/bin/python systems/fe-hexaaqua/run_md.py            # 100 ps, about 30 min on 1 core
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

HERE = Path(__file__).parent
import sys  # noqa: E402

sys.path.insert(0, str(HERE))
from build import (BOX_NM, FIRST_SHELL_NM, PDB, iron_and_oxygens, mm_system, nearest_oxygens,  # noqa: E402
                   oxygen_distances)
from make_dataset import BUFFER_CUTOFF, BUFFER_SWITCH_DISTANCE  # noqa: E402

TIMESTEP_PS = 0.002
SAVE_EVERY, REPORT_EVERY = 2, 50  # steps
EQUILIBRATION_PS = 5.0
SEED = 21


def first_shell_size(positions: np.ndarray, iron: int, oxygens) -> int:
    """Number of water oxygens within FIRST_SHELL_NM of the ion (minimum image, cubic box)."""
    return int((oxygen_distances(positions, BOX_NM, iron, oxygens) < FIRST_SHELL_NM).sum())


BUFFER = {"embedding": "buffer", "buffer_cutoff": BUFFER_CUTOFF, "buffer_switch_distance": BUFFER_SWITCH_DISTANCE}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ps", type=float, default=100.0, help="NVE length in ps (default 100)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model", default="model", help="model folder in systems/fe-hexaaqua (default model)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pdb = app.PDBFile(str(PDB))
    iron, oxygens = iron_and_oxygens(pdb.topology)
    model = str(HERE / args.model / "model.pt")
    force_field = mm_system(pdb.topology)
    system = mlmm.create_mixed_system(pdb.topology, force_field, [iron], model, **BUFFER)
    module = mlmm.plan_embedding(pdb.topology, force_field, [iron], model, **BUFFER).module
    platform = openmm.Platform.getPlatformByName("CPU")
    langevin = openmm.LangevinMiddleIntegrator(300 * u.kelvin, 1 / u.picosecond, TIMESTEP_PS * u.picosecond)
    langevin.setRandomNumberSeed(SEED)
    simulation = app.Simulation(pdb.topology, system, langevin, platform, {"Threads": str(args.threads)})
    simulation.context.setPositions(pdb.positions)
    simulation.context.setVelocitiesToTemperature(300 * u.kelvin, SEED)
    simulation.step(int(round(EQUILIBRATION_PS / TIMESTEP_PS)))
    state = simulation.context.getState(getPositions=True, getVelocities=True)
    x = state.getPositions(asNumpy=True).value_in_unit(u.nanometer)
    shell = nearest_oxygens(x, BOX_NM, iron, oxygens)[:first_shell_size(x, iron, oxygens)]
    atoms = [iron] + [int(o) + k for o in shell for k in range(3)]  # Fe, then O, H, H of each water
    verlet = openmm.VerletIntegrator(TIMESTEP_PS * u.picosecond)
    nve = app.Simulation(pdb.topology, system, verlet, platform, {"Threads": str(args.threads)})
    nve.context.setPositions(state.getPositions())
    nve.context.setVelocities(state.getVelocities())
    nve.reporters.append(mlmm.EmbeddingReporter(HERE / "embedding.csv", REPORT_EVERY, module))
    n_steps = int(round(args.ps / TIMESTEP_PS))
    positions, velocities, energies, coordination = [], [], [], []
    clock = time.perf_counter()
    for step in range(0, n_steps, SAVE_EVERY):
        if step:
            nve.step(SAVE_EVERY)
        state = nve.context.getState(getPositions=True, getVelocities=True, getEnergy=step % REPORT_EVERY == 0)
        x = state.getPositions(asNumpy=True).value_in_unit(u.nanometer)
        positions.append(x[atoms])
        velocities.append(state.getVelocities(asNumpy=True).value_in_unit(u.nanometer / u.picosecond)[atoms])
        if step % REPORT_EVERY == 0:
            energies.append((step * TIMESTEP_PS, (state.getKineticEnergy() + state.getPotentialEnergy())
                             .value_in_unit(u.kilojoule_per_mole)))
            coordination.append(first_shell_size(x, iron, oxygens))
    seconds = time.perf_counter() - clock
    masses = [system.getParticleMass(i).value_in_unit(u.dalton) for i in atoms]
    np.savez_compressed(HERE / "trajectory.npz", positions=np.array(positions, dtype=np.float32),
                        velocities=np.array(velocities, dtype=np.float32), masses=np.array(masses),
                        atoms=np.array(atoms), timestep_ps=TIMESTEP_PS * SAVE_EVERY, box_nm=BOX_NM)
    times, totals = np.array(energies).T
    slope = np.polyfit(times, totals, 1)[0]
    coordination = np.array(coordination)
    summary = {"model": args.model, "picoseconds": args.ps, "timestep_fs": TIMESTEP_PS * 1000,
               "ms_per_step": 1000 * seconds / n_steps,
               "drift_kJ_per_mol_per_ps": float(slope), "degrees_of_freedom": degrees_of_freedom(system),
               "first_shell_oxygens": [int(o) for o in shell],
               "coordination_number": {"mean": float(coordination.mean()), "min": int(coordination.min()),
                                       "max": int(coordination.max()),
                                       "fraction_six": float(np.mean(coordination == 6)),
                                       "first_shell_cutoff_nm": FIRST_SHELL_NM,
                                       "sampled_every_ps": REPORT_EVERY * TIMESTEP_PS}}
    (HERE / "run_md.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
