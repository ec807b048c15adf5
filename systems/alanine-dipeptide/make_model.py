"""Write ff-potential.pt: the amber14 force field of alanine dipeptide as an mlmm model file.

The model is ``QEqCharges(ForceFieldPotential)``: the solute's intramolecular amber14
energy (vacuum, no cutoff, no constraints, all 22 atoms in PDB order) with QEq charges, so
it runs under every embedding. It stands in for a trained NNP until one exists; as the ML
potential of a mechanically embedded system it reproduces the pure force field.
Run: .venv/bin/python systems/alanine-dipeptide/make_model.py
"""

from pathlib import Path

import openmm.app as app

import mlmm
from mlmm.potentials import ForceFieldPotential, QEqCharges

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "ff-potential.pt"


def main() -> None:
    pdb = app.PDBFile(str(HERE / "alanine-dipeptide.pdb"))
    forcefield = app.ForceField("amber14-all.xml", "amber14/tip3p.xml")
    # Flexible X-H bonds: mlmm removes constraints inside the ML region, so the potential needs the bond terms.
    system = forcefield.createSystem(pdb.topology, nonbondedMethod=app.NoCutoff, constraints=None)
    numbers = [atom.element.atomic_number for atom in pdb.topology.atoms()]
    potential = QEqCharges(ForceFieldPotential.from_system(system, range(len(numbers)), numbers))
    mlmm.save_potential(potential, OUTPUT, supported_elements=[1, 6, 7, 8], name="alanine-dipeptide-ff-qeq",
                        extra={"description": "amber14 force field of alanine dipeptide (ACE-ALA-NME, 22 atoms in "
                                              "the order of alanine-dipeptide.pdb) with QEq charges; a force-field "
                                              "stand-in until a trained model exists",
                               "source": "systems/alanine-dipeptide/make_model.py",
                               "atoms": len(numbers)})
    print(f"wrote {OUTPUT} ({OUTPUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
