"""How well a buffer-embedding network reproduces the QM interaction of the ML region with its solvent.

On solvent snapshots (ML region I with a labelled gas-phase twin, and an MM environment of one
neutral solvent stored molecule by molecule with its embedding-switched charges), the buffer B
is every molecule whose anchor (first atom) lies within the buffer cutoff of I and the outer
region O the rest. Reference (a QM program with O as external point charges):

    E_int = E(I u B; O) - E(B; O) - E(I),

and its forces on the atoms of I minus the gas-phase forces. The buffer scheme, every buffer
molecule at full weight:

    E_NN(I u B) - E_NN(B) - E_NN(I) + k_e sum_a dq_a sum_{j in O} q_j / r_aj,

with the network's charges dq_a of its outer coupling
(:func:`~mlmm.data.calculators.coupled_charges`: I's charges in I u B shifted to I's total
charge, or the charge changes of every atom of I u B). The same expression with the QM program's
own vacuum cluster energies and charges (its "scheme limit") separates what the scheme's form
leaves out (O polarizing I u B beyond the fixed vacuum-cluster charges) from the network's error.
The limit's error, reference minus limit, is the outer polarization: a network trained in the
field of O can learn its mean, not the part that varies with where the molecules of O are, which
it does not see. Energies kJ/mol, forces kJ/mol/nm, lengths nm.
"""

from __future__ import annotations

from typing import Dict, Sequence

import numpy as np
import torch

from mlmm.data.calculators import coupled_charges, outer_coulomb
from mlmm.data.dataset import Dataset


def split_environment(positions: np.ndarray, mm_positions: np.ndarray, mm_charges: np.ndarray,
                      molecule_size: int, buffer_cutoff: float):
    """Buffer atoms [b, 3] and outer positions [o, 3] and charges [o] of one snapshot's environment."""
    molecules, charges = mm_positions.reshape(-1, molecule_size, 3), mm_charges.reshape(-1, molecule_size)
    nearest = np.linalg.norm(molecules[:, None, 0] - positions[None], axis=-1).min(1)
    inside = nearest < buffer_cutoff
    return molecules[inside].reshape(-1, 3), molecules[~inside].reshape(-1, 3), charges[~inside].reshape(-1)


def network_interaction(model, species: Sequence[int], buffer_species: Sequence[int], total_charge: float,
                        x_ml: np.ndarray, x_buffer: np.ndarray, x_outer: np.ndarray, q_outer: np.ndarray,
                        outer_coupling: str = "ml-charges"):
    """The buffer scheme's E_int (kJ/mol), its forces on I (kJ/mol/nm) and the network's coupled charges
    of I u B (e, as they enter the outer Coulomb term), every buffer molecule at weight 1."""
    n = len(species)
    x_ml = torch.tensor(x_ml, dtype=torch.float64, requires_grad=True)
    species_ml, species_buffer = torch.as_tensor(list(species)), torch.as_tensor(list(buffer_species))
    whole_x = torch.cat([x_ml, torch.as_tensor(x_buffer, dtype=torch.float64)])
    ones = torch.ones(len(whole_x), dtype=torch.float64)
    whole, charges = model.weighted_energy_and_charges(torch.cat([species_ml, species_buffer]), whole_x, ones,
                                                       total_charge)
    buffer, buffer_charges = model.weighted_energy_and_charges(species_buffer, whole_x[n:], ones[n:], 0.0) \
        if len(species_buffer) else (torch.zeros_like(whole), charges[n:] * 0.0)
    alone = model.weighted_energy_and_charges(species_ml, x_ml, ones[:n], total_charge)[0]
    coupled = coupled_charges(outer_coupling, charges.to(torch.float64), buffer_charges.to(torch.float64),
                              total_charge)
    energy = whole - buffer - alone + outer_coulomb(whole_x, coupled, x_outer, q_outer)
    (gradient,) = torch.autograd.grad(energy, x_ml)
    return float(energy.detach()), -gradient.numpy(), coupled.detach().numpy()


def buffer_interaction_errors(model, snapshots: Dataset, vacuum: Dataset, frames: Sequence[int], calculator,
                              buffer_cutoff: float, molecule_species: Sequence[int],
                              outer_coupling: str = "ml-charges") -> Dict[str, float]:
    """MAE, RMSE and mean (signed) error of the buffer scheme's E_int (kJ/mol), MAE and RMSE of its
    forces on I (kJ/mol/nm) on ``frames``.

    ``snapshots`` holds the solvent environments (switched charges), ``vacuum`` the labelled
    gas-phase twins of the same geometries; ``calculator`` (a
    :class:`~mlmm.data.calculators.ReferenceCalculator`) computes the reference. Also the
    energy MAE of the scheme limit (module docstring) against the reference, the network's energy
    MAE against that limit, and the MAE (e) of the network's coupled charges of I u B (those of
    ``outer_coupling``) against the QM program's, for I and for B (``buffer_charge_changes_mae``, 0
    for ``"ml-charges"``, which couples no charges of B). The standard deviation of the outer polarization (reference
    minus limit) over ``frames`` bounds the part a network of I u B alone cannot learn (some of it
    follows the geometry of I u B), with its correlation with the scheme's error; the network's MAE
    against the limit plus the mean outer polarization of ``frames`` is its error were the varying
    part known. The error splits into the coupling's charge error, the Coulomb energy with O of
    the network's coupled charges less the QM program's in the field (``coupling_charge_energy_*``),
    and the rest, the network's energies of the clusters and of I alone
    (``network_energy_error_mae``).
    """
    size, charge = len(molecule_species), snapshots.total_charge
    reference, predicted, reference_forces, predicted_forces, limit, charge_errors = [], [], [], [], [], []
    change_errors, coupling_errors = [], []
    for k in frames:
        real = snapshots.mm_mask[k]
        x_ml = snapshots.positions[k]
        x_buffer, x_outer, q_outer = split_environment(x_ml, snapshots.mm_positions[k][real],
                                                       snapshots.mm_charges[k][real], size, buffer_cutoff)
        buffer_species = list(molecule_species) * (len(x_buffer) // size)
        cluster_species, cluster = list(snapshots.species) + buffer_species, np.vstack([x_ml, x_buffer])
        whole = calculator.compute(cluster_species, cluster, charge, snapshots.multiplicity, x_outer, q_outer)
        buffer = calculator.compute(buffer_species, x_buffer, 0, 1, x_outer, q_outer)
        reference.append(whole["energy"] - buffer["energy"] - vacuum.energies[k])
        whole_alone = calculator.compute(cluster_species, cluster, charge, snapshots.multiplicity)
        buffer_alone = calculator.compute(buffer_species, x_buffer, 0, 1)
        qm_charges = coupled_charges(outer_coupling, whole_alone["charges"], buffer_alone["charges"], float(charge))
        limit.append(whole_alone["energy"] - buffer_alone["energy"] - vacuum.energies[k] + float(outer_coulomb(
            torch.as_tensor(cluster), torch.as_tensor(qm_charges), x_outer, q_outer)))
        reference_forces.append(whole["forces"][:len(x_ml)] - vacuum.forces[k])
        energy, forces, charges = network_interaction(model, snapshots.species, buffer_species, float(charge), x_ml,
                                                      x_buffer, x_outer, q_outer, outer_coupling)
        field_charges = coupled_charges(outer_coupling, whole["charges"], buffer["charges"], float(charge))
        coupling_errors.append(float(outer_coulomb(torch.as_tensor(cluster), torch.as_tensor(charges - field_charges),
                                                   x_outer, q_outer)))
        charge_errors.append((charges - qm_charges)[:len(x_ml)])
        change_errors.extend((charges - qm_charges)[len(x_ml):])
        predicted.append(energy)
        predicted_forces.append(forces)
    reference, predicted, limit = np.array(reference), np.array(predicted), np.array(limit)
    coupling = np.array(coupling_errors)
    polarization = reference - limit
    force_error = np.array(predicted_forces) - np.array(reference_forces)
    return {"n_frames": len(reference), "interaction_mean": float(reference.mean()),
            "interaction_std": float(reference.std()), "energy_mae": float(np.abs(predicted - reference).mean()),
            "energy_mean_error": float((predicted - reference).mean()),
            "energy_rmse": float(np.sqrt(((predicted - reference) ** 2).mean())),
            "forces_mae": float(np.abs(force_error).mean()), "forces_rmse": float(np.sqrt((force_error ** 2).mean())),
            "scheme_limit_energy_mae": float(np.abs(limit - reference).mean()),
            "scheme_limit_energy_mean_error": float((limit - reference).mean()),
            "network_vs_limit_energy_mae": float(np.abs(predicted - limit).mean()),
            "outer_polarization_std": float(polarization.std()),
            "error_polarization_correlation": float(np.corrcoef(predicted - reference, polarization)[0, 1]),
            "network_vs_mean_polarized_limit_energy_mae": float(
                np.abs(predicted - limit - polarization.mean()).mean()),
            "coupling_charge_energy_mae": float(np.abs(coupling).mean()),
            "coupling_charge_energy_mean_error": float(coupling.mean()),
            "network_energy_error_mae": float(np.abs(predicted - reference - coupling).mean()),
            "charges_mae": float(np.abs(np.array(charge_errors)).mean()),
            "buffer_charge_changes_mae": float(np.abs(np.array(change_errors)).mean())}


def assess_buffer_model(snapshots_path, vacuum_path, model_directory, calculator, buffer_cutoff: float,
                        molecule_species: Sequence[int], held_out: bool = False) -> Dict[str, float]:
    """:func:`buffer_interaction_errors` on the test snapshots of a buffer network's training run.

    The network was trained on buffer clusters made from the snapshots in ``snapshots_path`` in
    their order (followed by other frames, e.g. lone-molecule frames); its ``split.json`` selects
    the test snapshots. Writes ``model_directory/interaction.json`` and returns its content. With
    ``held_out``, ``snapshots_path`` holds snapshots of which none was used in training: all of them
    are assessed, written to ``model_directory/interaction-held-out.json``.
    """
    import json
    from pathlib import Path

    from mlmm.data.dataset import load_dataset
    from mlmm.potentials import load_potential

    directory = Path(model_directory)
    snapshots, vacuum = load_dataset(snapshots_path), load_dataset(vacuum_path)
    if held_out:
        test = list(range(snapshots.n_frames))
    else:
        test = [k for k in json.loads((directory / "split.json").read_text())["test"] if k < snapshots.n_frames]
    model, metadata = load_potential(directory / "model.pt")
    coupling = metadata.get("extra", {}).get("buffer_outer_coupling", "ml-charges")
    result = buffer_interaction_errors(model, snapshots, vacuum, test, calculator, buffer_cutoff, molecule_species,
                                       coupling)
    result["outer_coupling"] = coupling
    (directory / ("interaction-held-out.json" if held_out else "interaction.json")).write_text(
        json.dumps(result, indent=2))
    return result
