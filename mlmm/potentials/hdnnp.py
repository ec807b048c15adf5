"""High-dimensional neural network potential on weighted atom-centred symmetry functions.

Behler-Parrinello atomic energies from element-specific networks (Gastegger et al.,
J. Chem. Phys. 148, 241709 (2018) for the element weighting); PHYSICS.md section 1:

    G_rad_i(eta, R_s) = sum_{j != i} Z_j exp(-eta (r_ij - R_s)^2) f_c(r_ij)
    G_ang_i(zeta, lambda, eta) = 2^(1-zeta) sum_{j != k, both != i} Z_j Z_k (1 + lambda cos theta_ijk)^zeta
                                 exp(-eta (r_ij^2 + r_ik^2 + r_jk^2)) f_a(r_ij) f_a(r_ik) f_a(r_jk)

(angular functions centred at R_s = 0, the sum over ordered pairs j, k). As in ANI, the
angular terms use a shorter cutoff (f_a, default 0.35 nm) and their own neighbour list, so
the O(n K^2) triplet work stays small. Descriptors are standardised with a stored mean and
standard deviation before the networks.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import torch

from mlmm.potentials.base import DEFAULT_MAX_NEIGHBORS, NeuralPotential
from mlmm.potentials.layers import ElementLinear, polynomial_cutoff
from mlmm.potentials.neighbors import neighbor_list, pair_vectors


class WeightedACSF(torch.nn.Module):
    """Weighted radial and angular symmetry functions [M, n, n_radial + n_angular].

    Parameters
    ----------
    atomic_numbers : sequence of int
        Element weights g(Z) = Z, in the model's element order.
    cutoff, angular_cutoff : float
        Radial and angular cutoffs in nm.
    n_radial : int
        Radial functions with centres R_s on an even grid in [0, r_c]; eta = 1/(2 spacing^2).
    angular_etas : sequence of float
        Angular widths eta in nm^-2; each is combined with zeta in {1, 4} and lambda in {-1, 1}.
    """

    def __init__(self, atomic_numbers: Sequence[int], cutoff: float, angular_cutoff: float, n_radial: int,
                 angular_etas: Sequence[float]):
        super().__init__()
        self.cutoff = float(cutoff)
        self.angular_cutoff = float(angular_cutoff)
        self.register_buffer("element_weight", torch.tensor([float(z) for z in atomic_numbers]))
        centres = torch.linspace(0.0, cutoff, n_radial)
        self.register_buffer("radial_centres", centres)
        self.radial_eta = 1.0 / (2.0 * float(centres[1] - centres[0]) ** 2)
        # Angular functions ordered (eta, zeta, lambda) with zeta in (1, 4), lambda in (-1, 1).
        self.register_buffer("lambdas", torch.tensor([-1.0, 1.0]))
        self.register_buffer("angular_prefactor", torch.tensor([1.0, 1.0, 2.0 ** -3, 2.0 ** -3]))
        self.register_buffer("angular_eta", torch.tensor([float(eta) for eta in angular_etas]))
        n_angular = 4 * len(angular_etas)
        self.n_descriptors = n_radial + n_angular

    def forward(self, element_index: torch.Tensor, neighbors: torch.Tensor, vectors: torch.Tensor,
                angular_neighbors: torch.Tensor, angular_vectors: torch.Tensor) -> torch.Tensor:
        """Descriptors from the radial list ([n, K], [M, n, K, 3]) and the angular list ([n, Ka], [M, n, Ka, 3])."""
        weight = self.element_weight.index_select(0, element_index)
        w_j = weight.index_select(0, neighbors.reshape(-1)).reshape(neighbors.shape)  # [n, K]
        r = torch.linalg.norm(vectors, dim=-1)  # [M, n, K]
        diff = r.unsqueeze(-1) - self.radial_centres
        radial = (w_j.unsqueeze(-1) * torch.exp(-self.radial_eta * diff * diff)
                  * polynomial_cutoff(r, self.cutoff).unsqueeze(-1)).sum(2)
        return torch.cat([radial, self.angular(weight, angular_neighbors, angular_vectors)], dim=-1)

    def angular(self, weight: torch.Tensor, neighbors: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
        """Angular functions [M, n, 4 n_eta] over neighbour pairs (j, k) of each atom; j == k excluded."""
        k = neighbors.shape[1]
        w_j = weight.index_select(0, neighbors.reshape(-1)).reshape(neighbors.shape)
        r = torch.linalg.norm(vectors, dim=-1)
        f_c = polynomial_cutoff(r, self.angular_cutoff)
        cos = torch.matmul(vectors, vectors.transpose(-1, -2)) / (r.unsqueeze(-1) * r.unsqueeze(-2))
        same = torch.eye(k, dtype=torch.bool, device=vectors.device)
        between = vectors.unsqueeze(-2) - vectors.unsqueeze(-3)
        d2_jk = (between * between).sum(-1)
        r_jk = torch.sqrt(d2_jk + same.to(d2_jk.dtype))  # the diagonal is exactly 0 -> 1: finite gradient
        r2 = r * r
        sum_r2 = r2.unsqueeze(-1) + r2.unsqueeze(-2) + r_jk * r_jk
        pair_weight = (w_j.unsqueeze(-1) * w_j.unsqueeze(-2)) * (f_c.unsqueeze(-1) * f_c.unsqueeze(-2)) \
            * polynomial_cutoff(r_jk, self.angular_cutoff).masked_fill(same, 0.0)
        base = 1.0 + cos.unsqueeze(-1) * self.lambdas  # [M, n, K, K, 2]
        squared = base * base
        angle = torch.cat([base, squared * squared], dim=-1) * self.angular_prefactor  # zeta = 1, 4
        radial_part = torch.exp(-sum_r2.unsqueeze(-1) * self.angular_eta) * pair_weight.unsqueeze(-1)
        m, n = angle.shape[0], angle.shape[1]
        angular = torch.matmul(radial_part.reshape(m, n, k * k, -1).transpose(-1, -2),
                               angle.reshape(m, n, k * k, -1)).reshape(m, n, -1)
        return angular


class HDNNP(NeuralPotential):
    """Behler-Parrinello network on weighted ACSF (energy in kJ/mol); the cheap option.

    Parameters
    ----------
    elements : sequence of str or int
        Elements the model is built for (one network per element).
    cutoff : float
        Radial cutoff in nm.
    angular_cutoff : float
        Angular cutoff in nm (at most ``cutoff``).
    n_radial : int
        Number of radial symmetry functions.
    angular_etas : sequence of float
        Angular widths in nm^-2 (4 angular functions each).
    hidden : sequence of int
        Hidden layer widths of the element networks (tanh activations).
    n_members, max_neighbors
        See :class:`~mlmm.potentials.base.NeuralPotential`.
    max_angular_neighbors : int
        Capacity of the angular neighbour list (same overflow rules).
    """

    family = "hdnnp"

    def __init__(self, elements: Sequence, cutoff: float = 0.5, angular_cutoff: float = 0.35, n_radial: int = 16,
                 angular_etas: Sequence[float] = (2.0, 8.0, 20.0), hidden: Sequence[int] = (32, 32),
                 n_members: int = 1, max_neighbors: int = DEFAULT_MAX_NEIGHBORS, max_angular_neighbors: int = 32):
        super().__init__(elements, cutoff, n_members, max_neighbors)
        if not 0 < angular_cutoff <= cutoff:
            raise ValueError(f"angular_cutoff must be in (0, cutoff={cutoff}] nm, got {angular_cutoff}")
        self.hyperparameters = dict(cutoff=cutoff, angular_cutoff=angular_cutoff, n_radial=n_radial,
                                    angular_etas=list(angular_etas), hidden=list(hidden),
                                    max_angular_neighbors=max_angular_neighbors)
        self.angular_cutoff = float(angular_cutoff)
        self.max_angular_neighbors = int(max_angular_neighbors)
        self.descriptor = WeightedACSF(self.supported_elements, cutoff, angular_cutoff, n_radial, angular_etas)
        n_in = self.descriptor.n_descriptors
        self.register_buffer("descriptor_mean", torch.zeros(n_in))
        self.register_buffer("descriptor_std", torch.ones(n_in))
        widths = [n_in] + list(hidden) + [1]
        self.layers = torch.nn.ModuleList([ElementLinear(n_members, self.n_elements, a, b)
                                           for a, b in zip(widths[:-1], widths[1:])])

    @torch.jit.export
    def descriptors(self, species: torch.Tensor, positions: torch.Tensor,
                    cell: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Unscaled wACSF descriptors [n, n_descriptors] of each atom (for fitting the input scaling)."""
        element_index, x, box = self.prepare(species, positions, cell)
        descriptors, _ = self.raw_descriptors(element_index, x.unsqueeze(0), box)
        return descriptors[0]

    def raw_descriptors(self, element_index: torch.Tensor, positions: torch.Tensor, cell: Optional[torch.Tensor]
                        ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Descriptors [M, n, D] for positions [M, n, 3], and whether a neighbour list overflowed."""
        neighbors, _, vectors, overflow = self.short_range_pairs(positions, cell)
        angular_neighbors, _, shifts, angular_overflow = neighbor_list(
            positions[0].detach(), self.angular_cutoff, self.max_angular_neighbors, cell,
            self.compact_lists(positions))
        descriptors = self.descriptor(element_index, neighbors, vectors, angular_neighbors,
                                      pair_vectors(positions, angular_neighbors, shifts))
        return descriptors, overflow | angular_overflow

    def set_input_scaling(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Store the descriptor mean and standard deviation (e.g. over a training set).

        Standard deviations below 1e-6 (descriptors constant in the data) are stored as 1.
        """
        if tuple(mean.shape) != tuple(self.descriptor_mean.shape) or tuple(std.shape) != tuple(mean.shape):
            raise ValueError(f"mean and std must have shape {tuple(self.descriptor_mean.shape)}")
        if not bool(torch.isfinite(mean).all() and torch.isfinite(std).all()) or bool((std < 0).any()):
            raise ValueError("descriptor means and standard deviations must be finite, deviations >= 0")
        self.descriptor_mean.copy_(mean)
        self.descriptor_std.copy_(torch.where(std < 1e-6, torch.ones_like(std), std))

    def member_outputs(self, element_index: torch.Tensor, positions: torch.Tensor,
                       cell: Optional[torch.Tensor], total_charge: float) -> Dict[str, torch.Tensor]:
        x, overflow = self.raw_descriptors(element_index, positions, cell)
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            if i == 0:
                x = layer.standardized(x, element_index, self.descriptor_mean, self.descriptor_std)
            else:
                x = layer(x, element_index)
            if i < last:
                x = torch.tanh(x)
        atomic_energies = self.scaled_energies(x.squeeze(-1), element_index)
        return {"energy": self.guard_overflow(atomic_energies.sum(-1), overflow),
                "atomic_energies": atomic_energies}
