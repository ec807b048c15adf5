"""Evaluate a network on a batch of frames in one call, using the committee axis.

mlmm networks carry a member axis M on every parameter and evaluate positions [M, n, 3].
For B frames of one molecule the parameters are repeated B times along that axis
(an expand, so gradients sum back onto the M originals) and the frames become "members":
one batched forward for M x B evaluations. This is exact when the neighbour lists do not
depend on the geometry, which holds without a cell and when every list holds all pairs
(n - 1 atoms fit each list's capacity); the radial functions vanish beyond each cutoff.
"""

from __future__ import annotations

from typing import Dict, Optional

import numpy as np
import torch

from mlmm.potentials.base import NeuralPotential


def frames_batchable(model: NeuralPotential, n_atoms: int) -> bool:
    """True when every neighbour list of ``model`` holds all pairs of an ``n_atoms`` molecule."""
    capacities = [model.max_neighbors, getattr(model, "max_angular_neighbors", model.max_neighbors)]
    return n_atoms - 1 <= min(capacities)


class _MemberOutputs(torch.nn.Module):
    """Calls ``member_outputs`` so that :func:`torch.func.functional_call` can swap parameters."""

    def __init__(self, model: NeuralPotential):
        super().__init__()
        self.model = model

    def forward(self, element_index, positions, total_charge: float, environment: Optional[tuple] = None):
        if environment is None:
            return self.model.member_outputs(element_index, positions, None, total_charge)
        return self.model.member_outputs(element_index, positions, None, total_charge, *environment)


def frame_outputs(model: NeuralPotential, species: torch.Tensor, positions: torch.Tensor,
                  total_charge: float = 0.0, forces: bool = True, create_graph: bool = True,
                  mm_positions: Optional[torch.Tensor] = None, mm_charges: Optional[torch.Tensor] = None
                  ) -> Dict[str, torch.Tensor]:
    """Outputs of every committee member for every frame.

    Parameters
    ----------
    model : NeuralPotential
        An mlmm network (eager, not scripted).
    species : Tensor [n] int64
        Atomic numbers, shared by all frames.
    positions : Tensor [B, n, 3]
        Frames in nm (no periodic cell).
    total_charge : float
        Total charge (e) of every frame.
    forces : bool
        Also return forces (kJ/mol/nm) by autograd.
    create_graph : bool
        Keep the graph of the forces, so a loss on them can be differentiated (training).
    mm_positions, mm_charges : Tensor [B, m, 3] (nm) and [B, m] (e), optional
        The MM environment of each frame, for models of the electrostatic embedding
        (padding atoms carry zero charge).

    Returns
    -------
    dict of Tensor
        ``energy`` [M, B] (kJ/mol), ``forces`` [M, B, n, 3] and, for charge models,
        ``charges`` [M, B, n] (e) and ``dipole`` [M, B, 3] (e nm).
    """
    n_frames, n_atoms = positions.shape[0], positions.shape[1]
    if not frames_batchable(model, n_atoms):
        raise ValueError(f"a {n_atoms}-atom molecule does not fit the model's neighbour lists as all pairs "
                         f"(max_neighbors={model.max_neighbors}); batched training needs max_neighbors >= "
                         f"{n_atoms - 1}")
    m = model.n_members
    element_index, x, _ = model.prepare(species, positions, None)
    x = x.detach().unsqueeze(0).expand(m, n_frames, n_atoms, 3).reshape(m * n_frames, n_atoms, 3)
    if forces:
        x = x.clone().requires_grad_(True)
    parameters = {f"model.{name}": p.unsqueeze(1).expand(p.shape[0], n_frames, *p.shape[1:]).reshape(
        m * n_frames, *p.shape[1:]) for name, p in model.named_parameters()}
    environment = None
    if mm_positions is not None and mm_charges is not None:
        environment = tuple(t.to(x.dtype).unsqueeze(0).expand(m, *t.shape).reshape(m * n_frames, *t.shape[1:])
                            for t in (mm_positions, mm_charges))
    outputs = torch.func.functional_call(_MemberOutputs(model), parameters,
                                         (element_index, x, float(total_charge), environment))
    result = {"energy": outputs["energy"].reshape(m, n_frames)}
    for key in ("charges", "dipole"):
        if key in outputs:
            result[key] = outputs[key].reshape(m, n_frames, *outputs[key].shape[1:])
    if forces:
        gradient = torch.autograd.grad(outputs["energy"].sum(), x, create_graph=create_graph)[0]
        result["forces"] = -gradient.reshape(m, n_frames, n_atoms, 3)
    return result


#: Distance (nm) along x at which padded buffer atoms (weight 0) are parked, 1 nm apart.
PARKING_NM = 10.0


class _WeightedOutputs(torch.nn.Module):
    """Calls ``member_outputs`` with atom weights, for :func:`torch.func.functional_call`."""

    def __init__(self, model: NeuralPotential):
        super().__init__()
        self.model = model

    def forward(self, element_index, positions, total_charge: float, weights):
        return self.model.member_outputs(element_index, positions, None, total_charge, weights)


def buffer_species(mm_species: np.ndarray, mm_mask: np.ndarray) -> np.ndarray:
    """The one atomic-number row [m] shared by every frame's buffer (real atoms first, then padding).

    Buffers of one solvent differ only in length, so all frames share the longest buffer's
    species and batch together; padding beyond it takes its first element (padding has weight
    0, its element does not matter). Raises ValueError for frames that do not fit that row.
    """
    longest = mm_species[int(np.argmax(mm_mask.sum(1)))]
    length = int(mm_mask.sum(1).max())
    for k, (row, mask) in enumerate(zip(mm_species, mm_mask)):
        if not np.array_equal(row[mask], longest[:mask.sum()]) or mask[:mask.sum()].sum() != mask.sum():
            raise ValueError(f"frame {k}: its buffer atoms are not a prefix of the longest buffer's "
                             f"({row[mask][:6]}... vs {longest[:6]}...); buffer training needs one solvent with "
                             "its atoms in the same order in every frame")
    fill = longest[0] if length else 1
    return np.concatenate([longest[:length], np.full(len(longest) - length, fill, dtype=longest.dtype)])


def buffer_frame_outputs(model: NeuralPotential, species: torch.Tensor, positions: torch.Tensor,
                         mm_positions: torch.Tensor, mm_species: torch.Tensor, mm_mask: torch.Tensor,
                         total_charge: float = 0.0, create_graph: bool = True) -> Dict[str, torch.Tensor]:
    """The buffer embedding's network difference E_NN(I u B) - E_NN(B) for a batch of frames.

    Parameters
    ----------
    species : Tensor [n]
        Atomic numbers of the ML region I.
    positions, mm_positions : Tensor [B, n, 3], [B, m, 3]
        I and the buffer B in nm (buffers padded to m atoms).
    mm_species : Tensor [m]
        Atomic numbers of the buffer atoms (:func:`buffer_species`).
    mm_mask : Tensor [B, m] bool
        Real buffer atoms; padding enters with weight 0, parked far apart.

    Returns
    -------
    dict of Tensor
        ``energy`` [M, B] (kJ/mol), ``forces`` [M, B, n, 3] and ``mm_forces`` [M, B, m, 3]
        (kJ/mol/nm, by autograd), ``charges`` [M, B, n] (e) of I in I u B and
        ``mm_charge_changes`` [M, B, m] (e), the buffer atoms' charges in I u B less those in B
        (0 for padding).
    """
    members, (n_frames, n) = model.n_members, positions.shape[:2]
    m = mm_positions.shape[1]
    used = int(torch.nonzero(mm_mask.any(0)).max()) + 1 if bool(mm_mask.any()) else 1
    if used < m:  # columns that are padding in every frame change nothing (weight 0): leave them out
        outputs = buffer_frame_outputs(model, species, positions, mm_positions[:, :used], mm_species[:used],
                                       mm_mask[:, :used], total_charge, create_graph)
        outputs["mm_forces"] = torch.nn.functional.pad(outputs["mm_forces"], (0, 0, 0, m - used))
        outputs["mm_charge_changes"] = torch.nn.functional.pad(outputs["mm_charge_changes"], (0, m - used))
        return outputs
    element_index, x, _ = model.prepare(torch.cat([species, mm_species]), torch.cat([positions, mm_positions], 1),
                                        None)
    real = mm_mask.to(x.dtype)
    parking = torch.zeros(m, 3, dtype=x.dtype)
    parking[:, 0] = PARKING_NM + torch.arange(m, dtype=x.dtype)
    x = torch.cat([x[:, :n], x[:, n:] * real.unsqueeze(-1) + (1.0 - real).unsqueeze(-1) * parking], 1)
    x = x.detach().unsqueeze(0).expand(members, *x.shape).reshape(members * n_frames, n + m, 3)
    x = x.clone().requires_grad_(True)
    weights = torch.cat([torch.ones(n_frames, n, dtype=x.dtype), real], 1)
    weights = weights.unsqueeze(0).expand(members, *weights.shape).reshape(members * n_frames, n + m)
    parameters = {f"model.{name}": p.unsqueeze(1).expand(p.shape[0], n_frames, *p.shape[1:]).reshape(
        members * n_frames, *p.shape[1:]) for name, p in model.named_parameters()}
    wrapper = _WeightedOutputs(model)
    whole = torch.func.functional_call(wrapper, parameters, (element_index, x, float(total_charge), weights))
    buffer = torch.func.functional_call(wrapper, parameters, (element_index[n:], x[:, n:], 0.0, weights[:, n:]))
    energy = whole["energy"] - buffer["energy"]
    gradient = torch.autograd.grad(energy.sum(), x, create_graph=create_graph)[0]
    forces = -gradient.reshape(members, n_frames, n + m, 3)
    changes = whole["charges"][:, n:] - buffer["charges"]
    return {"energy": energy.reshape(members, n_frames), "forces": forces[:, :, :n], "mm_forces": forces[:, :, n:],
            "charges": whole["charges"][:, :n].reshape(members, n_frames, n),
            "mm_charge_changes": changes.reshape(members, n_frames, m)}
