"""Harmonic normal-mode analysis of a network potential: frequencies and IR intensities.

The Hessian comes from automatic differentiation (forces differentiated once more) or from central
differences of the forces; the IR intensity of mode k is (N_A / 12 eps0 c^2) |d mu / d Q_k|^2 with Q_k
the mass-weighted normal coordinate and mu the model's dipole (sum of its charges times positions).
Units: nm, amu, kJ/mol, cm^-1, km/mol.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import scipy.constants
import torch

from mlmm.data.sampling import hessian, normal_modes, optimize, potential_forces

#: IR intensity in km/mol of a dipole derivative of 1 e per sqrt(amu) along a mass-weighted normal coordinate.
KM_PER_MOL_PER_E2_PER_AMU = (scipy.constants.N_A / (12 * scipy.constants.epsilon_0 * scipy.constants.c ** 2)
                             * scipy.constants.e ** 2 / scipy.constants.atomic_mass / 1e3)
HESSIAN_METHODS = ("autograd", "finite-differences")


@dataclass(frozen=True)
class HarmonicAnalysis:
    """Normal modes of a structure (rigid-body motions removed).

    Attributes
    ----------
    positions : ndarray [n, 3]
        The (optimised) structure, nm.
    energy : float
        Its energy, kJ/mol.
    wavenumbers : ndarray [modes]
        cm^-1; negative for imaginary frequencies.
    force_constants : ndarray [modes]
        kJ/mol/nm^2 along each Cartesian unit mode vector.
    modes : ndarray [modes, n, 3]
        Cartesian unit vectors of the modes.
    ir_intensities : ndarray [modes] or None
        km/mol; None for a model without charges.
    """

    positions: np.ndarray
    energy: float
    wavenumbers: np.ndarray
    force_constants: np.ndarray
    modes: np.ndarray
    ir_intensities: Optional[np.ndarray]


def harmonic_analysis(model: torch.nn.Module, species: Sequence[int], positions, masses: Sequence[float],
                      optimize_first: bool = True, fmax: float = 0.01,
                      method: str = "autograd") -> HarmonicAnalysis:
    """Optimise (unless told not to), then compute normal modes and IR intensities of ``model``.

    Parameters
    ----------
    model : torch.nn.Module
        An mlmm network potential (a loaded ``.pt`` or a module) or any potential-contract module;
        IR intensities need ``model.evaluate(...)["dipole"]`` (charge models).
    species : sequence of int
        Atomic numbers.
    positions : array [n, 3]
        nm.
    masses : sequence of float
        amu.
    optimize_first : bool
        Minimise (L-BFGS) until the largest force component is below ``fmax`` (kJ/mol/nm); frequencies
        at a non-stationary point are not harmonic frequencies.
    method : str
        "autograd" (exact Hessian; default) or "finite-differences" (of autograd forces, 1e-4 nm steps).
    """
    if method not in HESSIAN_METHODS:
        raise ValueError(f"method={method!r} is not one of {HESSIAN_METHODS}")
    species = np.asarray(species, dtype=np.int64)
    positions = np.asarray(positions, dtype=np.float64)
    if positions.shape != (len(species), 3):
        raise ValueError(f"positions must be [{len(species)}, 3] nm for {len(species)} atoms, got {positions.shape}")
    force_fn = potential_forces(model, species)
    if optimize_first:
        positions = optimize(positions, force_fn, fmax=fmax)
    energy, forces = force_fn(positions)
    largest = float(np.abs(forces).max())
    if largest > 1.0:
        raise ValueError(f"the structure is not at a stationary point (largest force {largest:.3g} kJ/mol/nm); "
                         "optimise first (optimize_first=True)")
    matrix = autograd_hessian(model, species, positions) if method == "autograd" else hessian(positions, force_fn)
    wavenumbers, force_constants, modes = normal_modes(matrix, masses, positions)
    intensities = None
    jacobian = dipole_jacobian(model, species, positions)
    if jacobian is not None:
        sqrt_masses = np.sqrt(np.asarray(masses, dtype=np.float64))[None, :, None]
        # a unit step of the mass-weighted coordinate Q_k moves the atoms by q_k / |M^1/2 q_k| (nm)
        steps = modes / np.linalg.norm((modes * sqrt_masses).reshape(len(modes), -1), axis=1)[:, None, None]
        derivatives = np.einsum("xnc,knc->kx", jacobian, steps)  # e / sqrt(amu)
        intensities = KM_PER_MOL_PER_E2_PER_AMU * (derivatives ** 2).sum(1)
    return HarmonicAnalysis(positions, energy, wavenumbers, force_constants, modes, intensities)


def autograd_hessian(model: torch.nn.Module, species: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Cartesian Hessian [3n, 3n] (kJ/mol/nm^2): the gradient differentiated once more, row by row."""
    species_t = torch.as_tensor(species, dtype=torch.long)
    x = torch.tensor(positions, dtype=torch.float64, requires_grad=True)
    (gradient,) = torch.autograd.grad(model(species_t, x), x, create_graph=True)
    flat = gradient.reshape(-1)
    rows = [torch.autograd.grad(flat[k], x, retain_graph=True)[0].reshape(-1) for k in range(flat.numel())]
    matrix = torch.stack(rows).detach().numpy()
    return 0.5 * (matrix + matrix.T)


def dipole_jacobian(model: torch.nn.Module, species: np.ndarray, positions: np.ndarray) -> Optional[np.ndarray]:
    """d mu_x / d r_n [3, n, 3] (e) of the model's committee-mean dipole, or None without charges."""
    if not hasattr(model, "evaluate"):
        return None
    species_t = torch.as_tensor(species, dtype=torch.long)
    x = torch.tensor(positions, dtype=torch.float64, requires_grad=True)
    outputs = model.evaluate(species_t, x)
    if "dipole" not in outputs:
        return None
    dipole = outputs["dipole"].mean(0)
    rows = [torch.autograd.grad(dipole[k], x, retain_graph=k < 2)[0] for k in range(3)]
    return torch.stack(rows).detach().numpy()
