"""GFN2-xTB QM/MM reference data for the formic acid dimer in TIP3P, across the proton transfer.

Solvent: MM MD of formic-acid-dimer-tip3p.pdb (860 rigid TIP3P waters, 3 nm box, PME 0.9 nm,
300 K Langevin, 2 fs, friction 1/ps) around the dimer held fixed at its PDB geometry
(formic-acid.xml has nonbonded terms only), 10 ps of equilibration, then a snapshot every 0.1 ps.
Solute: each snapshot's dimer is replaced by a frame of the gas-phase dataset
(../data/dimer-gfn2.h5: normal modes, 400 K MD and umbrella windows through the transition
state), superimposed on the snapshot's heavy atoms (Kabsch), so the data span the geometries
the model meets along the double proton transfer. Each water's charges are multiplied by its
weight in the electrostatic embedding's environment (1 with its oxygen within SWITCH_DISTANCE
of a solute atom, 0 beyond EMBEDDING_CUTOFF, C2 in between; mlmm.embedding.environment).
Labels: GFN2-xTB with those point charges (data/dimer-tip3p-gfn2.h5) and without them
(data/dimer-tip3p-gfn2-vacuum.h5). Run from the repository root (resumes an interrupted labelling):
    .venv/bin/python systems/formic-acid-dimer/embedding/make_dataset.py

With --held-out: N_HELD_OUT snapshots of a further MM MD run of the same recipe (seed HELD_OUT_SEED; the
training snapshots came from seed 5), each with a gas-phase frame that none of the training snapshots
holds, labelled the same way, for test errors on frames no training run has seen
(data/dimer-held-out-gfn2.h5 and data/dimer-held-out-gfn2-vacuum.h5; the unlabelled snapshots are kept in
data/dimer-held-out-snapshots.h5 so that labelling resumes).

With --extra: N_EXTRA more training snapshots of a third MM MD run (seed EXTRA_SEED), each with a gas-phase
frame that neither the training nor the held-out snapshots hold, labelled the same way
(data/dimer-extra-gfn2.h5, data/dimer-extra-gfn2-vacuum.h5, data/dimer-extra-snapshots.h5), for the buffer
networks (../buffer/make_dataset.py --extra).
"""

import argparse
from pathlib import Path

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as u

from mlmm.data.calculators import XTBCalculator
from mlmm.data.dataset import Dataset, load_dataset
from mlmm.data.recipes import label_in_and_out_of_environment, label_snapshot_set
from mlmm.data.snapshots import solvent_snapshots, weighted_environment
from mlmm.embedding.surgery import frozen_copy

HERE = Path(__file__).parent
SYSTEM = HERE.parent
SEED = 5
CUTOFF = 1.3  # nm: whole waters with an atom this close to the MD dimer are collected
SWITCH_DISTANCE, EMBEDDING_CUTOFF = 0.9, 1.1  # nm: the switching range of the embedding environment
N_SNAPSHOTS = 600
HELD_OUT_SEED = 6
N_HELD_OUT = 300
EXTRA_SEED = 8
N_EXTRA = 1200
TIMESTEP = 0.002  # ps
INTERVAL = 50  # steps between snapshots
EQUILIBRATION = 5000  # steps
HEAVY = [0, 1, 2, 5, 6, 7]  # C, O1, O2 of both molecules


def mm_simulation(seed: int = SEED) -> app.Simulation:
    """The solvent around the dimer held fixed at its PDB geometry (rigid water)."""
    pdb = app.PDBFile(str(SYSTEM / "formic-acid-dimer-tip3p.pdb"))
    system = app.ForceField(str(SYSTEM / "formic-acid.xml"), "amber14/tip3p.xml").createSystem(
        pdb.topology, nonbondedMethod=app.PME, nonbondedCutoff=0.9 * u.nanometer, constraints=app.HBonds)
    system = frozen_copy(system, range(10))  # formic-acid.xml has no bonded terms: the dimer stays fixed
    integrator = openmm.LangevinMiddleIntegrator(300 * u.kelvin, 1 / u.picosecond, TIMESTEP * u.picosecond)
    integrator.setRandomNumberSeed(seed)
    simulation = app.Simulation(pdb.topology, system, integrator, openmm.Platform.getPlatformByName("CPU"),
                                {"Threads": "2"})
    simulation.context.setPositions(pdb.positions)
    simulation.minimizeEnergy(maxIterations=500)
    simulation.context.setVelocitiesToTemperature(300 * u.kelvin, seed)
    simulation.step(EQUILIBRATION)
    return simulation


def superimposed(frame: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``frame`` [n, 3] rotated and translated onto ``target`` by its heavy atoms (Kabsch, no reflection)."""
    a, b = frame[HEAVY], target[HEAVY]
    a_centre, b_centre = a.mean(0), b.mean(0)
    u_, _, vt = np.linalg.svd((a - a_centre).T @ (b - b_centre))
    sign = np.sign(np.linalg.det(u_ @ vt))
    rotation = u_ @ np.diag([1.0, 1.0, sign]) @ vt
    return (frame - a_centre) @ rotation + b_centre


def training_solutes(n_gas_phase: int) -> np.ndarray:
    """Indices of the gas-phase frames that the training snapshots hold, in snapshot order."""
    return np.random.default_rng(SEED).choice(n_gas_phase, N_SNAPSHOTS, replace=False)


def solutes(seed: int, n_snapshots: int, n_gas_phase: int) -> np.ndarray:
    """Indices of the gas-phase frames for the snapshots of the MM MD run started with ``seed``: the training
    ones (SEED), then for the held-out run frames the training snapshots do not hold, and for the extra run
    frames that neither holds."""
    if seed == SEED:
        return training_solutes(n_gas_phase)
    unused = np.setdiff1d(np.arange(n_gas_phase), training_solutes(n_gas_phase))
    if seed != HELD_OUT_SEED:
        unused = np.setdiff1d(unused, solutes(HELD_OUT_SEED, N_HELD_OUT, n_gas_phase))
    return np.random.default_rng(seed).choice(unused, n_snapshots, replace=False)


def snapshot_frames(seed: int = SEED, n_snapshots: int = N_SNAPSHOTS) -> Dataset:
    """Unlabelled frames: ``n_snapshots`` solvent snapshots of the MM MD started with ``seed``, each with a
    gas-phase dimer (:func:`solutes`)."""
    snapshots = solvent_snapshots(mm_simulation(seed), "resname FMA", CUTOFF, n_snapshots, INTERVAL)
    gas_phase = load_dataset(SYSTEM / "data" / "dimer-gfn2.h5")
    chosen = solutes(seed, n_snapshots, gas_phase.n_frames)
    snapshots["positions"] = np.array([superimposed(gas_phase.positions[f], x)
                                       for f, x in zip(chosen, snapshots["positions"])])
    mm_positions, mm_charges, mm_mask = weighted_environment(snapshots, SWITCH_DISTANCE, EMBEDDING_CUTOFF)
    # float32 precision (1e-7 nm, 1e-8 e) for the environment: the labels see exactly the stored values,
    # and the compressed file is half the size
    mm_positions, mm_charges = (a.astype(np.float32).astype(np.float64) for a in (mm_positions, mm_charges))
    provenance = {"description": "formic acid dimer (ML) in TIP3P: gas-phase dataset geometries superimposed on "
                                 "solvent snapshots, the whole TIP3P waters as point charges, each water's charges "
                                 f"times its embedding weight (oxygen within {SWITCH_DISTANCE} nm of a solute atom: "
                                 f"1, beyond {EMBEDDING_CUTOFF} nm: 0, C2 switch in between)",
                  "sampling": "MM MD: formic-acid.xml + amber14 TIP3P, PME 0.9 nm, dimer fixed at its PDB "
                              "geometry, 300 K Langevin (2 fs, 1/ps), "
                              f"{EQUILIBRATION * TIMESTEP:g} ps equilibration, a snapshot every "
                              f"{INTERVAL * TIMESTEP:g} ps; solute frames from dimer-gfn2.h5 "
                              f"(indices {chosen.tolist()})",
                  "temperature_K": 300.0, "seed": seed, "embedding_switch_distance_nm": SWITCH_DISTANCE,
                  "embedding_cutoff_nm": EMBEDDING_CUTOFF,
                  "limits": "solvent equilibrated around the fixed PDB dimer, not around each "
                            "substituted geometry; no MM forces (xtb-python does not return them)"}
    sources = [f"snapshots-{s}" for s in gas_phase.frame_source[chosen]]
    return Dataset(species=snapshots["species"], positions=snapshots["positions"], mm_positions=mm_positions,
                   mm_charges=mm_charges, mm_mask=mm_mask, frame_source=sources, provenance=provenance)


def main():
    label_in_and_out_of_environment(snapshot_frames(), XTBCalculator(), HERE / "data" / "dimer-tip3p-gfn2.h5",
                                    HERE / "data" / "dimer-tip3p-gfn2-vacuum.h5")


def held_out():
    """The held-out snapshots (module docstring), labelled in and out of the TIP3P charges."""
    label_snapshot_set(lambda: snapshot_frames(HELD_OUT_SEED, N_HELD_OUT), XTBCalculator(), HERE / "data", "dimer")


def extra():
    """More training snapshots (module docstring), labelled in and out of the TIP3P charges."""
    label_snapshot_set(lambda: snapshot_frames(EXTRA_SEED, N_EXTRA), XTBCalculator(), HERE / "data", "dimer", "extra")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--held-out", action="store_true",
                       help=f"{N_HELD_OUT} snapshots of a further MM MD run (seed {HELD_OUT_SEED}), for test errors")
    which.add_argument("--extra", action="store_true",
                       help=f"{N_EXTRA} more training snapshots of a third MM MD run (seed {EXTRA_SEED})")
    arguments = parser.parse_args()
    (held_out if arguments.held_out else extra if arguments.extra else main)()
