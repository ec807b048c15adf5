"""Build the ML regions of systems/water and systems/formic-acid-dimer and solvate them in TIP3P.

Each solute is optimised with GFN2-xTB (the reference method of its model), written as a
PDB, and placed in a cubic TIP3P box (3 nm edge) with OpenMM's Modeller.
Run: .venv/bin/python systems/build_systems.py
"""

from pathlib import Path

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as u

from mlmm.data.calculators import XTBCalculator
from mlmm.data.sampling import calculator_forces, optimize

HERE = Path(__file__).parent

# Starting geometries (nm): water, and the planar cyclic formic acid dimer. Residue atom
# order: C, O1 (carbonyl), O2 (hydroxyl), H1 (on C), H2 (on O2).
WATER = ("HOH", [("O", 8, [0.0, 0.0, 0.0]), ("H1", 1, [0.0956, 0.0050, 0.0]), ("H2", 1, [-0.0240, 0.0926, 0.0])])
FORMIC_ACID_A = [("C", 6, [0.000, 0.190, 0.0]), ("O1", 8, [0.115, 0.133, 0.0]), ("O2", 8, [-0.103, 0.118, 0.0]),
                 ("H1", 1, [0.000, 0.300, 0.0]), ("H2", 1, [-0.078, 0.016, 0.0])]
FORMIC_ACID_B = [(name, z, [-x, -y, 0.0]) for name, z, (x, y, _) in FORMIC_ACID_A]  # inversion partner
BONDS = {"HOH": [("O", "H1"), ("O", "H2")], "FMA": [("C", "O1"), ("C", "O2"), ("C", "H1"), ("O2", "H2")]}


def build(residues, name: str, forcefield_files) -> None:
    topology, species, coordinates = app.Topology(), [], []
    chain = topology.addChain()
    for resname, atoms in residues:
        residue = topology.addResidue(resname, chain)
        created = {}
        for atom_name, z, xyz in atoms:
            created[atom_name] = topology.addAtom(atom_name, app.Element.getByAtomicNumber(z), residue)
            species.append(z)
            coordinates.append(xyz)
        for a, b in BONDS[resname]:
            topology.addBond(created[a], created[b])
    # tiny noise: a generic geometry, no bond exactly along an axis (xtb-python 22.1 gives wrong
    # gradients there; XTBCalculator also guards against it, see mlmm/data/calculators.py)
    start = np.array(coordinates) + np.random.default_rng(0).normal(0.0, 0.001, (len(coordinates), 3))
    optimized = optimize(start, calculator_forces(XTBCalculator(), np.array(species)), fmax=0.5)
    folder = HERE / name
    folder.mkdir(exist_ok=True)
    with open(folder / f"{name}.pdb", "w") as handle:
        app.PDBFile.writeFile(topology, optimized * u.nanometer, handle)
    forcefield = app.ForceField(*forcefield_files)
    modeller = app.Modeller(topology, optimized * u.nanometer)
    modeller.addSolvent(forcefield, model="tip3p", boxSize=openmm.Vec3(3.0, 3.0, 3.0) * u.nanometer)
    with open(folder / f"{name}-tip3p.pdb", "w") as handle:
        app.PDBFile.writeFile(modeller.topology, modeller.positions, handle)
    print(f"{name}: {len(species)} ML atoms, {modeller.topology.getNumAtoms()} atoms in TIP3P")


def main():
    build([WATER], "water", ["amber14/tip3p.xml"])
    build([("FMA", FORMIC_ACID_A), ("FMA", FORMIC_ACID_B)], "formic-acid-dimer",
          [str(HERE / "formic-acid-dimer" / "formic-acid.xml"), "amber14/tip3p.xml"])


if __name__ == "__main__":
    main()
