"""ML-MM interaction energies and forces of every embedding scheme on the held-out QM/MM frames.

Reference: GFN2-xTB E(QM/MM) - E(QM) and the force difference on the dimer's atoms, on the test
frames of the electrostatic model's training split. Writes model/schemes.json and prints a
Markdown table. Run from the repository root:
    .venv/bin/python systems/formic-acid-dimer/embedding/evaluate.py
"""

from pathlib import Path

import openmm
import openmm.app as app
import openmm.unit as u

from mlmm.training.embedding_errors import assess_schemes, markdown_table

HERE = Path(__file__).parent


def force_field_charges() -> list:
    """Charges (e) of the dimer atoms in formic-acid.xml, in the PDB's atom order."""
    pdb = app.PDBFile(str(HERE.parent / "formic-acid-dimer.pdb"))
    system = app.ForceField(str(HERE.parent / "formic-acid.xml")).createSystem(pdb.topology)
    nonbonded = next(f for f in system.getForces() if isinstance(f, openmm.NonbondedForce))
    return [nonbonded.getParticleParameters(i)[0].value_in_unit(u.elementary_charge)
            for i in range(system.getNumParticles())]


if __name__ == "__main__":
    result = assess_schemes(HERE / "data" / "dimer-tip3p-gfn2.h5", HERE / "data" / "dimer-tip3p-gfn2-vacuum.h5",
                            HERE / "model", HERE.parent / "model" / "model.pt", force_field_charges())
    print(f"{result['reference']['n_frames']} test frames, reference E_int "
          f"{result['reference']['interaction_mean']:.1f} +- {result['reference']['interaction_std']:.1f} kJ/mol")
    print(markdown_table(result))
