"""The buffer embedding's interaction energy on held-out solvent snapshots against GFN2-xTB.

For every test snapshot of the buffer model's split: the buffer B (TIP3P waters with the oxygen
within 0.5 nm of the solute, as in make_dataset.py) and the outer waters O (the rest of the
snapshot's environment, with the embedding-switched charges stored in
../embedding/data/water-tip3p-gfn2.h5). Reference: E_int = E(I u B; O charges) - E(B; O charges)
- E(I), GFN2-xTB with the O charges as external point charges. The buffer scheme's value, every
buffer water at full weight: E_NN(I u B) - E_NN(B) - E_NN(I) + k_e sum_i q_i sum_j q_j / r_ij with
the network charges of I (shifted to zero net charge) and the O charges. Forces: on the solute
atoms. Writes model/interaction.json. Run from the repository root:
    .venv/bin/python systems/water/buffer/evaluate.py
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch

from mlmm.data.calculators import XTBCalculator
from mlmm.data.dataset import load_dataset
from mlmm.potentials import load_potential
from mlmm.units import COULOMB_CONSTANT

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from make_dataset import BUFFER_CUTOFF, SNAPSHOTS  # noqa: E402  (this folder's recipe)


def split_environment(positions, mm_positions, mm_charges):
    """Buffer waters (positions [b, 3]) and outer charges ([o, 3], [o]) of one snapshot."""
    waters, charges = mm_positions.reshape(-1, 3, 3), mm_charges.reshape(-1, 3)
    nearest = np.linalg.norm(waters[:, None, 0] - positions[None], axis=-1).min(1)
    inside = nearest < BUFFER_CUTOFF
    return waters[inside].reshape(-1, 3), waters[~inside].reshape(-1, 3), charges[~inside].reshape(-1)


def network_interaction(model, x_ml, x_buffer, x_outer, q_outer):
    """Buffer-scheme E_int (kJ/mol) and its forces on the solute (kJ/mol/nm)."""
    x_ml = torch.tensor(x_ml, requires_grad=True)
    species_ml = torch.tensor([8, 1, 1])
    species_buffer = torch.tensor([8, 1, 1] * (len(x_buffer) // 3))
    whole_x = torch.cat([x_ml, torch.tensor(x_buffer)])
    ones = torch.ones(len(whole_x), dtype=torch.float64)
    whole, charges = model.weighted_energy_and_charges(torch.cat([species_ml, species_buffer]), whole_x, ones, 0.0)
    buffer, _ = model.weighted_energy_and_charges(species_buffer, whole_x[3:], ones[3:], 0.0)
    alone, _ = model.weighted_energy_and_charges(species_ml, x_ml, ones[:3], 0.0)
    q_ml = charges[:3] - charges[:3].sum() / 3
    r = torch.linalg.norm(x_ml.unsqueeze(1) - torch.tensor(x_outer).unsqueeze(0), dim=-1)
    coulomb = COULOMB_CONSTANT * (q_ml.unsqueeze(1) * torch.tensor(q_outer).unsqueeze(0) / r).sum()
    energy = whole - buffer - alone + coulomb
    (gradient,) = torch.autograd.grad(energy, x_ml)
    return float(energy.detach()), -gradient.numpy()


def main():
    snapshots = load_dataset(SNAPSHOTS / "water-tip3p-gfn2.h5")
    vacuum = load_dataset(SNAPSHOTS / "water-tip3p-gfn2-vacuum.h5")
    test = [k for k in json.loads((HERE / "model" / "split.json").read_text())["test"] if k < snapshots.n_frames]
    model, _ = load_potential(HERE / "model" / "model.pt")
    xtb = XTBCalculator()
    reference, predicted, reference_forces, predicted_forces = [], [], [], []
    for k in test:
        real = snapshots.mm_mask[k]
        x_ml = snapshots.positions[k]
        x_buffer, x_outer, q_outer = split_environment(x_ml, snapshots.mm_positions[k][real],
                                                       snapshots.mm_charges[k][real])
        n_buffer = len(x_buffer) // 3
        whole = xtb.compute([8, 1, 1] * (1 + n_buffer), np.vstack([x_ml, x_buffer]), 0, 1, x_outer, q_outer)
        buffer = xtb.compute([8, 1, 1] * n_buffer, x_buffer, 0, 1, x_outer, q_outer)
        reference.append(whole["energy"] - buffer["energy"] - vacuum.energies[k])
        reference_forces.append(whole["forces"][:3] - vacuum.forces[k])
        energy, forces = network_interaction(model, x_ml, x_buffer, x_outer, q_outer)
        predicted.append(energy)
        predicted_forces.append(forces)
    reference, predicted = np.array(reference), np.array(predicted)
    force_error = np.array(predicted_forces) - np.array(reference_forces)
    result = {"n_frames": len(test), "interaction_mean": float(reference.mean()),
              "interaction_std": float(reference.std()),
              "energy_mae": float(np.abs(predicted - reference).mean()),
              "energy_rmse": float(np.sqrt(((predicted - reference) ** 2).mean())),
              "forces_mae": float(np.abs(force_error).mean()), "forces_rmse": float(np.sqrt((force_error ** 2).mean()))}
    (HERE / "model" / "interaction.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
