"""Smooth switching functions and Coulomb kernels used by the charge-coupled embeddings."""

from __future__ import annotations

import torch

from mlmm.potentials.layers import smooth_switch

__all__ = ["reaction_field", "shifted_force", "smooth_switch"]


def reaction_field(r: torch.Tensor, cutoff: float, dielectric: float) -> torch.Tensor:
    """Reaction-field kernel 1/r + k_rf r^2 - c_rf (nm^-1), OpenMM's constants.

    k_rf = (eps - 1) / ((2 eps + 1) r_c^3), c_rf = 1/r_c + k_rf r_c^2; the kernel and its
    slope vanish at the cutoff for a conducting (eps -> inf) continuum.
    """
    k_rf = (dielectric - 1.0) / ((2.0 * dielectric + 1.0) * cutoff ** 3)
    c_rf = 1.0 / cutoff + k_rf * cutoff * cutoff
    return 1.0 / r + k_rf * r * r - c_rf


def shifted_force(r: torch.Tensor, cutoff: float) -> torch.Tensor:
    """Shifted-force kernel 1/r - 1/r_c + (r - r_c)/r_c^2 (nm^-1), zero beyond the cutoff.

    Value and slope vanish at r_c, so the kernel is C1 there.
    """
    inside = 1.0 / r - 1.0 / cutoff + (r - cutoff) / (cutoff * cutoff)
    return torch.where(r < cutoff, inside, torch.zeros_like(r))
