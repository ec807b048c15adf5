"""Smoothness of the electrostatic and buffer embeddings: one water dragged out through a boundary.

The solvated dimer (formic-acid-dimer-tip3p.pdb) with a trained model. Electrostatic (default):
the water whose oxygen is nearest to 1.0 nm from the dimer is moved rigidly away from the
dimer's centre in 0.0005 nm steps until its oxygen is 1.15 nm from every dimer atom, through the
0.9-1.1 nm switching shell. Buffer (--scheme buffer, ../buffer/MODEL/model.pt with MODEL from
--buffer-model, default model): the water nearest to 0.40 nm, from 0.33 to 0.47 nm, through the
0.35-0.45 nm buffer switching shell. Measured: the ML force's energy, plus for the buffer the
force field's Lennard-Jones energy of the moved water with the dimer (which fades in as the
water leaves the buffer; the rest of the force field does not depend on the scheme). Printed:
the largest energy change between neighbouring points (kJ/mol), the largest part of such a
change that the forces at the two points do not account for (trapezoid rule: a jump would show
there), and the largest difference between the force along the path (the summed forces on the
water projected on the direction of motion) and the central finite difference of the energy.
Run from the repository root:
    .venv/bin/python systems/formic-acid-dimer/embedding/smoothness.py [--scheme buffer]
    .venv/bin/python systems/formic-acid-dimer/embedding/smoothness.py --scheme buffer --buffer-model model-stage2
"""

import argparse
from pathlib import Path

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as u

import mlmm

HERE = Path(__file__).parent
STEP = 0.0005  # nm
# scheme: model, options, the water's start distance (nm, oxygen to the nearest dimer atom), path range (nm)
SCHEMES = {"electrostatic": (HERE / "model" / "model.pt", {}, 1.0, (-0.15, 1.15)),
           "buffer": (None,  # ../buffer/<--buffer-model>/model.pt
                      {"buffer_cutoff": 0.45, "buffer_switch_distance": 0.35}, 0.40, (-0.07, 0.47))}


def dimer_lennard_jones(system: openmm.System, water: list, positions: np.ndarray) -> tuple:
    """Force-field Lennard-Jones energy (kJ/mol) of the water with the 10 dimer atoms and its force on the water."""
    nonbonded = next(f for f in system.getForces() if isinstance(f, openmm.NonbondedForce))
    energy, force = 0.0, np.zeros(3)
    for j in water:
        _, sigma_j, epsilon_j = nonbonded.getParticleParameters(j)
        for i in range(10):
            _, sigma_i, epsilon_i = nonbonded.getParticleParameters(i)
            sigma = 0.5 * (sigma_i + sigma_j).value_in_unit(u.nanometer)
            epsilon = np.sqrt((epsilon_i * epsilon_j).value_in_unit(u.kilojoule_per_mole ** 2))
            d = positions[j] - positions[i]
            r = np.linalg.norm(d)
            s6 = (sigma / r) ** 6
            energy += 4 * epsilon * (s6 * s6 - s6)
            force += 24 * epsilon * (2 * s6 * s6 - s6) / r ** 2 * d
    return energy, force


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scheme", choices=list(SCHEMES), default="electrostatic")
    parser.add_argument("--buffer-model", default="model", help="buffer network directory in ../buffer")
    args = parser.parse_args()
    scheme = args.scheme
    model, options, start_distance, (first_shift, last_distance) = SCHEMES[scheme]
    model = model or HERE.parent / "buffer" / args.buffer_model / "model.pt"
    pdb = app.PDBFile(str(HERE.parent / "formic-acid-dimer-tip3p.pdb"))
    mm_system = app.ForceField(str(HERE.parent / "formic-acid.xml"), "amber14/tip3p.xml").createSystem(
        pdb.topology, nonbondedMethod=app.PME, nonbondedCutoff=0.9 * u.nanometer, constraints=app.HBonds)
    system = mlmm.create_mixed_system(pdb.topology, mm_system, "resname FMA", str(model), embedding=scheme,
                                      **options)
    ml_group = 5
    next(f for f in system.getForces() if f.getName() == f"mlmm {scheme}").setForceGroup(ml_group)
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    x = np.array(pdb.positions.value_in_unit(u.nanometer))
    dimer = x[:10]
    oxygens = np.array([a.index for a in pdb.topology.atoms() if a.residue.name == "HOH" and a.name == "O"])
    nearest = np.linalg.norm(x[oxygens][:, None] - dimer[None], axis=-1).min(1)
    oxygen = int(oxygens[np.argmin(np.abs(nearest - start_distance))])
    water = [oxygen, oxygen + 1, oxygen + 2]
    direction = x[oxygen] - dimer.mean(0)
    direction /= np.linalg.norm(direction)
    start = x[water].copy()
    rows = []
    shift = first_shift  # start inside the switching shell's inner edge
    while True:
        moved = x.copy()
        moved[water] = start + shift * direction
        distance = np.linalg.norm(dimer - moved[oxygen], axis=1).min()
        if distance > last_distance:
            break
        context.setPositions(moved)
        ml = context.getState(getEnergy=True, getForces=True, groups={ml_group})
        force = ml.getForces(asNumpy=True).value_in_unit(u.kilojoule_per_mole / u.nanometer)[water].sum(0)
        energy = ml.getPotentialEnergy().value_in_unit(u.kilojoule_per_mole)
        if scheme == "buffer":
            lj_energy, lj_force = dimer_lennard_jones(mm_system, water, moved)
            energy, force = energy + lj_energy, force + lj_force
        rows.append((shift, distance, energy, force @ direction))
        shift += STEP
    rows = np.array(rows)
    finite_difference = -np.gradient(rows[:, 2], rows[:, 0])
    deviation = np.abs(rows[1:-1, 3] - finite_difference[1:-1])
    print(f"water {oxygen // 3}: oxygen {rows[0, 1]:.3f} -> {rows[-1, 1]:.3f} nm from the nearest dimer atom, "
          f"{len(rows)} points {STEP} nm apart")
    # a jump shows as a step the forces do not account for: dE - (-(F_k + F_k+1) / 2 ds), trapezoid rule
    unexplained = np.diff(rows[:, 2]) + 0.5 * (rows[1:, 3] + rows[:-1, 3]) * np.diff(rows[:, 0])
    print(f"{scheme}: measured energy {rows[0, 2]:.3f} -> {rows[-1, 2]:.3f} kJ/mol, largest step "
          f"{np.abs(np.diff(rows[:, 2])).max():.2e} kJ/mol, largest step not accounted for by the forces "
          f"{np.abs(unexplained).max():.2e} kJ/mol")
    print(f"force along the path vs -dE/ds (central differences): largest deviation {deviation.max():.2e} "
          f"kJ/mol/nm, largest force {np.abs(rows[:, 3]).max():.3e} kJ/mol/nm")


if __name__ == "__main__":
    main()
