"""Solvate the formic acid dimer for the proton-transfer rates in TIP3P: a truncated octahedron.

The dimer of ../formic-acid-dimer.pdb (GFN2-xTB minimum) in OpenMM's Modeller with a padding of
1.2 nm: no dimer atom comes within 1.2 nm of an atom of a periodic copy (more than the 0.9 nm
cutoff), in well under half the waters of the 3 nm cube of ../formic-acid-dimer-tip3p.pdb.
Writes dimer-tip3p-octahedron.pdb here.
Run: .venv/bin/python systems/formic-acid-dimer/rates/solvate.py
"""

from pathlib import Path

import openmm.app as app
import openmm.unit as u

HERE = Path(__file__).parent
PADDING_NM = 1.2


def main() -> None:
    dimer = app.PDBFile(str(HERE.parent / "formic-acid-dimer.pdb"))
    forcefield = app.ForceField(str(HERE.parent / "formic-acid.xml"), "amber14/tip3p.xml")
    modeller = app.Modeller(dimer.topology, dimer.positions)
    modeller.addSolvent(forcefield, model="tip3p", padding=PADDING_NM * u.nanometer, boxShape="octahedron")
    path = HERE / "dimer-tip3p-octahedron.pdb"
    with open(path, "w") as handle:
        app.PDBFile.writeFile(modeller.topology, modeller.positions, handle)
    waters = sum(residue.name == "HOH" for residue in modeller.topology.residues())
    volume = modeller.topology.getUnitCellDimensions()
    print(f"{path.name}: {modeller.topology.getNumAtoms()} atoms, {waters} waters; box {volume}")


if __name__ == "__main__":
    main()
