"""GFN2-xTB QM/MM reference data for one water (the ML region) in TIP3P: solvent snapshots from
MM MD, labelled with the MM point charges and, for the same geometries, in the gas phase.

Sampling: water-tip3p.pdb (1 + 879 waters, 3 nm box), amber14 TIP3P with PME (0.9 nm); the
solvent waters rigid, the solute water flexible (TIP3P's harmonic O-H bond and H-O-H angle),
Langevin at 300 K, 0.5 fs, friction 1/ps; 20 ps of equilibration, then a snapshot every
0.1 ps. Each snapshot holds the solute and every whole TIP3P water with an atom within
CUTOFF of it, imaged next to the solute (mlmm.data.snapshots); each water's charges are
multiplied by its weight in the electrostatic embedding's environment (1 with its oxygen
within SWITCH_DISTANCE of a solute atom, 0 beyond EMBEDDING_CUTOFF, C2 in between;
mlmm.embedding.environment), and waters of weight 0 are dropped.
Labels: GFN2-xTB with those charges as external point charges (data/water-tip3p-gfn2.h5)
and without them (data/water-tip3p-gfn2-vacuum.h5); E_int = E(QM/MM) - E(QM) per frame.
Run from the repository root (resumes an interrupted labelling; about 10 min on 2 cores):
    .venv/bin/python systems/water/embedding/make_dataset.py

With --held-out: N_HELD_OUT snapshots of a further MM MD run of the same recipe (seed HELD_OUT_SEED; the
training snapshots of every water model came from seeds 3 and 4), labelled the same way, for test errors
on frames no training run has seen (data/water-held-out-gfn2.h5 and data/water-held-out-gfn2-vacuum.h5;
the unlabelled snapshots are kept in data/water-held-out-snapshots.h5 so that labelling resumes; about
10 min of MD and 5 min of labelling on 2 cores).
"""

import argparse
from pathlib import Path

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as u

from mlmm.data.calculators import XTBCalculator
from mlmm.data.dataset import Dataset
from mlmm.data.recipes import label_in_and_out_of_environment, label_snapshot_set
from mlmm.data.snapshots import solvent_snapshots, weighted_environment

HERE = Path(__file__).parent
SEED = 3
CUTOFF = 1.2  # nm: whole waters with an atom this close to the solute are collected
SWITCH_DISTANCE, EMBEDDING_CUTOFF = 0.9, 1.1  # nm: the switching range of the embedding environment
N_SNAPSHOTS = 500
TIMESTEP = 0.0005  # ps
INTERVAL = 200  # steps between snapshots
EQUILIBRATION = 40000  # steps
HELD_OUT_SEED = 5
N_HELD_OUT = 300
TIP3P_GEOMETRY = {("O", "H1"): 0.09572, ("O", "H2"): 0.09572, ("H1", "H2"): 0.15139}  # nm, rigid TIP3P


def mm_simulation(seed: int = SEED) -> app.Simulation:
    """TIP3P box with the first water (the solute) flexible and all others rigid, equilibrated."""
    pdb = app.PDBFile(str(HERE.parent / "water-tip3p.pdb"))
    system = app.ForceField("amber14/tip3p.xml").createSystem(
        pdb.topology, nonbondedMethod=app.PME, nonbondedCutoff=0.9 * u.nanometer, constraints=None,
        rigidWater=False)
    for residue in list(pdb.topology.residues())[1:]:
        atoms = {atom.name: atom.index for atom in residue.atoms()}
        for (a, b), length in TIP3P_GEOMETRY.items():
            system.addConstraint(atoms[a], atoms[b], length * u.nanometer)
    integrator = openmm.LangevinMiddleIntegrator(300 * u.kelvin, 1 / u.picosecond, TIMESTEP * u.picosecond)
    integrator.setRandomNumberSeed(seed)
    simulation = app.Simulation(pdb.topology, system, integrator, openmm.Platform.getPlatformByName("CPU"),
                                {"Threads": "2"})
    simulation.context.setPositions(pdb.positions)
    simulation.context.applyConstraints(1e-8)
    simulation.minimizeEnergy(maxIterations=500)
    simulation.context.setVelocitiesToTemperature(300 * u.kelvin, seed)
    simulation.step(EQUILIBRATION)
    return simulation


def snapshot_frames(seed: int = SEED, n_snapshots: int = N_SNAPSHOTS) -> Dataset:
    """Unlabelled frames: ``n_snapshots`` solvent snapshots of the MM MD started with ``seed``."""
    snapshots = solvent_snapshots(mm_simulation(seed), "resid 0", CUTOFF, n_snapshots, INTERVAL)
    mm_positions, mm_charges, mm_mask = weighted_environment(snapshots, SWITCH_DISTANCE, EMBEDDING_CUTOFF)
    # float32 precision (1e-7 nm, 1e-8 e) for the environment: the labels see exactly the stored values,
    # and the compressed file is half the size
    mm_positions, mm_charges = (a.astype(np.float32).astype(np.float64) for a in (mm_positions, mm_charges))
    provenance = {"description": "one water (ML) in TIP3P, solvent snapshots with the whole TIP3P waters "
                                 "as point charges, each water's charges times its embedding weight (oxygen "
                                 f"within {SWITCH_DISTANCE} nm of a solute atom: 1, beyond {EMBEDDING_CUTOFF} nm: "
                                 "0, C2 switch in between)",
                  "sampling": "MM MD: amber14 TIP3P, PME 0.9 nm, solute water flexible, 300 K Langevin "
                              f"(0.5 fs, 1/ps), {EQUILIBRATION * TIMESTEP:g} ps equilibration, a snapshot every "
                              f"{INTERVAL * TIMESTEP:g} ps",
                  "temperature_K": 300.0, "seed": seed, "embedding_switch_distance_nm": SWITCH_DISTANCE,
                  "embedding_cutoff_nm": EMBEDDING_CUTOFF,
                  "limits": "solute geometries of flexible TIP3P at 300 K (not of GFN2-xTB); "
                            "no MM forces (xtb-python does not return them)"}
    return Dataset(species=snapshots["species"], positions=snapshots["positions"], mm_positions=mm_positions,
                   mm_charges=mm_charges, mm_mask=mm_mask, frame_source=["snapshots-300K"] * n_snapshots,
                   provenance=provenance)


def main():
    label_in_and_out_of_environment(snapshot_frames(), XTBCalculator(), HERE / "data" / "water-tip3p-gfn2.h5",
                                    HERE / "data" / "water-tip3p-gfn2-vacuum.h5")


def held_out():
    """The held-out snapshots (module docstring), labelled in and out of the TIP3P charges."""
    label_snapshot_set(lambda: snapshot_frames(HELD_OUT_SEED, N_HELD_OUT), XTBCalculator(), HERE / "data", "water")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--held-out", action="store_true",
                        help=f"{N_HELD_OUT} snapshots of a further MM MD run (seed {HELD_OUT_SEED}), for test errors")
    (held_out if parser.parse_args().held_out else main)()
