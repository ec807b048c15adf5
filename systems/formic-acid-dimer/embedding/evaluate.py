"""ML-MM interaction energies and forces of every embedding scheme on the held-out QM/MM frames.

Reference: GFN2-xTB E(QM/MM) - E(QM) and the force difference on the dimer's atoms, on the test
frames of the electrostatic model's training split. Writes model/schemes.json and prints a
Markdown table. Run from the repository root:
    .venv/bin/python systems/formic-acid-dimer/embedding/evaluate.py
With --held-out on all 300 frames of a further MM MD run that no training run has seen
(data/dimer-held-out-gfn2.h5, written by `make_dataset.py --held-out`), into model/schemes-held-out.json.
"""

import argparse
from pathlib import Path

import openmm
import openmm.app as app
import openmm.unit as u

from mlmm.training.embedding_errors import assess_system_schemes

HERE = Path(__file__).parent


def force_field_charges() -> list:
    """Charges (e) of the dimer atoms in formic-acid.xml, in the PDB's atom order."""
    pdb = app.PDBFile(str(HERE.parent / "formic-acid-dimer.pdb"))
    system = app.ForceField(str(HERE.parent / "formic-acid.xml")).createSystem(pdb.topology)
    nonbonded = next(f for f in system.getForces() if isinstance(f, openmm.NonbondedForce))
    return [nonbonded.getParticleParameters(i)[0].value_in_unit(u.elementary_charge)
            for i in range(system.getNumParticles())]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--held-out", action="store_true", help="assess on the frames of make_dataset.py --held-out")
    assess_system_schemes(HERE, "dimer", force_field_charges(), held_out=parser.parse_args().held_out)
