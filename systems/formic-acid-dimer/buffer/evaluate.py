"""The buffer embedding's interaction energy on held-out solvent snapshots against GFN2-xTB.

For every test snapshot of the buffer model's split: the buffer B (TIP3P waters with the oxygen
within 0.45 nm of a dimer atom, as in make_dataset.py) and the outer waters O (the rest of the
snapshot's environment, with the embedding-switched charges stored in
../embedding/data/dimer-tip3p-gfn2.h5). Reference: E_int = E(I u B; O charges) - E(B; O charges)
- E(I), GFN2-xTB with the O charges as external point charges; the scheme's value with every
buffer water at full weight, and the scheme's limit with GFN2-xTB's own cluster energies and charges
(mlmm.training.buffer_errors); and, on the same reference, the mechanical (force-field charges),
mechanical-ml-charges and electrostatic schemes ("other_schemes": I with B and O as point charges, with
the force field's Lennard-Jones energy of I with B). Writes MODEL/interaction.json (MODEL: model, or the directory given
with --model). Run from the repository root:
    .venv/bin/python systems/formic-acid-dimer/buffer/evaluate.py [--model model-stage2]

With --held-out the snapshots are instead the 300 of a further MM MD run that no training run has
seen, each with a gas-phase dimer geometry that no training snapshot holds
(../embedding/data/dimer-held-out-gfn2.h5, written by `../embedding/make_dataset.py --held-out`), all of
them assessed, and the result goes to MODEL/interaction-held-out.json. With --validation the
snapshots are the split's validation ones (MODEL/interaction-validation.json), on which the weights of
a mean of models may be fitted (`mlmm average --fit-weights`).
"""

import argparse
import json
import sys
from pathlib import Path

from mlmm.data.calculators import XTBCalculator
from mlmm.potentials import load_potential
from mlmm.training.buffer_errors import assess_buffer_model, other_schemes, solvated_force_field

HERE = Path(__file__).parent
SYSTEM = HERE.parent
sys.path.insert(0, str(HERE))
from make_dataset import BUFFER_CUTOFF, SNAPSHOTS, TIP3P_SPECIES  # noqa: E402  (this folder's recipe)

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="model", help="model directory in this folder (default: model)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--held-out", action="store_true",
                       help="assess on the snapshots of ../embedding/make_dataset.py --held-out instead")
    which.add_argument("--validation", action="store_true",
                       help="assess on the split's validation snapshots instead (MODEL/interaction-validation.json)")
    args = parser.parse_args()
    system, ml_atoms, molecule_atoms = solvated_force_field(
        SYSTEM / "formic-acid-dimer-tip3p.pdb", [str(SYSTEM / "formic-acid.xml"), "amber14/tip3p.xml"])
    schemes = other_schemes(system, ml_atoms, molecule_atoms, load_potential(SYSTEM / "model" / "model.pt")[0],
                            load_potential(SYSTEM / "embedding" / "model" / "model.pt")[0], 0.0)
    name = "dimer-held-out-gfn2" if args.held_out else "dimer-tip3p-gfn2"
    result = assess_buffer_model(SNAPSHOTS / f"{name}.h5", SNAPSHOTS / f"{name}-vacuum.h5", HERE / args.model,
                                 XTBCalculator(), BUFFER_CUTOFF, TIP3P_SPECIES, held_out=args.held_out,
                                 schemes=schemes, part="validation" if args.validation else "test")
    print(json.dumps(result, indent=2))
