"""PaiNN-style equivariant message passing with PhysNet's charges, Coulomb and dispersion terms.

Schütt, Unke & Gastegger, ICML 2021 (arXiv:2102.03150). Each atom carries scalar features
s_i [F] and vector features v_i [3, F] (v starts at zero). A module first passes messages
over the neighbours j within the cutoff, with unit vectors e_ij = r_ij / |r_ij|:

    (ds, dv_v, dv_s)_ij = phi(s_j) * W(r_ij),   phi = Dense(silu(Dense(s))),  W = Dense(basis)
    s_i += sum_j ds_ij,        v_i += sum_j (v_j dv_v,ij + e_ij dv_s,ij),

then updates each atom from its own features, with U v and V v linear mixes of the vector
channels (no bias, so they rotate with v):

    (a_vv, a_sv, a_ss) = Dense(silu(Dense([s_i, |V v_i|])))
    v_i += a_vv U v_i,         s_i += a_sv <U v_i, V v_i> + a_ss.

Scalars are invariant and vectors rotate with the molecule, so the energy is invariant while
the network sees directions (angles between bonds, hydrogen-bond geometry) from the first
module on, which radial-only messages (PhysNet, SchNet) recover only through several modules.
A head Dense(silu(Dense(s_i))) gives (E_i, q_i), and everything after it (charge correction,
damped Coulomb, D2 dispersion, atom weights of the buffer embedding) is PhysNet's: see
:mod:`mlmm.potentials.physnet`. The filter W has no bias and the basis carries the cutoff,
so messages vanish smoothly at r_c and a message from an atom of weight 0 is zero.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
from torch.nn.functional import silu

from mlmm.potentials.base import DEFAULT_MAX_NEIGHBORS
from mlmm.potentials.layers import MemberLinear, gather_neighbors
from mlmm.potentials.physnet import PhysNet

#: Added to |V v|^2 before the square root, so its gradient is finite where v = 0 (the start).
NORM_EPSILON = 1e-8


class PaiNNModule(torch.nn.Module):
    """One message and one update step on scalar [M, n, F] and vector [M, n, 3, F] features."""

    def __init__(self, n_members: int, n_features: int, n_basis: int):
        super().__init__()
        self.n_features = n_features
        self.norm_epsilon = NORM_EPSILON
        self.context = MemberLinear(n_members, n_features, n_features)
        self.context_out = MemberLinear(n_members, n_features, 3 * n_features)
        self.filter = MemberLinear(n_members, n_basis, 3 * n_features, bias=False)
        self.vector_mix = MemberLinear(n_members, n_features, 2 * n_features, bias=False)
        self.update = MemberLinear(n_members, 2 * n_features, n_features)
        self.update_out = MemberLinear(n_members, n_features, 3 * n_features)

    def forward(self, s: torch.Tensor, v: Optional[torch.Tensor], basis: torch.Tensor, neighbors: torch.Tensor,
                directions: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """New (s, v) from s [M, n, F], v [M, n, 3, F], the basis [M, n, K, n_basis] and unit vectors
        [M, n, K, 3] of the pairs in ``neighbors`` ([n, K], or [M, n, K] for frames batched along the member
        axis). v None stands for zero (the first module):
        the messages carried by the neighbours' vectors are then zero and are skipped."""
        f = self.n_features
        m, n, k = basis.shape[0], basis.shape[1], basis.shape[2]
        messages = gather_neighbors(self.context_out(silu(self.context(s))), neighbors) * self.filter(basis)
        ds, dv_vector, dv_direction = messages.split(f, dim=-1)  # each [M, n, K, F]
        s = s + ds.sum(2)
        # sum_j e_ij dv_s,ij as one batched product [3, K] x [K, F] per atom
        along_directions = torch.bmm(directions.reshape(m * n, k, 3).transpose(1, 2),
                                     dv_direction.reshape(m * n, k, f)).reshape(m, n, 3, f)
        if v is None:
            v = along_directions
        else:
            v_j = gather_neighbors(v.reshape(m, n, 3 * f), neighbors).reshape(m, n, k, 3, f)
            v = v + (v_j * dv_vector.unsqueeze(3)).sum(2) + along_directions

        u, w = self.vector_mix(v).split(f, dim=-1)  # each [M, n, 3, F]
        w_norm = torch.sqrt((w * w).sum(2) + self.norm_epsilon)
        a = self.update_out(silu(self.update(torch.cat([s, w_norm], dim=-1))))
        a_vv, a_sv, a_ss = a.split(f, dim=-1)
        v = v + a_vv.unsqueeze(2) * u
        s = s + a_sv * (u * w).sum(2) + a_ss
        return s, v


class PaiNN(PhysNet):
    """Equivariant (PaiNN-style) network predicting energy (kJ/mol), charges (e) and dipole (e nm).

    Parameters
    ----------
    n_features, n_basis, n_modules : int
        Feature width (scalar and vector channels alike), radial basis size and number of
        message + update modules (PaiNN's paper uses 3).
    elements, cutoff, coulomb_cutoff, dispersion_s6, total_charge, n_members, max_neighbors
        As for :class:`~mlmm.potentials.physnet.PhysNet`.
    """

    family = "painn"

    def __init__(self, elements: Sequence, cutoff: float = 0.5, n_features: int = 64, n_basis: int = 16,
                 n_modules: int = 3, coulomb_cutoff: Optional[float] = None, dispersion_s6: Optional[float] = None,
                 total_charge: float = 0.0, n_members: int = 1, max_neighbors: int = DEFAULT_MAX_NEIGHBORS):
        if n_modules < 1:
            raise ValueError(f"n_modules must be at least 1, got {n_modules}")
        # PhysNet's own modules are not built (n_modules=0): this class replaces them.
        super().__init__(elements, cutoff, n_features, n_basis, 0, (0, 0, 0), coulomb_cutoff, dispersion_s6,
                         total_charge, n_members, max_neighbors)
        self.hyperparameters = dict(cutoff=cutoff, n_features=n_features, n_basis=n_basis, n_modules=n_modules,
                                    coulomb_cutoff=coulomb_cutoff, dispersion_s6=dispersion_s6)
        self.blocks = torch.nn.ModuleList([PaiNNModule(n_members, n_features, n_basis) for _ in range(n_modules)])
        self.head = MemberLinear(n_members, n_features, n_features)
        self.output = MemberLinear(n_members, n_features, 2)
        torch.nn.init.zeros_(self.output.weight)  # start from zero outputs, as PhysNet does

    def refine(self, element_index: torch.Tensor, basis: torch.Tensor, neighbors: torch.Tensor,
               vectors: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        s = self.embedding.index_select(1, element_index)
        v: Optional[torch.Tensor] = None  # zero until the first module
        directions = vectors / r.unsqueeze(-1)
        for block in self.blocks:
            s, v = block(s, v, basis, neighbors, directions)
        return self.output(silu(self.head(s)))
