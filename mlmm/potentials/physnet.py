"""PhysNet-style message-passing potential: atomic energies, charges and dipole from one network.

Unke & Meuwly, J. Chem. Theory Comput. 15, 3678 (2019); equations in PHYSICS.md section 1.
Each of ``n_modules`` modules refines the atomic features by message passing over
neighbours within the cutoff and adds its (E_i, q_i) output. Charges are corrected to the
total charge Q, q_i <- q_i - (sum_j q_j - Q)/n, and enter a damped Coulomb term

    E = sum_i E_i + (k_e/2) sum_{i != j} q_i q_j chi(r_ij) [+ E_D2],
    chi(r) = phi(2r) / sqrt(r^2 + a^2) + (1 - phi(2r)) / r,

with phi the polynomial cutoff at r_c (so chi is 1/r from r_c/2 on) and a = 0.1 nm
(PhysNet's 1 Angstrom). With a ``coulomb_cutoff`` r_lr (needed for periodic cells) chi is
shifted, chi(r) - 1/r_lr + (r - r_lr)/r_lr^2, so energy and forces vanish at r_lr.

The activation is SiLU rather than PhysNet's shifted softplus: also smooth and zero at
zero, but one operation instead of two, which is 10 % of the time of a 10-atom call.
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Sequence, Tuple

import torch
from torch.nn.functional import silu

from mlmm.potentials.base import DEFAULT_MAX_NEIGHBORS, NeuralPotential
from mlmm.potentials.dispersion import D2Dispersion
from mlmm.potentials.layers import (ExpNormalBasis, MemberLinear, MemberResidual, gather_neighbors,
                                    polynomial_cutoff, smooth_switch)
from mlmm.potentials.neighbors import member_pairs_within, neighbor_list, pair_vectors, static_shapes
from mlmm.units import COULOMB_CONSTANT

#: Damping length a of chi(r) in nm.
COULOMB_DAMPING = 0.1

class PhysNetModule(torch.nn.Module):
    """One interaction + atomic refinement + output module; returns new features and (E_i, q_i)."""

    def __init__(self, n_members: int, n_features: int, n_basis: int, n_residual: Tuple[int, int, int]):
        super().__init__()
        n_interaction, n_atomic, n_output = n_residual
        self.filter = MemberLinear(n_members, n_basis, n_features, bias=False)
        self.self_dense = MemberLinear(n_members, n_features, n_features)
        self.neighbor_dense = MemberLinear(n_members, n_features, n_features)
        self.interaction = torch.nn.ModuleList([MemberResidual(n_members, n_features) for _ in range(n_interaction)])
        self.update = MemberLinear(n_members, n_features, n_features)
        self.gate = torch.nn.Parameter(torch.ones(n_members, 1, n_features))
        self.atomic = torch.nn.ModuleList([MemberResidual(n_members, n_features) for _ in range(n_atomic)])
        self.output_residual = torch.nn.ModuleList([MemberResidual(n_members, n_features)
                                                    for _ in range(n_output)])
        self.output = MemberLinear(n_members, n_features, 2)
        torch.nn.init.zeros_(self.output.weight)  # PhysNet starts from zero outputs

    def forward(self, x: torch.Tensor, basis: torch.Tensor, neighbors: torch.Tensor
                ) -> Tuple[torch.Tensor, torch.Tensor]:
        activated = silu(x)
        from_neighbors = gather_neighbors(silu(self.neighbor_dense(activated)), neighbors)
        message = silu(self.self_dense(activated)) + (self.filter(basis) * from_neighbors).sum(2)
        for block in self.interaction:
            message = block(message)
        x = self.gate * x + self.update(silu(message))
        for block in self.atomic:
            x = block(x)
        out = x
        for block in self.output_residual:
            out = block(out)
        return x, self.output(silu(out))


class PhysNet(NeuralPotential):
    """PhysNet-style potential predicting energy (kJ/mol), charges (e) and dipole (e nm).

    Parameters
    ----------
    elements : sequence of str or int
        Elements the model is built for.
    cutoff : float
        Message-passing cutoff r_c in nm.
    n_features, n_basis, n_modules : int
        Feature width, radial basis size and number of modules.
    n_residual : tuple of 3 int
        Residual blocks in each module's interaction, atomic and output stages (PhysNet's
        paper uses 3, 2, 1). The defaults are sized for solutes of about ten atoms.
    coulomb_cutoff : float, optional
        Cutoff of the Coulomb and dispersion terms in nm (>= cutoff); None means all pairs,
        which is allowed for non-periodic input only.
    dispersion_s6 : float, optional
        Add Grimme D2 dispersion with this s6 (see :mod:`mlmm.potentials.dispersion`).
    total_charge : float
        Total charge (e) used by ``forward``; ``evaluate`` and ``energy_and_charges`` take it
        as an argument.
    n_members, max_neighbors
        See :class:`~mlmm.potentials.base.NeuralPotential`.
    """

    family = "physnet"

    def __init__(self, elements: Sequence, cutoff: float = 0.5, n_features: int = 64, n_basis: int = 32,
                 n_modules: int = 2, n_residual: Sequence[int] = (1, 0, 0), coulomb_cutoff: Optional[float] = None,
                 dispersion_s6: Optional[float] = None, total_charge: float = 0.0, n_members: int = 1,
                 max_neighbors: int = DEFAULT_MAX_NEIGHBORS):
        super().__init__(elements, cutoff, n_members, max_neighbors)
        if coulomb_cutoff is not None and coulomb_cutoff < cutoff:
            raise ValueError(f"coulomb_cutoff ({coulomb_cutoff} nm) must not be shorter than cutoff ({cutoff} nm)")
        if len(n_residual) != 3 or min(n_residual) < 0:
            raise ValueError(f"n_residual must be three non-negative counts (interaction, atomic, output), "
                             f"got {n_residual}")
        self.hyperparameters = dict(cutoff=cutoff, n_features=n_features, n_basis=n_basis, n_modules=n_modules,
                                    n_residual=list(n_residual), coulomb_cutoff=coulomb_cutoff,
                                    dispersion_s6=dispersion_s6)
        self.default_total_charge = float(total_charge)
        self.coulomb_cutoff = math.inf if coulomb_cutoff is None else float(coulomb_cutoff)
        self.coulomb_constant = COULOMB_CONSTANT
        self.coulomb_damping = COULOMB_DAMPING
        self.embedding = torch.nn.Parameter(
            torch.empty(n_members, self.n_elements, n_features).uniform_(-math.sqrt(3.0), math.sqrt(3.0)))
        self.basis = ExpNormalBasis(n_basis, cutoff)
        self.blocks = torch.nn.ModuleList([PhysNetModule(n_members, n_features, n_basis, tuple(n_residual))
                                           for _ in range(n_modules)])
        self.use_dispersion = dispersion_s6 is not None
        self.dispersion = D2Dispersion(self.supported_elements, dispersion_s6 if self.use_dispersion else 0.0)

    def damped_coulomb_kernel(self, r: torch.Tensor) -> torch.Tensor:
        """chi(r) in nm^-1 (shifted at the Coulomb cutoff when there is one)."""
        phi = polynomial_cutoff(2.0 * r, self.cutoff)
        chi = phi * torch.rsqrt(r * r + self.coulomb_damping ** 2) + (1.0 - phi) / r
        if math.isfinite(self.coulomb_cutoff):
            rc = self.coulomb_cutoff
            chi = torch.where(r < rc, chi - 1.0 / rc + (r - rc) / (rc * rc), torch.zeros_like(chi))
        return chi

    def atomic_outputs(self, element_index: torch.Tensor, positions: torch.Tensor, cell: Optional[torch.Tensor],
                       weights: Optional[torch.Tensor] = None
                       ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The modules' summed outputs [M, n, 2] for positions [M, n, 3], with the all-pairs list.

        Returns (outputs, lr_neighbors, r, overflow): the pair list within the Coulomb cutoff and
        its distances [M, n, K] (nm), and the neighbour-list overflow flag. The list may hold
        pairs beyond the Coulomb cutoff (the pairs of an all-pairs list that lie beyond it, or a
        narrowed list's padding); the Coulomb and dispersion terms vanish there, so it needs no
        mask, and frames batched along the member axis may cross the cutoff where the first
        frame does not.
        With atom ``weights`` [M, n] in [0, 1], the message from atom j is multiplied by w_j, so
        an atom of weight 0 influences no other atom (see :meth:`weighted_energy_and_charges`).
        """
        n = positions.shape[1]
        # All pairs (within the Coulomb cutoff, if any) for the Coulomb and dispersion terms;
        # each pair is listed twice. When that list fits the neighbour capacity it also serves
        # message passing (the basis vanishes beyond the cutoff), saving a second list, unless
        # (on CPU) most of its pairs lie beyond the cutoff, as in clusters of solvent; frames
        # batched along the member axis then pass messages over each frame's own pairs.
        compact = self.compact_lists(positions)
        lr_neighbors, _, lr_shifts, _ = neighbor_list(positions[0].detach(), self.coulomb_cutoff, n, cell, compact)
        lr_vectors = pair_vectors(positions, lr_neighbors, lr_shifts)
        r = torch.linalg.norm(lr_vectors, dim=-1)
        overflow = torch.zeros((), dtype=torch.bool, device=positions.device)
        if n - 1 > self.max_neighbors or (compact and self.short_list_pays(r)):
            neighbors, _, vectors, overflow = self.short_range_pairs(positions, cell)
            r_short = torch.linalg.norm(vectors, dim=-1)
        elif not compact and not static_shapes(positions):  # frames batched along the member axis (training)
            neighbors, vectors, r_short = member_pairs_within(lr_neighbors, lr_vectors, r, self.cutoff)
        else:
            neighbors, vectors, r_short = lr_neighbors, lr_vectors, r
        basis = self.basis(r_short)
        if weights is not None:
            basis = basis * gather_neighbors(weights.unsqueeze(-1), neighbors)
        return self.refine(element_index, basis, neighbors, vectors, r_short), lr_neighbors, r, overflow

    def refine(self, element_index: torch.Tensor, basis: torch.Tensor, neighbors: torch.Tensor,
               vectors: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """Summed (E_i, q_i) outputs [M, n, 2] of the modules, from the radial basis [M, n, K, n_basis]
        of the message-passing list ``neighbors`` ([n, K], or [M, n, K] for frames batched along the
        member axis; its pair vectors [M, n, K, 3] and distances [M, n, K] in nm serve networks that use
        directions)."""
        x = self.embedding.index_select(1, element_index)
        outputs = torch.zeros_like(x[:, :, :2])
        for block in self.blocks:
            x, out = block(x, basis, neighbors)
            outputs = outputs + out
        return outputs

    def short_list_pays(self, r: torch.Tensor) -> bool:
        """Whether a separate message-passing list is worth building, given the pair distances
        r [M, n, K] (nm) of the long-range list (one geometry, on CPU): when no atom has more than
        three quarters of those K pairs within the cutoff (above that the second list costs more
        than it saves)."""
        if r.shape[-1] == 0:
            return False
        most = int((r[0].detach() < self.cutoff).sum(-1).max())
        return 4 * most <= 3 * r.shape[-1]

    def member_outputs(self, element_index: torch.Tensor, positions: torch.Tensor,
                       cell: Optional[torch.Tensor], total_charge: float,
                       weights: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        n = positions.shape[1]
        outputs, lr_neighbors, r, overflow = self.atomic_outputs(element_index, positions, cell, weights)
        atomic_energies = self.scaled_energies(outputs[:, :, 0], element_index)
        raw_charges = outputs[:, :, 1]
        if weights is None:
            charges = raw_charges - (raw_charges.sum(-1, keepdim=True) - total_charge) / n
        else:  # sum_i w_i q_i = Q, the correction spread in proportion to w_i
            excess = (weights * raw_charges).sum(-1, keepdim=True) - total_charge
            charges = raw_charges - weights * excess / (weights * weights).sum(-1, keepdim=True).clamp_min(1e-12)

        q_j = charges.index_select(1, lr_neighbors.reshape(-1)).reshape(r.shape)
        pair = self.coulomb_constant * charges.unsqueeze(-1) * q_j * self.damped_coulomb_kernel(r)
        if self.use_dispersion:
            dispersion = self.dispersion(element_index, lr_neighbors, r)
            if math.isfinite(self.coulomb_cutoff):
                dispersion = dispersion * smooth_switch(r, 0.8 * self.coulomb_cutoff, self.coulomb_cutoff)
            pair = pair + dispersion
        if weights is not None:
            w_j = weights.index_select(1, lr_neighbors.reshape(-1)).reshape(r.shape)
            pair = pair * weights.unsqueeze(-1) * w_j
            atomic_energies = atomic_energies * weights
            charges = charges * weights
        atomic_energies = atomic_energies + 0.5 * pair.sum(-1)
        energy = self.guard_overflow(atomic_energies.sum(-1), overflow)
        dipole = (charges.unsqueeze(-1) * positions).sum(1)
        return {"energy": energy, "atomic_energies": atomic_energies, "charges": charges, "dipole": dipole}

    @torch.jit.export
    def energy_and_charges(self, species: torch.Tensor, positions: torch.Tensor,
                           total_charge: float) -> Tuple[torch.Tensor, torch.Tensor]:
        """Committee-mean energy (kJ/mol) and charges (e, summing to ``total_charge``)."""
        outputs = self.evaluate(species, positions, None, total_charge)
        return outputs["energy"].mean(0), outputs["charges"].mean(0)

    @torch.jit.export
    def weighted_energy_and_charges(self, species: torch.Tensor, positions: torch.Tensor, weights: torch.Tensor,
                                    total_charge: float) -> Tuple[torch.Tensor, torch.Tensor]:
        """Energy (kJ/mol) and charges (e) of atoms that take part with weights w_i in [0, 1].

        E = sum_i w_i E_i + (1/2) sum_{i != j} w_i w_j (Coulomb + dispersion)_ij, each atom's
        messages scaled by its weight, and the weighted charges w_i q_i (returned) summing to
        ``total_charge``. With all w_i = 1 this is the ordinary energy; an atom of weight 0
        contributes nothing and changes nothing, and E is smooth in the weights, so atoms can
        enter and leave a region smoothly (the buffer embedding).
        """
        element_index, x, _ = self.prepare(species, positions, None)
        members = x.unsqueeze(0).expand(self.n_members, x.shape[0], 3)
        w = weights.to(x.dtype).unsqueeze(0).expand(self.n_members, x.shape[0])
        outputs = self.member_outputs(element_index, members, None, total_charge, w)
        return outputs["energy"].mean(0), outputs["charges"].mean(0)
