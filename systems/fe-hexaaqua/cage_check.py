"""Does the network give the ion's cage the curvature GFN2-xTB gives it, along its own dynamics?

For each cluster of a check_md.py file (GFN2-xTB-labelled snapshots of a model's ML/MM dynamics;
by default check_md_round3.h5, seed 17, which model-round3 was not trained on): the 3x3 block of
the Hessian for the ion moving in its frozen cage of waters, K_ab = d2E / dx_a dx_b (kJ/mol/nm^2),
by central differences (STEP_NM) of the force on the ion, from GFN2-xTB (the whole cluster, charge
+3, sextet) and from the network (E_NN(Fe u B), all weights 1; E_NN(B) does not depend on the
ion). Its eigenvalues k give the cage frequencies nu = sqrt(k / m_Fe) / (2 pi c) in cm^-1, the
harmonic counterpart of the ion's band in spectrum.json. Frames where GFN2-xTB's SCF does not
converge at a displaced geometry are skipped and listed. Writes cage_check.json.
Run from the repository root (about 2 min):
    .venv/bin/python systems/fe-hexaaqua/cage_check.py [--model model-round3] [--data check_md_round3.h5]
"""

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

from mlmm.data.calculators import CalculationFailed, XTBCalculator
from mlmm.data.dataset import load_dataset
from mlmm.training.models import rebuild
from mlmm.units import SPEED_OF_LIGHT_CM_PER_PS

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from harmonic import MASSES  # noqa: E402  (this folder)
from make_dataset import CHARGE, MULTIPLICITY  # noqa: E402

STEP_NM = 0.001


def cage_block(force_on_ion, positions: np.ndarray) -> np.ndarray:
    """Symmetrised 3x3 Hessian block of atom 0 (kJ/mol/nm^2) from central differences of its force [3]."""
    block = np.empty((3, 3))
    for axis in range(3):
        plus, minus = positions.copy(), positions.copy()
        plus[0, axis] += STEP_NM
        minus[0, axis] -= STEP_NM
        block[:, axis] = -(force_on_ion(plus) - force_on_ion(minus)) / (2 * STEP_NM)
    return 0.5 * (block + block.T)


def cage_wavenumbers(block: np.ndarray) -> np.ndarray:
    """Ascending cage frequencies (cm^-1; negative where the curvature is negative) of the ion."""
    k = np.linalg.eigvalsh(block)
    omega = np.sqrt(np.abs(k) / MASSES[26])  # rad/ps
    return np.sign(k) * omega / (2 * math.pi * SPEED_OF_LIGHT_CM_PER_PS)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="model-round3", help="model folder (default model-round3)")
    parser.add_argument("--data", default="check_md_round3.h5", help="labelled clusters (default check_md_round3.h5)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    frames = load_dataset(HERE / args.data).labelled()
    network = rebuild(HERE / args.model / "model.pt").double()
    xtb = XTBCalculator()
    result = {"model": args.model, "data": args.data, "step_nm": STEP_NM, "frames": []}
    for f in range(frames.n_frames):
        mask = frames.mm_mask[f]
        species = np.concatenate([frames.species, frames.mm_species[f][mask]])
        positions = np.concatenate([frames.positions[f], frames.mm_positions[f][mask]])
        species_t = torch.as_tensor(species)
        ones = torch.ones(len(species), dtype=torch.float64)

        def network_force(x):
            x = torch.tensor(x, requires_grad=True)
            energy = network.weighted_energy_and_charges(species_t, x, ones, float(CHARGE))[0]
            return -torch.autograd.grad(energy, x)[0][0].numpy()

        def reference_force(x):
            return xtb.compute(species, x, CHARGE, MULTIPLICITY)["forces"][0]

        try:
            reference = cage_wavenumbers(cage_block(reference_force, positions))
        except CalculationFailed as error:  # the open-shell SCF fails at some displaced geometries
            result["failed"] = result.get("failed", []) + [{"frame": f, "error": str(error)}]
            print(f"frame {f}: skipped, {error}", flush=True)
            continue
        predicted = cage_wavenumbers(cage_block(network_force, positions))
        result["frames"].append({"waters": int(mask.sum() // 3), "gfn2_cm": reference.round(1).tolist(),
                                 "network_cm": predicted.round(1).tolist()})
        print(f"frame {f}: GFN2-xTB {reference.round(0)}, network {predicted.round(0)} cm^-1", flush=True)
    reference = np.array([frame["gfn2_cm"] for frame in result["frames"]])
    predicted = np.array([frame["network_cm"] for frame in result["frames"]])
    result["summary"] = {"frames": len(reference), "gfn2_mean_cm": reference.mean(0).round(1).tolist(),
                         "network_mean_cm": predicted.mean(0).round(1).tolist(),
                         "mean_abs_difference_cm": float(np.abs(predicted - reference).mean().round(1)),
                         "mean_signed_difference_cm": float((predicted - reference).mean().round(1)),
                         "gfn2_range_cm": [float(reference.min()), float(reference.max())]}
    (HERE / "cage_check.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result["summary"], indent=2))


if __name__ == "__main__":
    main()
