"""GFN2-xTB reference data for the ML water: normal-mode samples and hot Langevin MD, labelled with xTB.

Writes systems/water/data/water-gfn2.h5. Run from the repository root:
    .venv/bin/python systems/water/make_dataset.py
Rerunning resumes an interrupted labelling.
"""

from pathlib import Path

from mlmm.data.calculators import XTBCalculator
from mlmm.data.labelling import label
from mlmm.data.recipes import deduplicated, gas_phase_frames, molecule_from_pdb
from mlmm.data.sampling import calculator_forces

HERE = Path(__file__).parent
SEED = 7


def main():
    calculator = XTBCalculator()
    species, masses, positions = molecule_from_pdb(HERE / "water.pdb")
    frames = gas_phase_frames(species, masses, positions, calculator_forces(calculator, species),
                              nms_temperatures=[300, 1000, 2000, 4000], nms_samples=400, md_temperature=600,
                              md_steps=20000, md_save_every=20, seed=SEED, method="GFN2-xTB")
    frames = deduplicated(frames)
    frames.provenance["description"] = "one water molecule in the gas phase"
    frames.provenance["limits"] = ("gas phase only (no MM point charges); O-H 0.082-0.110 nm and "
                                   "H-O-H 82-133 degrees in the data; no dissociation")
    labelled = label(frames, HERE / "data" / "water-gfn2.h5", calculator, n_workers=2)
    print(f"{labelled.labelled().n_frames} labelled frames in {HERE / 'data' / 'water-gfn2.h5'}")


if __name__ == "__main__":
    main()
