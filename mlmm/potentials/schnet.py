"""SchNet: continuous-filter convolutions over a Gaussian radial basis (Schuett et al., 2018).

x_i <- x_i + W2 ssp(W1 sum_j x_j W3 * F(r_ij)),  F(r) = Dense(ssp(Dense(g(r)))) f_c(r),
with g a Gaussian basis and f_c the polynomial cutoff; E_i from a two-layer output network.
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Sequence

import torch

from mlmm.potentials.base import DEFAULT_MAX_NEIGHBORS, NeuralPotential
from mlmm.potentials.layers import (GaussianBasis, MemberLinear, gather_neighbors, polynomial_cutoff,
                                    shifted_softplus)


class SchNetInteraction(torch.nn.Module):
    """One continuous-filter convolution with its atom-wise layers, as a residual update."""

    def __init__(self, n_members: int, n_features: int, n_basis: int):
        super().__init__()
        self.filter_in = MemberLinear(n_members, n_basis, n_features)
        self.filter_out = MemberLinear(n_members, n_features, n_features)
        self.to_filter_space = MemberLinear(n_members, n_features, n_features, bias=False)
        self.from_filter_space = MemberLinear(n_members, n_features, n_features)
        self.dense = MemberLinear(n_members, n_features, n_features)

    def forward(self, x: torch.Tensor, basis: torch.Tensor, cutoff_values: torch.Tensor,
                neighbors: torch.Tensor) -> torch.Tensor:
        filters = self.filter_out(shifted_softplus(self.filter_in(basis))) * cutoff_values.unsqueeze(-1)
        convolved = (filters * gather_neighbors(self.to_filter_space(x), neighbors)).sum(2)
        return x + self.dense(shifted_softplus(self.from_filter_space(convolved)))


class SchNet(NeuralPotential):
    """SchNet potential (energy in kJ/mol).

    Parameters
    ----------
    elements : sequence of str or int
        Elements the model is built for.
    cutoff : float
        Cutoff in nm.
    n_features, n_basis, n_interactions : int
        Feature width, number of Gaussians and of interaction blocks.
    n_members, max_neighbors
        See :class:`~mlmm.potentials.base.NeuralPotential`.
    """

    family = "schnet"

    def __init__(self, elements: Sequence, cutoff: float = 0.5, n_features: int = 64, n_basis: int = 32,
                 n_interactions: int = 3, n_members: int = 1, max_neighbors: int = DEFAULT_MAX_NEIGHBORS):
        super().__init__(elements, cutoff, n_members, max_neighbors)
        self.hyperparameters = dict(cutoff=cutoff, n_features=n_features, n_basis=n_basis,
                                    n_interactions=n_interactions)
        self.embedding = torch.nn.Parameter(
            torch.empty(n_members, self.n_elements, n_features).uniform_(-math.sqrt(3.0), math.sqrt(3.0)))
        self.basis = GaussianBasis(n_basis, cutoff)
        self.interactions = torch.nn.ModuleList([SchNetInteraction(n_members, n_features, n_basis)
                                                 for _ in range(n_interactions)])
        self.output_hidden = MemberLinear(n_members, n_features, n_features // 2)
        self.output = MemberLinear(n_members, n_features // 2, 1)

    def member_outputs(self, element_index: torch.Tensor, positions: torch.Tensor,
                       cell: Optional[torch.Tensor], total_charge: float) -> Dict[str, torch.Tensor]:
        neighbors, _, vectors, overflow = self.short_range_pairs(positions, cell)
        distances = torch.linalg.norm(vectors, dim=-1)
        basis = self.basis(distances)
        cutoff_values = polynomial_cutoff(distances, self.cutoff)  # zero for padding entries
        x = self.embedding.index_select(1, element_index)
        for interaction in self.interactions:
            x = interaction(x, basis, cutoff_values, neighbors)
        raw = self.output(shifted_softplus(self.output_hidden(x))).squeeze(-1)
        atomic_energies = self.scaled_energies(raw, element_index)
        return {"energy": self.guard_overflow(atomic_energies.sum(-1), overflow),
                "atomic_energies": atomic_energies}
