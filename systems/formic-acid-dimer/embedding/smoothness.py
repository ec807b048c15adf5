"""Smoothness of the electrostatic embedding: one water dragged out through the environment boundary.

The solvated dimer (formic-acid-dimer-tip3p.pdb, trained electrostatic model) with the water
whose oxygen is nearest to 1.0 nm from the dimer: that water is moved rigidly away from the
dimer's centre in 0.0005 nm steps until its oxygen is 1.15 nm from every dimer atom, through the
0.9-1.1 nm switching shell. Printed: the largest energy change between neighbouring points of
the ML force (kJ/mol; the force field's part is OpenMM's own), and the largest difference between the force
along the path (the summed forces on the water projected on the direction of motion) and the
central finite difference of the energy. Run from the repository root:
    .venv/bin/python systems/formic-acid-dimer/embedding/smoothness.py
"""

from pathlib import Path

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as u

import mlmm

HERE = Path(__file__).parent
STEP = 0.0005  # nm


def main():
    pdb = app.PDBFile(str(HERE.parent / "formic-acid-dimer-tip3p.pdb"))
    mm_system = app.ForceField(str(HERE.parent / "formic-acid.xml"), "amber14/tip3p.xml").createSystem(
        pdb.topology, nonbondedMethod=app.PME, nonbondedCutoff=0.9 * u.nanometer, constraints=app.HBonds)
    system = mlmm.create_mixed_system(pdb.topology, mm_system, "resname FMA", str(HERE / "model" / "model.pt"),
                                      embedding="electrostatic")
    ml_group = 5
    next(f for f in system.getForces() if f.getName() == "mlmm electrostatic").setForceGroup(ml_group)
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    x = np.array(pdb.positions.value_in_unit(u.nanometer))
    dimer = x[:10]
    oxygens = np.array([a.index for a in pdb.topology.atoms() if a.residue.name == "HOH" and a.name == "O"])
    nearest = np.linalg.norm(x[oxygens][:, None] - dimer[None], axis=-1).min(1)
    oxygen = int(oxygens[np.argmin(np.abs(nearest - 1.0))])
    water = [oxygen, oxygen + 1, oxygen + 2]
    direction = x[oxygen] - dimer.mean(0)
    direction /= np.linalg.norm(direction)
    start = x[water].copy()
    rows = []
    shift = -0.15  # start inside the switching shell's inner edge
    while True:
        moved = x.copy()
        moved[water] = start + shift * direction
        distance = np.linalg.norm(dimer - moved[oxygen], axis=1).min()
        if distance > 1.15:
            break
        context.setPositions(moved)
        ml = context.getState(getEnergy=True, getForces=True, groups={ml_group})
        along = ml.getForces(asNumpy=True).value_in_unit(u.kilojoule_per_mole / u.nanometer)[water].sum(0) @ direction
        rows.append((shift, distance, ml.getPotentialEnergy().value_in_unit(u.kilojoule_per_mole), along))
        shift += STEP
    rows = np.array(rows)
    finite_difference = -np.gradient(rows[:, 2], rows[:, 0])
    deviation = np.abs(rows[1:-1, 3] - finite_difference[1:-1])
    print(f"water {oxygen // 3}: oxygen {rows[0, 1]:.3f} -> {rows[-1, 1]:.3f} nm from the nearest dimer atom, "
          f"{len(rows)} points {STEP} nm apart")
    print(f"ML force energy: {rows[0, 2]:.3f} -> {rows[-1, 2]:.3f} kJ/mol, largest step "
          f"{np.abs(np.diff(rows[:, 2])).max():.2e} kJ/mol")
    print(f"force along the path vs -dE/ds (central differences): largest deviation {deviation.max():.2e} "
          f"kJ/mol/nm, largest force {np.abs(rows[:, 3]).max():.3e} kJ/mol/nm")


if __name__ == "__main__":
    main()
