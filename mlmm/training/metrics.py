"""Losses and error metrics of a network against reference labels (OpenMM units)."""

from __future__ import annotations

from typing import Dict, Optional

import numpy as np
import torch

from mlmm.data.dataset import Dataset
from mlmm.embedding.modules import OUTER_COUPLINGS
from mlmm.training.batching import buffer_frame_outputs, buffer_species, frame_outputs


def frame_tensors(dataset: Dataset, dtype: torch.dtype) -> Dict[str, torch.Tensor]:
    """The dataset's positions and labels as tensors (absent labels are left out)."""
    tensors = {"species": torch.as_tensor(dataset.species)}
    for name in ("positions", "energies", "forces", "dipoles", "charges", "mm_positions", "mm_charges", "mm_forces",
                 "mm_charge_changes", "outer_potential", "mm_outer_potential"):
        value = getattr(dataset, name)
        if value is not None:
            tensors[name] = torch.as_tensor(value, dtype=torch.float64 if name == "energies" else dtype)
    if dataset.mm_mask is not None:
        tensors["mm_mask"] = torch.as_tensor(dataset.mm_mask)
    if dataset.mm_species is not None and dataset.n_frames:  # buffer data: one species row for all frames
        tensors["buffer_species"] = torch.as_tensor(buffer_species(dataset.mm_species, dataset.mm_mask))
    return tensors


#: Tensors of :func:`frame_tensors` that are not per frame.
SHARED_TENSORS = ("species", "buffer_species")


def loss(outputs: Dict[str, torch.Tensor], batch: Dict[str, torch.Tensor], weights: Dict[str, float],
         coupling: Optional[str] = None) -> torch.Tensor:
    """Weighted mean squared errors, summed over committee members.

    ``weights``: energy ((kJ/mol)^-2), force (nm^2 (kJ/mol)^-2, per component; also on the
    buffer atoms of buffer data), dipole ((e nm)^-2, per component), charge (e^-2, per atom),
    charge_change (e^-2, per buffer atom, on the charge changes of buffer data), field_energy
    ((kJ/mol)^-2, optional: on the energy plus the outer coupling's Coulomb energy of buffer data
    labelled in a field, :func:`outer_coupling_error`, for the buffer scheme's ``coupling``) and
    coupling_energy ((kJ/mol)^-2, optional: on that Coulomb energy alone). A term is used when its
    weight is positive and the batch has that label.
    """
    energy_error = outputs["energy"].double() - batch["energies"]
    terms = energy_error.pow(2).mean(-1) * weights["energy"]
    if weights["field_energy"] > 0 or weights["coupling_energy"] > 0:
        coupling_error = outer_coupling_error(outputs, batch, coupling)
        terms = terms + (energy_error + coupling_error).pow(2).mean(-1) * weights["field_energy"]
        terms = terms + coupling_error.pow(2).mean(-1) * weights["coupling_energy"]
    if weights["force"] > 0:
        terms = terms + (outputs["forces"] - batch["forces"]).pow(2).mean((-3, -2, -1)) * weights["force"]
    if weights["dipole"] > 0 and "dipole" in outputs and "dipoles" in batch:
        terms = terms + (outputs["dipole"] - batch["dipoles"]).pow(2).mean((-2, -1)) * weights["dipole"]
    if weights["charge"] > 0 and "charges" in outputs and "charges" in batch:
        terms = terms + (outputs["charges"] - batch["charges"]).pow(2).mean((-2, -1)) * weights["charge"]
    if weights["force"] > 0 and "mm_forces" in outputs and "mm_forces" in batch:  # buffer atoms, padding masked
        real = batch["mm_mask"].to(outputs["mm_forces"].dtype).unsqueeze(-1)
        squared = ((outputs["mm_forces"] - batch["mm_forces"].nan_to_num()) * real).pow(2).sum((-3, -2, -1))
        terms = terms + squared / (3.0 * real.sum()).clamp_min(1.0) * weights["force"]
    if weights["charge_change"] > 0 and "mm_charge_changes" in outputs and "mm_charge_changes" in batch:
        real = batch["mm_mask"].to(outputs["mm_charge_changes"].dtype)
        squared = ((outputs["mm_charge_changes"] - batch["mm_charge_changes"].nan_to_num()) * real).pow(2).sum((-2, -1))
        terms = terms + squared / real.sum().clamp_min(1.0) * weights["charge_change"]
    return terms.sum()


def outer_coupling_error(outputs: Dict[str, torch.Tensor], batch: Dict[str, torch.Tensor], coupling: str
                         ) -> torch.Tensor:
    """Error [M, B] (kJ/mol) of the buffer scheme's Coulomb energy sum_a q_a phi_a of the coupled charges
    with the point charges beyond the buffer (:func:`mlmm.data.calculators.coupled_charges`) when the
    network's charges replace the reference's: the ML region's charges shifted to its total charge
    (``"ml-charges"``) or those and the buffer atoms' charge changes (``"charge-difference"``), at the
    outer potentials phi (kJ/mol/e) of the batch (``outer_potential``, ``mm_outer_potential``)."""
    if "outer_potential" not in batch or "charges" not in outputs or "charges" not in batch:
        raise ValueError("the field-energy loss needs buffer data labelled in a field with the outer potentials "
                         "(outer_potential, mm_outer_potential) and charges")
    charge_errors = outputs["charges"].double() - batch["charges"].double()
    if coupling == "ml-charges":  # the shift to the total charge moves both alike
        charge_errors = charge_errors - charge_errors.mean(-1, keepdim=True)
        return (charge_errors * batch["outer_potential"].double()).sum(-1)
    if coupling != "charge-difference":
        raise ValueError(f"the field-energy loss is for buffer data labelled for an outer coupling "
                         f"{OUTER_COUPLINGS}, got {coupling!r}")
    real = batch["mm_mask"].double()
    change_errors = (outputs["mm_charge_changes"].double() - batch["mm_charge_changes"].double().nan_to_num()) * real
    return ((charge_errors * batch["outer_potential"].double()).sum(-1)
            + (change_errors * batch["mm_outer_potential"].double()).sum(-1))


def environment_tensors(model, dataset: Dataset, frames, dtype: torch.dtype) -> Dict[str, torch.Tensor]:
    """``mm_positions`` and ``mm_charges`` of ``frames`` for a model of the electrostatic embedding.

    Empty for other models; an environment model given a dataset without MM charges is an error.
    """
    if not getattr(model, "uses_environment", False):
        return {}
    if not dataset.has_environment or dataset.mm_charges is None:
        raise ValueError("an electrostatic embedding model needs QM/MM data: the dataset has no mm_positions "
                         "and mm_charges")
    return {"mm_positions": torch.as_tensor(dataset.mm_positions[frames], dtype=dtype),
            "mm_charges": torch.as_tensor(dataset.mm_charges[frames], dtype=dtype)}


def predict_frames(model, dataset: Dataset, batch_size: int = 64) -> Dict[str, np.ndarray]:
    """Committee-mean energies [F], forces [F, n, 3], and dipoles/charges when the model has them,
    plus the per-atom committee force spread ``sigma_forces`` [F, n] (kJ/mol/nm) for committees."""
    dtype = model.energy_shift.dtype
    species = torch.as_tensor(dataset.species)
    buffer = dataset.mm_species is not None and dataset.n_frames > 0
    if buffer:
        species_row = torch.as_tensor(buffer_species(dataset.mm_species, dataset.mm_mask))
    collected: Dict[str, list] = {}
    for start in range(0, dataset.n_frames, batch_size):
        frames = slice(start, start + batch_size)
        positions = torch.as_tensor(dataset.positions[frames], dtype=dtype)
        if buffer:
            outputs = buffer_frame_outputs(
                model, species, positions, torch.as_tensor(dataset.mm_positions[frames], dtype=dtype), species_row,
                torch.as_tensor(dataset.mm_mask[frames]), float(dataset.total_charge), create_graph=False)
        else:
            outputs = frame_outputs(model, species, positions, float(dataset.total_charge), create_graph=False,
                                    **environment_tensors(model, dataset, frames, dtype))
        for key, value in outputs.items():
            collected.setdefault(key, []).append(value.mean(0).detach().double().numpy())
        if model.n_members > 1:
            spread = outputs["forces"].detach().double().var(0).sum(-1).sqrt()
            collected.setdefault("sigma_forces", []).append(spread.numpy())
    return {key: np.concatenate(values) for key, values in collected.items()}


def errors(model, dataset: Dataset, batch_size: int = 64, predicted: Optional[dict] = None) -> Dict[str, float]:
    """MAE and RMSE of energies (kJ/mol), forces (kJ/mol/nm, per component; ``mm_forces`` on the
    buffer atoms of buffer data), dipoles (e nm) and the buffer atoms' charge changes (e)."""
    predicted = predicted if predicted is not None else predict_frames(model, dataset, batch_size)
    result = {"n_frames": int(dataset.n_frames)}
    pairs = {"energy": ("energy", dataset.energies), "forces": ("forces", dataset.forces),
             "dipole": ("dipole", dataset.dipoles), "mm_forces": ("mm_forces", dataset.mm_forces),
             "mm_charge_changes": ("mm_charge_changes", dataset.mm_charge_changes)}
    for name, (key, reference) in pairs.items():
        if reference is None or key not in predicted:
            continue
        difference = predicted[key] - reference
        if name.startswith("mm_"):  # real buffer atoms only
            difference = difference[dataset.mm_mask]
            if not difference.size:
                continue
        result[f"{name}_mae"] = float(np.abs(difference).mean())
        result[f"{name}_rmse"] = float(np.sqrt((difference ** 2).mean()))
    return result
