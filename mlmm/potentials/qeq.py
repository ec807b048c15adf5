"""Charge equilibration (QEq): geometry-dependent atomic charges for any energy potential.

:class:`QEqCharges` wraps a potential that predicts only energies and adds
``energy_and_charges``: charges that minimise

    sum_i chi_i q_i + 1/2 sum_i J_i q_i^2 + 1/2 k_e sum_{i != j} q_i q_j erf(r_ij / s_ij) / r_ij

subject to sum_i q_i = Q, with Gaussian charge widths s_ij = sqrt(s_i^2 + s_j^2) and
s_i = k_e / (J_i sqrt(pi)) (so that a Gaussian's self-energy equals J_i). Parameters are
Rappe and Goddard's (J. Phys. Chem. 95, 3358 (1991)). The energy is the wrapped
potential's; the charges add the dq/dR terms to forces of charge-coupled embeddings.
"""

from __future__ import annotations

import math
from typing import Tuple

import torch

from mlmm.units import COULOMB_CONSTANT

EV_TO_KJ_PER_MOL = 96.48533212
#: Electronegativity chi and hardness J in eV (Rappe & Goddard 1991), by atomic number.
QEQ_PARAMETERS_EV = {
    1: (4.528, 13.890), 6: (5.343, 10.126), 7: (6.899, 11.760), 8: (8.741, 13.364),
    9: (10.874, 14.948), 15: (5.463, 8.000), 16: (6.928, 8.972), 17: (8.564, 9.892),
}


class QEqCharges(torch.nn.Module):
    """Add QEq charges (in e) to an energy-only potential.

    Parameters
    ----------
    potential : torch.nn.Module
        Any module with ``forward(species, positions) -> energy``.
    total_charge : float
        Default total charge in e used by ``forward``'s callers that do not give one.
    """

    def __init__(self, potential: torch.nn.Module, total_charge: float = 0.0):
        super().__init__()
        self.potential = potential
        self.default_total_charge = float(total_charge)
        self.coulomb_constant = COULOMB_CONSTANT
        self.sqrt_pi = math.sqrt(math.pi)
        own = set(QEQ_PARAMETERS_EV)
        inner = getattr(potential, "supported_elements", None)
        self.supported_elements = sorted(own if inner is None else own & set(int(z) for z in inner))
        table = torch.zeros(max(QEQ_PARAMETERS_EV) + 1, 2, dtype=torch.float64)
        for z, (chi, hardness) in QEQ_PARAMETERS_EV.items():
            table[z, 0] = chi * EV_TO_KJ_PER_MOL
            table[z, 1] = hardness * EV_TO_KJ_PER_MOL
        self.register_buffer("table", table)  # chi [kJ/mol/e], J [kJ/mol/e^2]

    def forward(self, species: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return self.potential(species, positions)

    @torch.jit.export
    def charges(self, species: torch.Tensor, positions: torch.Tensor, total_charge: float) -> torch.Tensor:
        """QEq charges in e for ``positions`` in nm, summing exactly to ``total_charge``."""
        x = positions.to(self.table.dtype)
        chi = self.table[species, 0]
        hardness = self.table[species, 1]
        width = self.coulomb_constant / (hardness * self.sqrt_pi)
        n = species.shape[0]
        eye = torch.eye(n, dtype=x.dtype, device=x.device)
        delta = x.unsqueeze(0) - x.unsqueeze(1)
        r = torch.sqrt((delta * delta).sum(-1) + eye)  # eye keeps the diagonal finite; it is masked below
        s = torch.sqrt(width.unsqueeze(0) ** 2 + width.unsqueeze(1) ** 2)
        coupling = self.coulomb_constant * torch.erf(r / s) / r * (1.0 - eye) + torch.diag(hardness)
        ones = torch.ones(n, 1, dtype=x.dtype, device=x.device)
        top = torch.cat([coupling, ones], dim=1)
        bottom = torch.cat([ones.t(), torch.zeros(1, 1, dtype=x.dtype, device=x.device)], dim=1)
        matrix = torch.cat([top, bottom], dim=0)
        rhs = torch.cat([-chi, torch.full((1,), total_charge, dtype=x.dtype, device=x.device)])
        # solve_ex: linalg.solve checks the factorization on the host, a synchronisation that breaks CUDA graphs
        return torch.linalg.solve_ex(matrix, rhs)[0][:n]

    @torch.jit.export
    def energy_and_charges(self, species: torch.Tensor, positions: torch.Tensor,
                           total_charge: float) -> Tuple[torch.Tensor, torch.Tensor]:
        """Energy of the wrapped potential (kJ/mol) and QEq charges (e)."""
        return self.potential(species, positions), self.charges(species, positions, total_charge)
