"""How well each embedding scheme reproduces QM/MM interaction energies and forces.

On QM/MM frames (ML region + MM point charges) with a gas-phase twin of each frame, the
reference is E_int = E_QM/MM - E_QM (kJ/mol) and dF = F_QM/MM - F_QM on the ML atoms
(kJ/mol/nm). Each scheme's ML-MM electrostatics are evaluated in the same environment (the
frames' MM charges, already weighted by the environment switch):

- ``mechanical``: k_e sum_ij q_i q_j / r_ij with the force-field charges q_i of the ML atoms;
- ``mechanical-ml-charges``: the same with the vacuum potential's charges q_i(R) (their
  dq/dR terms included in the forces);
- ``electrostatic``: the model's static + induced embedding energy.

Lennard-Jones terms are the same force field in every scheme and are not part of E_int.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence

import numpy as np
import torch

from mlmm.data.dataset import Dataset
from mlmm.units import COULOMB_CONSTANT

#: Energy (kJ/mol) of the ML region in the field: (species, ML positions, MM positions, MM charges) -> scalar.
InteractionFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def coulomb_interaction(charges_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> InteractionFn:
    """Bare ML-MM Coulomb energy with ML charges from ``charges_fn(species, positions)`` (e)."""
    def energy(species, x, mm_x, mm_q):
        q = charges_fn(species, x)
        distances = torch.linalg.norm(x.unsqueeze(1) - mm_x.unsqueeze(0), dim=-1)
        return COULOMB_CONSTANT * (q.unsqueeze(1) * mm_q.unsqueeze(0) / distances).sum()
    return energy


def fixed_charges(charges: Sequence[float]) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Force-field charges (e), the same for every geometry."""
    fixed = torch.as_tensor(list(charges), dtype=torch.float64)
    return lambda species, x: fixed


def potential_charges(potential, total_charge: float) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Charges (e) of a potential that exports ``energy_and_charges``."""
    return lambda species, x: potential.energy_and_charges(species, x, total_charge)[1].to(x.dtype)


def electrostatic_interaction(potential, total_charge: float) -> InteractionFn:
    """The embedding energy of an :class:`~mlmm.potentials.ElectrostaticPotential` (vacuum part excluded)."""
    def energy(species, x, mm_x, mm_q):
        return potential.embedding_outputs(species, x, mm_x, mm_q, total_charge)["energy"].to(x.dtype)
    return energy


def energy_and_forces(energy: Callable[[torch.Tensor], torch.Tensor], positions: np.ndarray
                      ) -> tuple[float, np.ndarray]:
    """``energy(x)`` (kJ/mol) at the ML positions [n, 3] (nm) and its forces -dE/dx (kJ/mol/nm) by autograd."""
    x = torch.tensor(positions, dtype=torch.float64, requires_grad=True)
    value = energy(x)
    (gradient,) = torch.autograd.grad(value, x)
    return float(value.detach()), -gradient.numpy()


def interaction_predictions(interaction: InteractionFn, frames: Dataset) -> Dict[str, np.ndarray]:
    """E_int [F] (kJ/mol) and dF on the ML atoms [F, n, 3] (kJ/mol/nm) of one scheme, frame by frame."""
    species = torch.as_tensor(frames.species)
    energies, forces = [], []
    for k in range(frames.n_frames):
        real = frames.mm_mask[k]
        mm_x = torch.tensor(frames.mm_positions[k][real], dtype=torch.float64)
        mm_q = torch.tensor(frames.mm_charges[k][real], dtype=torch.float64)
        energy, force = energy_and_forces(lambda x: interaction(species, x, mm_x, mm_q), frames.positions[k])
        energies.append(energy)
        forces.append(force)
    return {"energy": np.array(energies), "forces": np.array(forces)}


def scheme_errors(schemes: Dict[str, InteractionFn], embedded: Dataset, vacuum: Dataset,
                  frames: Optional[Sequence[int]] = None) -> Dict[str, Dict[str, float]]:
    """Mean error (predicted - reference), MAE and RMSE of E_int (kJ/mol) and MAE and RMSE of dF on ML atoms
    (kJ/mol/nm, per component) for each scheme.

    ``embedded`` and ``vacuum`` hold the same geometries in the same order; ``frames`` selects
    (e.g. the held-out test frames), default all. Also reports the reference's mean and spread.
    """
    if not np.allclose(embedded.positions, vacuum.positions, atol=1e-9):
        raise ValueError("the QM/MM and gas-phase datasets must hold the same geometries in the same order")
    indices = np.arange(embedded.n_frames) if frames is None else np.asarray(frames)
    selected = embedded.subset(indices)
    reference_energy = selected.energies - vacuum.energies[indices]
    reference_forces = selected.forces - vacuum.forces[indices]
    result = {"reference": {"n_frames": int(len(indices)), "interaction_mean": float(reference_energy.mean()),
                            "interaction_std": float(reference_energy.std())}}
    for name, interaction in schemes.items():
        predicted = interaction_predictions(interaction, selected)
        result[name] = interaction_errors(predicted["energy"], reference_energy, predicted["forces"],
                                          reference_forces)
    return result


def interaction_errors(energy, reference_energy, forces, reference_forces) -> Dict[str, float]:
    """Mean error (predicted - reference), MAE and RMSE of E_int [F] (kJ/mol), MAE and RMSE of the forces
    [F, n, 3] (kJ/mol/nm, per component)."""
    energy_error = np.asarray(energy) - np.asarray(reference_energy)
    force_error = np.asarray(forces) - np.asarray(reference_forces)
    return {"energy_mean_error": float(energy_error.mean()), "energy_mae": float(np.abs(energy_error).mean()),
            "energy_rmse": float(np.sqrt((energy_error ** 2).mean())), "forces_mae": float(np.abs(force_error).mean()),
            "forces_rmse": float(np.sqrt((force_error ** 2).mean()))}


def assess_schemes(embedded_path, vacuum_path, model_directory, vacuum_model_path,
                   force_field_charges: Sequence[float], total_charge: float = 0.0,
                   held_out: bool = False) -> Dict[str, Dict[str, float]]:
    """Errors of every scheme on the test frames of an electrostatic model's training run.

    Reads the QM/MM and gas-phase datasets, the model (``model_directory/model.pt``) and its
    ``split.json``; writes ``model_directory/schemes.json`` and returns its content. With ``held_out``
    the datasets hold frames of which none was used in training: all of them are assessed, written to
    ``model_directory/schemes-held-out.json``.
    """
    from mlmm.data.dataset import load_dataset
    from mlmm.potentials import load_potential

    directory = Path(model_directory)
    embedded, vacuum = load_dataset(embedded_path).labelled(), load_dataset(vacuum_path).labelled()
    if embedded.n_frames != vacuum.n_frames:
        raise ValueError(f"{embedded_path} has {embedded.n_frames} labelled frames, {vacuum_path} "
                         f"{vacuum.n_frames}; the split indices of the model assume matching frames")
    test = list(range(embedded.n_frames)) if held_out else json.loads((directory / "split.json").read_text())["test"]
    vacuum_model, _ = load_potential(vacuum_model_path)
    model, _ = load_potential(directory / "model.pt")
    schemes = {"mechanical": coulomb_interaction(fixed_charges(force_field_charges)),
               "mechanical-ml-charges": coulomb_interaction(potential_charges(vacuum_model, total_charge)),
               "electrostatic": electrostatic_interaction(model, total_charge)}
    result = scheme_errors(schemes, embedded, vacuum, test)
    (directory / ("schemes-held-out.json" if held_out else "schemes.json")).write_text(json.dumps(result, indent=2))
    return result


def assess_system_schemes(folder, molecule: str, force_field_charges: Sequence[float],
                          held_out: bool = False) -> Dict[str, Dict[str, float]]:
    """:func:`assess_schemes` for a system's embedding folder laid out as in ``systems/``: the
    electrostatic model in ``folder/model``, the vacuum model in ``folder/../model``, the test frames of
    ``folder/data/MOLECULE-tip3p-gfn2.h5`` or, with ``held_out``, all frames of
    ``MOLECULE-held-out-gfn2.h5`` (each with its ``-vacuum.h5`` twin). Prints the frame count, the
    reference E_int (kJ/mol) and the Markdown table; returns the errors."""
    folder = Path(folder)
    name = f"{molecule}-{'held-out' if held_out else 'tip3p'}-gfn2"
    result = assess_schemes(folder / "data" / f"{name}.h5", folder / "data" / f"{name}-vacuum.h5", folder / "model",
                            folder.parent / "model" / "model.pt", force_field_charges, held_out=held_out)
    frames = "held-out" if held_out else "test"
    print(f"{result['reference']['n_frames']} {frames} frames, reference E_int "
          f"{result['reference']['interaction_mean']:.1f} +- {result['reference']['interaction_std']:.1f} kJ/mol")
    print(markdown_table(result))
    return result


def markdown_table(result: Dict[str, Dict[str, float]]) -> str:
    """The errors of :func:`scheme_errors` as a Markdown table (one row per scheme)."""
    mechanical = result["mechanical"]["energy_mae"]
    rows = ["| scheme | E_int MAE / RMSE (kJ/mol) | E_int MAE / mechanical "
            "| force MAE / RMSE on ML atoms (kJ/mol/nm) |",
            "|---|---|---|---|"]
    for name, errors in result.items():
        if name == "reference":
            continue
        rows.append(f"| {name} | {errors['energy_mae']:.3f} / {errors['energy_rmse']:.3f} | "
                    f"{errors['energy_mae'] / mechanical:.3f} | {errors['forces_mae']:.2f} / "
                    f"{errors['forces_rmse']:.2f} |")
    return "\n".join(rows)
