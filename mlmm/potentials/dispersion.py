"""Grimme D2 pairwise dispersion, an optional add-on of the PhysNet-style model.

E_disp = -s6 sum_{i<j} C6_ij / r^6 * f(r),  C6_ij = sqrt(C6_i C6_j),
f(r) = 1 / (1 + exp(-d (r / (R0_i + R0_j) - 1))),  d = 20  (Grimme, J. Comput. Chem. 27, 1787 (2006)).
Coordination-independent C6 (D2), not the D3 reference-table C6(CN); see the README.
"""

from __future__ import annotations

from typing import Sequence

import torch

#: Grimme 2006 (D2) C6 in J nm^6 mol^-1 and van der Waals radius R0 in Angstrom, H..Ar.
D2_PARAMETERS = {
    1: (0.14, 1.001), 2: (0.08, 1.012), 3: (1.61, 0.825), 4: (1.61, 1.408), 5: (3.13, 1.485),
    6: (1.75, 1.452), 7: (1.23, 1.397), 8: (0.70, 1.342), 9: (0.75, 1.287), 10: (0.63, 1.243),
    11: (5.71, 1.144), 12: (5.71, 1.364), 13: (10.79, 1.639), 14: (9.23, 1.716), 15: (7.84, 1.705),
    16: (5.57, 1.683), 17: (5.07, 1.639), 18: (4.61, 1.595),
}
DAMPING_STEEPNESS = 20.0


class D2Dispersion(torch.nn.Module):
    """Pair energies (kJ/mol) of D2 dispersion for element indices into ``elements``.

    Parameters
    ----------
    elements : sequence of int
        Atomic numbers, in the order of the model's element indices.
    s6 : float
        Global scaling (0.75 for PBE, 1.05 for BLYP, 1.0 for B3LYP in Grimme's paper);
        0 switches the term off (then any element is accepted).
    """

    def __init__(self, elements: Sequence[int], s6: float):
        super().__init__()
        missing = [z for z in elements if z not in D2_PARAMETERS]
        if missing and s6 != 0.0:
            raise ValueError(f"D2 dispersion has parameters for H..Ar only; missing atomic numbers {missing}")
        self.s6 = float(s6)
        self.steepness = DAMPING_STEEPNESS
        # kJ nm^6/mol and nm
        self.register_buffer("c6", torch.tensor([D2_PARAMETERS.get(z, (0.0, 0.0))[0] * 1e-3 for z in elements]))
        self.register_buffer("r0", torch.tensor([D2_PARAMETERS.get(z, (0.0, 1.0))[1] * 0.1 for z in elements]))

    def forward(self, element_index: torch.Tensor, neighbors: torch.Tensor, distances: torch.Tensor) -> torch.Tensor:
        """Pair energies [..., n, K] for neighbour pairs (i, neighbors[i, k]) at ``distances`` (nm)."""
        c6 = self.c6.index_select(0, element_index)
        r0 = self.r0.index_select(0, element_index)
        c6_ij = torch.sqrt(c6.unsqueeze(1) * c6.index_select(0, neighbors.reshape(-1)).reshape(neighbors.shape))
        r0_ij = r0.unsqueeze(1) + r0.index_select(0, neighbors.reshape(-1)).reshape(neighbors.shape)
        damping = torch.sigmoid(self.steepness * (distances / r0_ij - 1.0))
        return -self.s6 * c6_ij * damping / distances.pow(6)
