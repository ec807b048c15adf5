"""GFN2-xTB reference data for the formic acid dimer, covering the double proton transfer path.

Frames: normal-mode samples at four temperatures, Langevin MD at 400 K, and umbrella-biased
Langevin MD in 15 windows along the proton-transfer coordinate
xi = mean over both protons of d(O_donor-H) - d(H-O_acceptor), from -0.07 nm (reactant)
through 0 (transition-state region) to +0.07 nm (product), plus 5 stiffer windows within
+-0.02 nm of the transition state, where the barrier pushes frames out of the wide windows.
All driven and labelled by GFN2-xTB. Writes systems/formic-acid-dimer/data/dimer-gfn2.h5. Run from the repository root:
    .venv/bin/python systems/formic-acid-dimer/make_dataset.py
Rerunning resumes an interrupted labelling.
"""

from pathlib import Path

import numpy as np

from mlmm.data.calculators import XTBCalculator
from mlmm.data.dataset import concatenate
from mlmm.data.labelling import label
from mlmm.data.recipes import deduplicated, frames, gas_phase_frames, molecule_from_pdb
from mlmm.data.sampling import DistanceDifference, calculator_forces, optimize, umbrella_sampling

HERE = Path(__file__).parent
SEED = 11
#: (donor O, proton, acceptor O) of both hydrogen bonds, in the PDB's atom order.
PROTON_TRANSFER = DistanceDifference([(2, 4, 6), (7, 9, 1)])
WINDOWS = np.round(np.linspace(-0.07, 0.07, 15), 3)  # nm
UMBRELLA_K = 30000.0  # kJ/mol/nm^2: window width sqrt(RT/k) = 0.01 nm at 400 K, the window spacing
TS_WINDOWS = np.round(np.linspace(-0.02, 0.02, 5), 3)  # nm
TS_K = 150000.0  # kJ/mol/nm^2: width 0.0047 nm, stiffer than the barrier's negative curvature


def main():
    calculator = XTBCalculator()
    species, masses, positions = molecule_from_pdb(HERE / "formic-acid-dimer.pdb")
    force_fn = calculator_forces(calculator, species)
    unbiased = gas_phase_frames(species, masses, positions, force_fn, nms_temperatures=[300, 600, 1000, 1500],
                                nms_samples=300, md_temperature=400, md_steps=20000, md_save_every=25,
                                seed=SEED, coordinate=PROTON_TRANSFER, method="GFN2-xTB")
    start = optimize(positions, force_fn, fmax=0.5)
    umbrella = umbrella_sampling(start, masses, force_fn, PROTON_TRANSFER, WINDOWS, UMBRELLA_K, temperature=400,
                                 n_steps=1200, equilibration_steps=200, save_every=20, seed=SEED + 200)
    transition = umbrella_sampling(start, masses, force_fn, PROTON_TRANSFER, TS_WINDOWS, TS_K, temperature=400,
                                   n_steps=1200, equilibration_steps=200, save_every=20, seed=SEED + 300)
    provenance = dict(unbiased.provenance, umbrella_windows_nm=WINDOWS.tolist(), umbrella_k_kj_mol_nm2=UMBRELLA_K,
                      transition_windows_nm=TS_WINDOWS.tolist(), transition_k_kj_mol_nm2=TS_K,
                      umbrella_temperature_K=400)
    biased = frames(species, umbrella["positions"], "umbrella-400K", provenance, PROTON_TRANSFER)
    stiff = frames(species, transition["positions"], "umbrella-transition-400K", provenance, PROTON_TRANSFER)
    data = deduplicated(concatenate([unbiased, biased, stiff]))
    data.provenance = dict(provenance, near_duplicates_removed=data.provenance["near_duplicates_removed"],
                           description="cyclic formic acid dimer in the gas phase, reactant to product of the "
                                       "concerted double proton transfer",
                           limits="gas phase only; no dissociation of the dimer (O...O below about 0.3 nm); "
                                  "xi within about -0.09 to 0.09 nm")
    labelled = label(data, HERE / "data" / "dimer-gfn2.h5", calculator, n_workers=2)
    print(f"{labelled.labelled().n_frames} labelled frames in {HERE / 'data' / 'dimer-gfn2.h5'}")


if __name__ == "__main__":
    main()
