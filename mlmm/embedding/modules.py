"""The torch modules that OpenMM runs: all positions (+ box) in, embedded ML energy out.

Each module follows openmm-torch's TorchForce contract,
``forward(positions[N_total, 3] nm, boxvectors[3, 3] nm or None) -> energy kJ/mol``;
forces are minus the autograd gradient of that one scalar, MM atoms included.
"""

from __future__ import annotations

from typing import Optional

import torch

from mlmm.embedding.kernels import reaction_field, shifted_force, smooth_switch
from mlmm.embedding.pbc import make_whole, minimum_image
from mlmm.units import COULOMB_CONSTANT

KERNELS = ("reaction-field", "shifted-force")


def _model_dtype(potential: torch.nn.Module) -> torch.dtype:
    """The floating dtype of the potential's first parameter or buffer (float64 if none)."""
    for tensor in list(potential.parameters()) + list(potential.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float64


class MechanicalEmbeddingModule(torch.nn.Module):
    """E = E_NN(R_I): the potential on the (made whole) ML atoms.

    Parameters
    ----------
    potential : torch.nn.Module
        The ML potential (see :mod:`mlmm.potentials.contract`).
    ml_indices : sequence of int
        Indices of the ML atoms among all particles.
    atomic_numbers : sequence of int
        Their atomic numbers.
    molecule_roots : sequence of int
        For each ML atom, the position (within ``ml_indices``) of the first ML atom of its
        molecule; used to make the region whole in periodic systems.
    """

    def __init__(self, potential: torch.nn.Module, ml_indices, atomic_numbers, molecule_roots):
        super().__init__()
        self.potential = potential
        self.register_buffer("ml_indices", torch.as_tensor(list(ml_indices), dtype=torch.long))
        roots = list(molecule_roots)
        single_molecule = all(root == 0 for root in roots)  # then make_whole needs one pass, not two
        self.register_buffer("molecule_roots", torch.as_tensor([] if single_molecule else roots, dtype=torch.long))
        self.register_buffer("species", torch.as_tensor(list(atomic_numbers), dtype=torch.long))
        # An empty tensor carrying the model's dtype (and following .to(device)).
        self.register_buffer("model_dtype_probe", torch.zeros(0, dtype=_model_dtype(potential)))

    def ml_positions(self, positions: torch.Tensor, boxvectors: Optional[torch.Tensor]) -> torch.Tensor:
        """ML atom positions in nm, made whole when a box is given."""
        x = positions.index_select(0, self.ml_indices)
        if boxvectors is not None:
            x = make_whole(x, boxvectors.to(x.dtype), self.molecule_roots)
        return x

    def forward(self, positions: torch.Tensor, boxvectors: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = self.ml_positions(positions, boxvectors).to(self.model_dtype_probe.dtype)
        return self.potential(self.species, x).to(positions.dtype)


class MLChargesEmbeddingModule(MechanicalEmbeddingModule):
    """E = E_NN(R_I) + k_e sum_i q_i(R_I) sum_m w(d_im) sum_{j in m} q_j K(r_ij).

    ``m`` runs over whole MM groups (residues); ``d_im`` is the distance from ML atom ``i``
    to the group's anchor atom and ``w`` the C2 switch from 1 at ``switch_distance`` to 0
    at ``cutoff``, so each group enters and leaves as a whole and E, F vanish smoothly at
    the cutoff. ``K`` is the reaction-field or shifted-force kernel. Charges come from
    ``potential.energy_and_charges`` and their dq/dR terms enter the forces.

    Parameters
    ----------
    mm_indices : sequence of int
        Indices of the charged MM atoms.
    mm_charges : sequence of float
        Their force-field charges in e.
    mm_group : sequence of int
        For each MM atom, the index of its group in ``anchor_indices``.
    anchor_indices : sequence of int
        For each group, the particle index of its anchor atom.
    total_charge : float
        Total charge of the ML region in e.
    cutoff, switch_distance : float
        In nm.
    kernel : str
        "reaction-field" or "shifted-force".
    dielectric : float
        Reaction-field dielectric constant.
    """

    def __init__(self, potential: torch.nn.Module, ml_indices, atomic_numbers, molecule_roots, mm_indices, mm_charges,
                 mm_group, anchor_indices, total_charge: float, cutoff: float, switch_distance: float,
                 kernel: str, dielectric: float):
        super().__init__(potential, ml_indices, atomic_numbers, molecule_roots)
        if kernel not in KERNELS:
            raise ValueError(f"kernel={kernel!r} is not one of {KERNELS}.")
        self.register_buffer("mm_indices", torch.as_tensor(list(mm_indices), dtype=torch.long))
        self.register_buffer("mm_charges", torch.as_tensor(list(mm_charges), dtype=torch.float64))
        self.register_buffer("mm_group", torch.as_tensor(list(mm_group), dtype=torch.long))
        self.register_buffer("anchor_indices", torch.as_tensor(list(anchor_indices), dtype=torch.long))
        self.total_charge = float(total_charge)
        self.cutoff = float(cutoff)
        self.switch_distance = float(switch_distance)
        self.use_reaction_field = kernel == "reaction-field"
        self.dielectric = float(dielectric)
        self.coulomb_constant = COULOMB_CONSTANT

    def interaction_energy(self, x_ml: torch.Tensor, charges: torch.Tensor, positions: torch.Tensor,
                           boxvectors: Optional[torch.Tensor]) -> torch.Tensor:
        """ML-MM Coulomb energy in kJ/mol for ML positions ``x_ml`` and charges ``charges``."""
        anchors = positions.index_select(0, self.anchor_indices)
        to_anchor = anchors.unsqueeze(0) - x_ml.unsqueeze(1)  # [n_ml, n_groups, 3]
        in_group = positions.index_select(0, self.mm_indices) - anchors.index_select(0, self.mm_group)
        if boxvectors is not None:
            box = boxvectors.to(positions.dtype)
            to_anchor = minimum_image(to_anchor, box)
            in_group = minimum_image(in_group, box)
        weight = smooth_switch(torch.linalg.norm(to_anchor, dim=-1), self.switch_distance, self.cutoff)
        r = torch.linalg.norm(to_anchor.index_select(1, self.mm_group) + in_group.unsqueeze(0), dim=-1)
        if self.use_reaction_field:
            kernel = reaction_field(r, self.cutoff, self.dielectric)
        else:
            kernel = shifted_force(r, self.cutoff)
        potential_at_ml = (weight.index_select(1, self.mm_group) * kernel * self.mm_charges.to(r.dtype)).sum(1)
        return self.coulomb_constant * (charges.to(r.dtype) * potential_at_ml).sum()

    def forward(self, positions: torch.Tensor, boxvectors: Optional[torch.Tensor] = None) -> torch.Tensor:
        x_ml = self.ml_positions(positions, boxvectors)
        energy, charges = self.potential.energy_and_charges(
            self.species, x_ml.to(self.model_dtype_probe.dtype), self.total_charge)
        coupling = self.interaction_energy(x_ml, charges, positions, boxvectors)
        return energy.to(positions.dtype) + coupling
