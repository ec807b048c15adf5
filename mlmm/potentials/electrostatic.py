"""Electrostatic embedding model: the ML region polarized by MM point charges (static + induced).

The interaction of the ML region with point charges q_j at r_j (the MM environment) is

    E_emb = k_e [ sum_i q_i(R) phi_i  -  1/2 sum_i mu_i . F_i ],
    phi_i = sum_j q_j / sqrt(r_ij^2 + s_i^2),   F_i = -grad_i phi_i,
    (alpha_i^-1 delta_ij - T_ij) mu_j = F_i,

(PHYSICS.md section 2): static charges q_i(R) summing to the total charge, potentials and
fields of the MM charges damped with a per-element width s_i (the finite extent of the
electron density; bare Coulomb from ~3 s on), and induced dipoles mu from atomic
polarizabilities alpha_i(R) (nm^3) coupled by Thole-damped dipole tensors T (exponential
damping, a = 0.39 as in AMOEBA). Charges and polarizabilities come from a PhysNet network of
the ML geometry alone, so the dependence on the MM charges is analytic: the energy is
linear plus quadratic in them and extrapolates to fields and charge counts outside the data.

:class:`ElectrostaticEmbedding` is that network (trained on E_QM/MM - E_QM and the force
difference); :class:`ElectrostaticPotential` adds a vacuum potential and is what the
``"electrostatic"`` embedding runs.
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Sequence, Tuple

import torch

from mlmm.potentials.base import DEFAULT_MAX_NEIGHBORS
from mlmm.potentials.physnet import PhysNet

#: Starting atomic polarizabilities in nm^3 (AMOEBA-like values); other elements start at 1e-3.
INITIAL_POLARIZABILITY = {1: 0.496e-3, 6: 1.334e-3, 7: 1.073e-3, 8: 0.837e-3, 16: 2.8e-3, 26: 1.5e-3}
#: Starting damping width of the MM potential at an ML atom, nm.
INITIAL_WIDTH = 0.08
#: Thole's exponential damping parameter.
THOLE_DAMPING = 0.39


class ElectrostaticEmbedding(PhysNet):
    """Static charges and polarizabilities of the ML atoms from a PhysNet network; E_emb in kJ/mol.

    ``member_outputs`` returns, for positions [M, n, 3] and optional MM positions [M, m, 3]
    (nm) and charges [M, m] (e, already weighted by the environment switch), ``energy`` [M]
    (E_emb; zero without MM charges) with its parts ``static_energy`` and ``induced_energy``,
    ``charges`` [M, n] (e), ``polarizabilities`` [M, n] (nm^3), ``induced_dipoles`` [M, n, 3]
    and ``dipole`` [M, 3] (e nm, charges plus induced).

    Parameters
    ----------
    elements, cutoff, n_features, n_basis, n_modules, n_residual, n_members, max_neighbors
        As for :class:`~mlmm.potentials.physnet.PhysNet` (the network of the ML geometry).
    environment_cutoff, environment_switch_distance : float
        The switching range (nm) of the MM environment the model was trained with
        (:mod:`mlmm.embedding.environment`); recorded for the embedding to use.
    """

    family = "electrostatic"
    uses_environment = True

    def __init__(self, elements: Sequence, cutoff: float = 0.5, n_features: int = 32, n_basis: int = 16,
                 n_modules: int = 1, n_residual: Sequence[int] = (1, 0, 0), environment_cutoff: float = 1.1,
                 environment_switch_distance: float = 0.9, n_members: int = 1,
                 max_neighbors: int = DEFAULT_MAX_NEIGHBORS):
        super().__init__(elements, cutoff, n_features, n_basis, n_modules, n_residual, n_members=n_members,
                         max_neighbors=max_neighbors)
        if not 0.0 < environment_switch_distance < environment_cutoff:
            raise ValueError(f"environment_switch_distance ({environment_switch_distance} nm) must lie between 0 "
                             f"and environment_cutoff ({environment_cutoff} nm)")
        self.hyperparameters.update(environment_cutoff=environment_cutoff,
                                    environment_switch_distance=environment_switch_distance)
        self.environment_cutoff = float(environment_cutoff)
        self.environment_switch_distance = float(environment_switch_distance)
        self.thole = THOLE_DAMPING
        alpha = [INITIAL_POLARIZABILITY.get(z, 1e-3) for z in self.supported_elements]
        self.log_polarizability = torch.nn.Parameter(torch.log(torch.tensor(alpha)).repeat(n_members, 1))
        self.log_width = torch.nn.Parameter(torch.full((n_members, self.n_elements), math.log(INITIAL_WIDTH)))

    def mm_potential_and_field(self, positions: torch.Tensor, widths: torch.Tensor, mm_positions: torch.Tensor,
                               mm_charges: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Damped potential phi [M, n] (e/nm) and field F = -grad phi [M, n, 3] (e/nm^2) at the ML atoms."""
        d = positions.unsqueeze(2) - mm_positions.unsqueeze(1)  # [M, n, m, 3]
        inverse = torch.rsqrt((d * d).sum(-1) + (widths * widths).unsqueeze(-1))
        q = mm_charges.unsqueeze(1)
        potential = (q * inverse).sum(-1)
        field = ((q * inverse * inverse * inverse).unsqueeze(-1) * d).sum(2)
        return potential, field

    def induced_dipoles(self, positions: torch.Tensor, polarizabilities: torch.Tensor, field: torch.Tensor
                        ) -> torch.Tensor:
        """Solve (alpha^-1 - T) mu = F for the induced dipoles [M, n, 3] (e nm)."""
        m, n = positions.shape[0], positions.shape[1]
        d = positions.unsqueeze(2) - positions.unsqueeze(1)  # [M, n, n, 3]
        eye = torch.eye(n, dtype=positions.dtype, device=positions.device)
        r2 = (d * d).sum(-1) + eye  # 1 on the diagonal keeps the self terms finite; they are masked
        r = torch.sqrt(r2)
        scaled = self.thole * r2 * r * torch.rsqrt(polarizabilities.unsqueeze(2) * polarizabilities.unsqueeze(1))
        decay = torch.exp(-scaled)
        off_diagonal = 1.0 - eye
        damp3 = (1.0 - decay) * off_diagonal / (r2 * r)
        damp5 = 3.0 * (1.0 - (1.0 + scaled) * decay) * off_diagonal / (r2 * r2 * r)
        identity3 = torch.eye(3, dtype=positions.dtype, device=positions.device)
        tensor = damp5[..., None, None] * d.unsqueeze(-1) * d.unsqueeze(-2) - damp3[..., None, None] * identity3
        inverse_alpha = torch.diag_embed(1.0 / polarizabilities)  # [M, n, n]
        # A[i, a, j, b] = delta_ij delta_ab / alpha_i - T_ij[a, b]
        blocks = (inverse_alpha[:, :, None, :, None] * identity3[None, None, :, None, :]
                  - tensor.permute(0, 1, 3, 2, 4))
        # solve_ex: linalg.solve checks the factorization on the host, a synchronisation that breaks CUDA graphs
        solution = torch.linalg.solve_ex(blocks.reshape(m, 3 * n, 3 * n), field.reshape(m, 3 * n, 1))[0]
        return solution.reshape(m, n, 3)

    def member_outputs(self, element_index: torch.Tensor, positions: torch.Tensor, cell: Optional[torch.Tensor],
                       total_charge: float, mm_positions: Optional[torch.Tensor] = None,
                       mm_charges: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        n = positions.shape[1]
        outputs, _, _, overflow = self.atomic_outputs(element_index, positions, cell, None)
        raw = outputs[:, :, 1]
        charges = raw - (raw.sum(-1, keepdim=True) - total_charge) / n
        polarizabilities = torch.exp(self.log_polarizability.index_select(1, element_index)
                                     + torch.tanh(outputs[:, :, 0]))
        dipole = (charges.unsqueeze(-1) * positions).sum(1)
        result = {"charges": charges, "polarizabilities": polarizabilities}
        if mm_positions is None or mm_charges is None:
            result["energy"] = self.guard_overflow(torch.zeros_like(charges[:, 0]), overflow)
            result["dipole"] = dipole
            return result
        widths = torch.exp(self.log_width.index_select(1, element_index))
        potential, field = self.mm_potential_and_field(positions, widths, mm_positions.to(positions.dtype),
                                                       mm_charges.to(positions.dtype))
        induced = self.induced_dipoles(positions, polarizabilities, field)
        static = self.coulomb_constant * (charges * potential).sum(-1)
        polarization = -0.5 * self.coulomb_constant * (induced * field).sum((-2, -1))
        result["energy"] = self.guard_overflow(static + polarization, overflow)
        result["static_energy"] = static
        result["induced_energy"] = polarization
        result["induced_dipoles"] = induced
        result["dipole"] = dipole + induced.sum(1)
        return result

    @torch.jit.export
    def evaluate_in_field(self, species: torch.Tensor, positions: torch.Tensor, mm_positions: torch.Tensor,
                          mm_charges: torch.Tensor, total_charge: float) -> Dict[str, torch.Tensor]:
        """Per-member outputs for one geometry [n, 3] in MM charges [m] at [m, 3] (nm, e)."""
        element_index, x, _ = self.prepare(species, positions, None)
        members = x.unsqueeze(0).expand(self.n_members, x.shape[0], 3)
        mm_x = mm_positions.to(x.dtype).unsqueeze(0).expand(self.n_members, mm_positions.shape[0], 3)
        mm_q = mm_charges.to(x.dtype).unsqueeze(0).expand(self.n_members, mm_charges.shape[0])
        return self.member_outputs(element_index, members, None, total_charge, mm_x, mm_q)


class ElectrostaticPotential(torch.nn.Module):
    """A vacuum potential plus an :class:`ElectrostaticEmbedding`: the model of the electrostatic scheme.

    ``forward(species, positions)`` is the vacuum energy (kJ/mol);
    ``energy_in_field(species, positions, mm_positions, mm_charges, total_charge)`` returns the
    energy in the field of MM charges (vacuum + E_emb, kJ/mol) and the static ML charges (e).

    Parameters
    ----------
    vacuum : torch.nn.Module
        Any potential ``forward(species, positions) -> energy`` (e.g. a loaded mlmm model).
    embedding : ElectrostaticEmbedding
        The trained embedding network.
    """

    def __init__(self, vacuum: torch.nn.Module, embedding: ElectrostaticEmbedding):
        super().__init__()
        self.vacuum = vacuum
        self.embedding = embedding
        vacuum_elements = getattr(vacuum, "supported_elements", None)
        elements = [int(z) for z in embedding.supported_elements]
        if vacuum_elements is not None:
            elements = [z for z in elements if z in {int(v) for v in vacuum_elements}]
        self.supported_elements = elements
        self.cutoff = float(getattr(vacuum, "cutoff", embedding.cutoff))
        self.embedding_scheme = "electrostatic"
        self.environment_cutoff = embedding.environment_cutoff
        self.environment_switch_distance = embedding.environment_switch_distance

    def forward(self, species: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return self.vacuum(species, positions)

    @torch.jit.export
    def energy_in_field(self, species: torch.Tensor, positions: torch.Tensor, mm_positions: torch.Tensor,
                        mm_charges: torch.Tensor, total_charge: float) -> Tuple[torch.Tensor, torch.Tensor]:
        """Energy (kJ/mol) of the ML region in the field of the MM charges, and its static charges (e)."""
        outputs = self.embedding.evaluate_in_field(species, positions, mm_positions, mm_charges, total_charge)
        energy = self.vacuum(species, positions).to(positions.dtype) + outputs["energy"].mean(0).to(positions.dtype)
        return energy, outputs["charges"].mean(0)

    @torch.jit.export
    def embedding_outputs(self, species: torch.Tensor, positions: torch.Tensor, mm_positions: torch.Tensor,
                          mm_charges: torch.Tensor, total_charge: float) -> Dict[str, torch.Tensor]:
        """Committee-mean embedding outputs (see :class:`ElectrostaticEmbedding`) and the vacuum energy."""
        outputs = self.embedding.evaluate_in_field(species, positions, mm_positions, mm_charges, total_charge)
        result = {key: value.mean(0) for key, value in outputs.items()}
        result["vacuum_energy"] = self.vacuum(species, positions).to(positions.dtype)
        return result

