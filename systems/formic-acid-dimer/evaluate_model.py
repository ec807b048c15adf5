"""Numbers for MODEL_CARD.md beyond model/metrics.json: errors in the transition-state region and
the double proton transfer barrier of the model against GFN2-xTB.

1. Test-split frames with |xi| < 0.02 nm (transition-state region of the proton-transfer
   coordinate xi, see make_dataset.py): energy, force and dipole MAE/RMSE.
2. Barrier: the minimum (xi ~ -0.066 nm) and the transition state (the stationary point at xi = 0,
   reached by minimising with a stiff restraint at xi = 0; the dimer is symmetric, so the
   restraint force vanishes there), each optimised with GFN2-xTB and with the model.
   Reports the xTB barrier, the model's barrier at the xTB geometries, and the model's barrier
   at its own geometries.
Writes evaluation.json beside the model. Run from the repository root:
    .venv/bin/python systems/formic-acid-dimer/evaluate_model.py
For the model refined at 500-700 K (its split covers both of its datasets, in this order):
    .venv/bin/python systems/formic-acid-dimer/evaluate_model.py --model rates/model \
        --datasets data/dimer-gfn2.h5 rates/data/dimer-gfn2-hot.h5
"""

import argparse
import json
from pathlib import Path

import numpy as np

from make_dataset import PROTON_TRANSFER
from mlmm.data.calculators import XTBCalculator
from mlmm.data.dataset import concatenate, load_dataset
from mlmm.data.recipes import molecule_from_pdb
from mlmm.data.sampling import calculator_forces, harmonic_bias, optimize, potential_forces
from mlmm.training.metrics import errors
from mlmm.training.models import rebuild

HERE = Path(__file__).parent
TS_REGION = 0.02  # nm: |xi| below this counts as transition-state region
RESTRAINT_K = 1e6  # kJ/mol/nm^2 at xi = 0


def restrained(force_fn, centre):
    bias = harmonic_bias(PROTON_TRANSFER, centre, RESTRAINT_K)

    def total(positions):
        energy, forces = force_fn(positions)
        bias_energy, bias_forces = bias(positions)
        return energy + bias_energy, forces + bias_forces
    return total


def stationary_points(force_fn, positions):
    """Minimum and transition state (nm) of one potential, from the PDB structure."""
    minimum = optimize(positions, force_fn, fmax=0.1)
    transition_state = optimize(minimum, restrained(force_fn, 0.0), fmax=0.1)
    return minimum, transition_state


def barrier(force_fn, minimum, transition_state):
    return force_fn(transition_state)[0] - force_fn(minimum)[0]


def main():
    parser = argparse.ArgumentParser(description="transition-state errors and barrier of a dimer model")
    parser.add_argument("--model", default="model", help="model folder, relative to this file's (default: model)")
    parser.add_argument("--datasets", nargs="+", default=["data/dimer-gfn2.h5"],
                        help="the model's training datasets in the order of its config (relative to this folder)")
    args = parser.parse_args()
    folder = HERE / args.model
    model = rebuild(folder / "model.pt").double()
    data = concatenate([load_dataset(HERE / name).labelled() for name in args.datasets])
    test = data.subset(json.loads((folder / "split.json").read_text())["test"])
    xi = np.array([PROTON_TRANSFER(x)[0] for x in test.positions])
    in_region = np.flatnonzero(np.abs(xi) < TS_REGION)
    result = {"transition_state_region": dict(errors(model, test.subset(in_region)), max_abs_xi_nm=TS_REGION)}

    species, _, positions = molecule_from_pdb(HERE / "formic-acid-dimer.pdb")
    xtb, network = calculator_forces(XTBCalculator(), species), potential_forces(model, species)
    xtb_points, model_points = stationary_points(xtb, positions), stationary_points(network, positions)
    result["barrier_kj_per_mol"] = {
        "gfn2_xtb": barrier(xtb, *xtb_points),
        "model_at_xtb_geometries": barrier(network, *xtb_points),
        "model_at_model_geometries": barrier(network, *model_points),
    }
    result["xi_nm"] = {"xtb_minimum": PROTON_TRANSFER(xtb_points[0])[0],
                       "model_minimum": PROTON_TRANSFER(model_points[0])[0],
                       "xtb_transition_state": PROTON_TRANSFER(xtb_points[1])[0],
                       "model_transition_state": PROTON_TRANSFER(model_points[1])[0]}
    result["largest_unrestrained_force_at_transition_state_kj_per_mol_nm"] = {
        "gfn2_xtb": float(np.abs(xtb(xtb_points[1])[1]).max()),
        "model": float(np.abs(network(model_points[1])[1]).max())}
    (folder / "evaluation.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
