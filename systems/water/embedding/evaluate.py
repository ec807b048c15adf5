"""ML-MM interaction energies and forces of every embedding scheme on the held-out QM/MM frames.

Reference: GFN2-xTB E(QM/MM) - E(QM) and the force difference on the water's atoms, on the test
frames of the electrostatic model's training split. Writes model/schemes.json and prints a
Markdown table. Run from the repository root:
    .venv/bin/python systems/water/embedding/evaluate.py
"""

from pathlib import Path

from mlmm.training.embedding_errors import assess_schemes, markdown_table

HERE = Path(__file__).parent
TIP3P_CHARGES = [-0.834, 0.417, 0.417]  # e: O, H, H

if __name__ == "__main__":
    result = assess_schemes(HERE / "data" / "water-tip3p-gfn2.h5", HERE / "data" / "water-tip3p-gfn2-vacuum.h5",
                            HERE / "model", HERE.parent / "model" / "model.pt", TIP3P_CHARGES)
    print(f"{result['reference']['n_frames']} test frames, reference E_int "
          f"{result['reference']['interaction_mean']:.1f} +- {result['reference']['interaction_std']:.1f} kJ/mol")
    print(markdown_table(result))
