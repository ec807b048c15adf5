"""Solvate the formic acid dimer for the proton-transfer rates in TIP3P: a truncated octahedron.

The dimer of ../formic-acid-dimer.pdb (GFN2-xTB minimum) in OpenMM's Modeller with a padding of
1.2 nm (default): no dimer atom comes within 1.2 nm of an atom of a periodic copy (more than the
0.9 nm cutoff), in well under half the waters of the 3 nm cube of ../formic-acid-dimer-tip3p.pdb.
The electrostatic embedding needs half the smallest box width above its 1.1 nm environment cutoff:
a padding of 1.35 nm gives 1.10 nm.
Run from the repository root:
    .venv/bin/python systems/formic-acid-dimer/rates/solvate.py                 # dimer-tip3p-octahedron.pdb
    .venv/bin/python systems/formic-acid-dimer/rates/solvate.py --padding 1.35 \
        --output dimer-tip3p-octahedron-1.35.pdb                                # for the electrostatic scheme
"""

import argparse
from pathlib import Path

import numpy as np
import openmm.app as app
import openmm.unit as u

HERE = Path(__file__).parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--padding", type=float, default=1.2, help="nm (default 1.2)")
    parser.add_argument("--output", default="dimer-tip3p-octahedron.pdb", help="file name, written here")
    args = parser.parse_args()
    dimer = app.PDBFile(str(HERE.parent / "formic-acid-dimer.pdb"))
    forcefield = app.ForceField(str(HERE.parent / "formic-acid.xml"), "amber14/tip3p.xml")
    modeller = app.Modeller(dimer.topology, dimer.positions)
    modeller.addSolvent(forcefield, model="tip3p", padding=args.padding * u.nanometer, boxShape="octahedron")
    path = HERE / args.output
    with open(path, "w") as handle:
        app.PDBFile.writeFile(modeller.topology, modeller.positions, handle)
    waters = sum(residue.name == "HOH" for residue in modeller.topology.residues())
    box = np.array(modeller.topology.getPeriodicBoxVectors().value_in_unit(u.nanometer))
    width = abs(np.linalg.det(box)) / np.linalg.norm(np.cross(box[1], box[2]), axis=-1)
    print(f"{path.name}: {modeller.topology.getNumAtoms()} atoms, {waters} waters; box vector length "
          f"{box[0, 0]:.3f} nm, smallest width {width:.4f} nm")


if __name__ == "__main__":
    main()
