"""ML-MM interaction energies and forces of every embedding scheme on the held-out QM/MM frames.

Reference: GFN2-xTB E(QM/MM) - E(QM) and the force difference on the water's atoms, on the test
frames of the electrostatic model's training split. Writes model/schemes.json and prints a
Markdown table. Run from the repository root:
    .venv/bin/python systems/water/embedding/evaluate.py
With --held-out on all 300 frames of a further MM MD run that no training run has seen
(data/water-held-out-gfn2.h5, written by `make_dataset.py --held-out`), into model/schemes-held-out.json.
"""

import argparse
from pathlib import Path

from mlmm.training.embedding_errors import assess_system_schemes

HERE = Path(__file__).parent
TIP3P_CHARGES = [-0.834, 0.417, 0.417]  # e: O, H, H

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--held-out", action="store_true", help="assess on the frames of make_dataset.py --held-out")
    assess_system_schemes(HERE, "water", TIP3P_CHARGES, held_out=parser.parse_args().held_out)
