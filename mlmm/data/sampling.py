"""Geometry samplers: optimisation, normal modes, normal-mode sampling, Langevin MD, umbrella windows.

Samplers work on numpy arrays in OpenMM units (nm, kJ/mol, ps, amu, K) with a force
function ``force_fn(positions [n, 3]) -> (energy, forces [n, 3])``; see
:func:`calculator_forces` (a reference calculator) and :func:`potential_forces` (a network).
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple

import numpy as np
import scipy.optimize

from mlmm.units import MOLAR_GAS_CONSTANT, SPEED_OF_LIGHT_CM_PER_PS

ForceFn = Callable[[np.ndarray], Tuple[float, np.ndarray]]


def calculator_forces(calculator, species, total_charge: int = 0, multiplicity: int = 1) -> ForceFn:
    """Force function of a reference calculator (gas phase)."""
    def force_fn(positions):
        result = calculator.compute(species, positions, total_charge, multiplicity)
        return result["energy"], result["forces"]
    return force_fn


def potential_forces(model, species) -> ForceFn:
    """Force function of an mlmm network (committee mean), evaluated in float64."""
    import torch

    species_t = torch.as_tensor(np.asarray(species), dtype=torch.long)

    def force_fn(positions):
        x = torch.tensor(positions, dtype=torch.float64, requires_grad=True)
        energy = model(species_t, x)
        (gradient,) = torch.autograd.grad(energy, x)
        return float(energy.detach()), -gradient.numpy()
    return force_fn


def optimize(positions: np.ndarray, force_fn: ForceFn, fmax: float = 1.0, max_steps: int = 1000) -> np.ndarray:
    """Minimise the energy (L-BFGS) until the largest force component is below ``fmax`` (kJ/mol/nm).

    The optimiser works in coordinates of 0.01 nm, so that its first trial step (about the
    gradient's size) moves atoms by hundredths of a nm even with forces of 10^3 kJ/mol/nm.
    """
    start = np.asarray(positions, dtype=np.float64)
    scale = 100.0  # optimiser coordinate per nm

    def objective(flat):
        energy, forces = force_fn(flat.reshape(start.shape) / scale)
        return energy, -forces.ravel() / scale

    result = scipy.optimize.minimize(objective, start.ravel() * scale, jac=True, method="L-BFGS-B",
                                     options={"maxiter": max_steps, "gtol": fmax / scale, "ftol": 1e-15})
    final = result.x.reshape(start.shape) / scale
    largest = np.abs(force_fn(final)[1]).max()
    if largest > fmax:
        raise RuntimeError(f"optimisation did not converge: largest force {largest:.3g} kJ/mol/nm > fmax {fmax} "
                           f"after {result.nit} steps ({result.message})")
    return final


def hessian(positions: np.ndarray, force_fn: ForceFn, step: float = 1e-4) -> np.ndarray:
    """Cartesian Hessian [3n, 3n] (kJ/mol/nm^2) by central differences of the forces, symmetrised."""
    x = np.asarray(positions, dtype=np.float64)
    columns = []
    for k in range(x.size):
        plus, minus = x.copy().ravel(), x.copy().ravel()
        plus[k] += step
        minus[k] -= step
        f_plus = force_fn(plus.reshape(x.shape))[1].ravel()
        f_minus = force_fn(minus.reshape(x.shape))[1].ravel()
        columns.append(-(f_plus - f_minus) / (2 * step))
    h = np.array(columns)
    return 0.5 * (h + h.T)


def _rigid_body_basis(positions: np.ndarray, masses: np.ndarray) -> np.ndarray:
    """Orthonormal mass-weighted translations and rotations [3n, 6 or 5]."""
    sqrt_m = np.sqrt(masses)
    centred = positions - (masses[:, None] * positions).sum(0) / masses.sum()
    vectors = []
    for axis in np.eye(3):
        vectors.append((sqrt_m[:, None] * axis[None, :]).ravel())
        vectors.append((sqrt_m[:, None] * np.cross(axis[None, :], centred)).ravel())
    basis, singular, _ = np.linalg.svd(np.array(vectors).T, full_matrices=False)
    return basis[:, singular > 1e-6 * singular.max()]


def normal_modes(hessian_matrix: np.ndarray, masses: Sequence[float], positions: np.ndarray
                 ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Harmonic normal modes without translations and rotations (3N-6, or 3N-5 if linear).

    The mass-weighted Hessian H_ij / sqrt(m_i m_j) is projected onto the complement of the
    rigid-body motions and diagonalised: eigenvalues lambda_i = omega_i^2 (ps^-2 with
    masses in amu), mass-weighted eigenvectors e_i. A Cartesian unit vector along mode i is
    q_i = M^-1/2 e_i / |M^-1/2 e_i|; displacing by R q_i changes the harmonic energy by
    (1/2) k_i R^2 with k_i = lambda_i / |M^-1/2 e_i|^2 = q_i^T H q_i (kJ/mol/nm^2).

    Returns
    -------
    wavenumbers : [modes] cm^-1 (negative for imaginary frequencies)
    force_constants : [modes] kJ/mol/nm^2
    modes : [modes, n, 3] Cartesian unit vectors q_i
    """
    masses = np.asarray(masses, dtype=np.float64)
    positions = np.asarray(positions, dtype=np.float64)
    n = len(masses)
    if hessian_matrix.shape != (3 * n, 3 * n):
        raise ValueError(f"the Hessian of {n} atoms must be [{3 * n}, {3 * n}], got {hessian_matrix.shape}")
    if (masses <= 0).any():
        raise ValueError("masses must be positive (amu)")
    inv_sqrt_m = np.repeat(1.0 / np.sqrt(masses), 3)
    weighted = hessian_matrix * inv_sqrt_m[:, None] * inv_sqrt_m[None, :]
    rigid = _rigid_body_basis(positions, masses)
    projector = np.eye(3 * n) - rigid @ rigid.T
    eigenvalues, vectors = np.linalg.eigh(projector @ weighted @ projector)
    internal = np.argsort(np.abs((rigid.T @ vectors)).sum(0))[:3 * n - rigid.shape[1]]  # drop rigid-body ones
    internal = internal[np.argsort(eigenvalues[internal])]
    eigenvalues, vectors = eigenvalues[internal], vectors[:, internal]
    cartesian = vectors * inv_sqrt_m[:, None]
    norms = np.linalg.norm(cartesian, axis=0)
    force_constants = eigenvalues / norms ** 2
    wavenumbers = np.sign(eigenvalues) * np.sqrt(np.abs(eigenvalues)) / (2 * np.pi * SPEED_OF_LIGHT_CM_PER_PS)
    return wavenumbers, force_constants, (cartesian / norms).T.reshape(-1, n, 3)


def normal_mode_sampling(positions: np.ndarray, modes: np.ndarray, force_constants: np.ndarray,
                         temperature: float, n_samples: int, seed: int) -> np.ndarray:
    """Geometries displaced along the normal modes (Smith et al.; PHYSICS.md section 3).

    For each sample, c_i = s * u_i with s ~ U(0, 1) and u a uniform point on the simplex
    (so c_i >= 0 and sum c_i = s is uniform on [0, 1]); R_i = +-sqrt(3 c_i R T / k_i) with a
    random sign. The harmonic energy of a sample is therefore (3/2) R T s, uniform on
    [0, 3/2 RT]. Modes with k_i <= 0 are not displaced.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive (K), got {temperature}")
    rng = np.random.default_rng(seed)
    stable = force_constants > 0
    k, q = force_constants[stable], modes[stable]
    total = rng.uniform(0.0, 1.0, n_samples)
    shares = rng.dirichlet(np.ones(len(k)), n_samples)
    c = total[:, None] * shares
    signs = rng.choice([-1.0, 1.0], size=c.shape)
    amplitudes = signs * np.sqrt(3.0 * c * MOLAR_GAS_CONSTANT * temperature / k)
    return positions[None] + np.einsum("sm,mnd->snd", amplitudes, q)


def langevin_md(positions: np.ndarray, masses: Sequence[float], force_fn: ForceFn, temperature: float,
                n_steps: int, timestep: float = 0.0005, friction: float = 1.0, save_every: int = 10,
                seed: int = 0, bias: Optional[ForceFn] = None, stop_on_failure: bool = False) -> dict:
    """BAOAB Langevin dynamics; returns saved ``positions`` [frames, n, 3] and unbiased ``energies``.

    ``timestep`` in ps, ``friction`` in 1/ps. ``bias`` adds (energy, forces) to the dynamics
    only. If the energy or positions become non-finite, RuntimeError is raised, or with
    ``stop_on_failure`` the frames saved so far are returned with ``failed_at_step`` set
    (exploring with a model that is still poor, where failures are information).
    """
    masses = np.asarray(masses, dtype=np.float64)[:, None]
    if temperature <= 0 or timestep <= 0 or (masses <= 0).any():
        raise ValueError("temperature, timestep and masses must be positive")
    rng = np.random.default_rng(seed)
    kt = MOLAR_GAS_CONSTANT * temperature
    x = np.array(positions, dtype=np.float64)
    v = rng.normal(size=x.shape) * np.sqrt(kt / masses)

    def total_forces(y):
        energy, forces = force_fn(y)
        if bias is not None:
            forces = forces + bias(y)[1]
        return energy, forces

    energy, f = total_forces(x)
    decay = np.exp(-friction * timestep)
    noise = np.sqrt((1 - decay ** 2) * kt / masses)
    frames, energies = [], []
    for step in range(1, n_steps + 1):
        v += 0.5 * timestep * f / masses
        x += 0.5 * timestep * v
        v = decay * v + noise * rng.normal(size=x.shape)
        x += 0.5 * timestep * v
        energy, f = total_forces(x)
        v += 0.5 * timestep * f / masses
        if not (np.isfinite(energy) and np.isfinite(x).all()):
            if stop_on_failure:
                return {"positions": np.array(frames).reshape(-1, *x.shape), "energies": np.array(energies),
                        "failed_at_step": step}
            raise RuntimeError(f"the dynamics blew up at step {step} (non-finite energy or positions); "
                               "reduce the timestep or the temperature")
        if step % save_every == 0:
            frames.append(x.copy())
            energies.append(energy)
    return {"positions": np.array(frames).reshape(-1, *x.shape), "energies": np.array(energies),
            "failed_at_step": None}


class DistanceDifference:
    """Reaction coordinate xi = mean over (a, b, c) of d(a, b) - d(b, c) (nm): a proton b moving a -> c."""

    def __init__(self, triples: Sequence[Tuple[int, int, int]]):
        self.triples = [tuple(int(i) for i in t) for t in triples]
        if not self.triples or any(len(t) != 3 for t in self.triples):
            raise ValueError("give one or more (donor, hydrogen, acceptor) index triples")

    def __call__(self, positions: np.ndarray) -> Tuple[float, np.ndarray]:
        """Value (nm) and gradient [n, 3] (dimensionless) of xi."""
        gradient = np.zeros_like(positions)
        value = 0.0
        for a, b, c in self.triples:
            ab, bc = positions[b] - positions[a], positions[c] - positions[b]
            d_ab, d_bc = np.linalg.norm(ab), np.linalg.norm(bc)
            value += d_ab - d_bc
            gradient[b] += ab / d_ab + bc / d_bc
            gradient[a] -= ab / d_ab
            gradient[c] -= bc / d_bc
        return value / len(self.triples), gradient / len(self.triples)


def harmonic_bias(coordinate: Callable, centre: float, k: float) -> ForceFn:
    """Umbrella potential (1/2) k (xi - centre)^2 with k in kJ/mol/nm^2."""
    def bias(positions):
        value, gradient = coordinate(positions)
        return 0.5 * k * (value - centre) ** 2, -k * (value - centre) * gradient
    return bias


def umbrella_sampling(positions: np.ndarray, masses, force_fn: ForceFn, coordinate: Callable,
                      centres: Sequence[float], k: float, temperature: float, n_steps: int,
                      equilibration_steps: int = 200, save_every: int = 10, timestep: float = 0.0005,
                      friction: float = 1.0, seed: int = 0) -> dict:
    """Biased Langevin MD in windows along ``coordinate``, each started from the previous window's end.

    Returns ``positions`` [frames, n, 3], ``energies`` (unbiased), ``window`` [frames] and
    ``coordinate`` [frames] (nm). The first ``equilibration_steps`` of each window are discarded.
    """
    frames, energies, windows, values = [], [], [], []
    x = np.asarray(positions, dtype=np.float64)
    for w, centre in enumerate(centres):
        bias = harmonic_bias(coordinate, centre, k)
        warm = langevin_md(x, masses, force_fn, temperature, equilibration_steps, timestep, friction,
                           save_every=max(equilibration_steps, 1), seed=seed + 2 * w, bias=bias)
        x = warm["positions"][-1] if len(warm["positions"]) else x
        run = langevin_md(x, masses, force_fn, temperature, n_steps, timestep, friction, save_every=save_every,
                          seed=seed + 2 * w + 1, bias=bias)
        x = run["positions"][-1]
        frames.append(run["positions"])
        energies.append(run["energies"])
        windows.append(np.full(len(run["positions"]), w))
        values.append([coordinate(p)[0] for p in run["positions"]])
    return {"positions": np.concatenate(frames), "energies": np.concatenate(energies),
            "window": np.concatenate(windows), "coordinate": np.concatenate(values)}


def remove_near_duplicates(positions: np.ndarray, threshold: float) -> np.ndarray:
    """Indices of frames to keep: a frame is dropped when its interatomic distances all lie within
    an RMS difference of ``threshold`` (nm) of an earlier kept frame (invariant to rotation and
    translation)."""
    n = positions.shape[1]
    i, j = np.triu_indices(n, 1)
    distances = np.linalg.norm(positions[:, i] - positions[:, j], axis=-1)
    kept: list = []
    for k in range(len(distances)):
        if kept:
            rms = np.sqrt(((distances[kept] - distances[k]) ** 2).mean(1))
            if rms.min() < threshold:
                continue
        kept.append(k)
    return np.array(kept, dtype=np.int64)
