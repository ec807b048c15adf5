"""Samplers on harmonic models whose exact answers are known."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from mlmm.data.sampling import (DistanceDifference, hessian, langevin_md, normal_mode_sampling, normal_modes,
                                optimize, remove_near_duplicates, umbrella_sampling)
from mlmm.units import MOLAR_GAS_CONSTANT

MASSES = np.array([12.0, 16.0, 1.0, 1.0, 14.0])
POSITIONS = np.array([[0.0, 0.0, 0.0], [0.12, 0.01, 0.0], [-0.05, 0.09, 0.02], [-0.04, -0.09, 0.03],
                      [0.2, 0.1, -0.1]])


def rigid_body_free_hessian(seed: int = 0):
    """A Cartesian Hessian whose mass-weighted form W has rigid-body null space and known spectrum."""
    rng = np.random.default_rng(seed)
    n = len(MASSES)
    sqrt_m = np.repeat(np.sqrt(MASSES), 3)
    centred = POSITIONS - (MASSES[:, None] * POSITIONS).sum(0) / MASSES.sum()
    rigid = []
    for axis in np.eye(3):
        rigid.append((np.sqrt(MASSES)[:, None] * axis).ravel())
        rigid.append((np.sqrt(MASSES)[:, None] * np.cross(axis, centred)).ravel())
    basis = np.linalg.qr(np.array(rigid).T)[0]
    internal = np.linalg.qr(np.concatenate([basis, rng.normal(size=(3 * n, 3 * n - 6))], axis=1))[0][:, 6:]
    eigenvalues = np.sort(rng.uniform(1e3, 5e5, 3 * n - 6))  # omega^2 in ps^-2
    weighted = internal @ np.diag(eigenvalues) @ internal.T
    return weighted * sqrt_m[:, None] * sqrt_m[None, :], eigenvalues


def quadratic_force_fn(h: np.ndarray, minimum: np.ndarray):
    def force_fn(x):
        d = (x - minimum).ravel()
        return 0.5 * d @ h @ d, -(h @ d).reshape(minimum.shape)
    return force_fn


def test_normal_modes_recover_the_spectrum_and_force_constants():
    h, eigenvalues = rigid_body_free_hessian()
    wavenumbers, force_constants, modes = normal_modes(h, MASSES, POSITIONS)
    expected = np.sqrt(eigenvalues) / (2 * np.pi * 2.99792458e-2)
    np.testing.assert_allclose(wavenumbers, expected, rtol=1e-9)
    flat = modes.reshape(len(modes), -1)
    np.testing.assert_allclose(np.linalg.norm(flat, axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(np.einsum("mi,ij,mj->m", flat, h, flat), force_constants, rtol=1e-9)
    cross = flat @ h @ flat.T  # modes do not couple in the harmonic energy
    np.testing.assert_allclose(cross - np.diag(np.diag(cross)), 0.0, atol=1e-6 * force_constants.max())


def test_finite_difference_hessian_matches_the_analytic_one():
    h, _ = rigid_body_free_hessian()
    numeric = hessian(POSITIONS, quadratic_force_fn(h, POSITIONS), step=1e-4)
    np.testing.assert_allclose(numeric, h, atol=1e-6 * np.abs(h).max())


def test_normal_mode_sampling_energies_follow_the_intended_distribution():
    """E = sum_i k_i R_i^2 / 2 = (3/2) R T sum_i c_i with sum_i c_i ~ U(0, 1): E / (1.5 RT) is uniform."""
    h, _ = rigid_body_free_hessian()
    _, force_constants, modes = normal_modes(h, MASSES, POSITIONS)
    temperature = 500.0
    samples = normal_mode_sampling(POSITIONS, modes, force_constants, temperature, 4000, seed=3)
    d = (samples - POSITIONS).reshape(len(samples), -1)
    energies = 0.5 * np.einsum("si,ij,sj->s", d, h, d)
    scaled = energies / (1.5 * MOLAR_GAS_CONSTANT * temperature)
    assert stats.kstest(scaled, "uniform").pvalue > 0.01
    assert scaled.max() <= 1.0 + 1e-9
    amplitudes = np.linalg.lstsq(modes.reshape(len(modes), -1).T, d.T, rcond=None)[0].T  # d = sum_i R_i q_i
    per_mode = 0.5 * force_constants * amplitudes ** 2
    # E[c_i] = E[s] / N_f = 1 / (2 N_f): each mode holds the same mean share
    np.testing.assert_allclose(per_mode.mean(0) / (1.5 * MOLAR_GAS_CONSTANT * temperature),
                               1.0 / (2 * len(modes)), rtol=0.1)  # 4000 samples: ~3 % standard error
    # no rigid-body motion: centre of mass fixed
    com = (MASSES[None, :, None] * samples).sum(1) / MASSES.sum()
    np.testing.assert_allclose(com, np.broadcast_to((MASSES[:, None] * POSITIONS).sum(0) / MASSES.sum(), com.shape),
                               atol=1e-12)


def test_langevin_md_samples_the_boltzmann_distribution_of_springs():
    k, temperature = 1000.0, 300.0
    anchors = POSITIONS

    def springs(x):
        return 0.5 * k * ((x - anchors) ** 2).sum(), -k * (x - anchors)

    run = langevin_md(anchors, MASSES * 10, springs, temperature, n_steps=30000, timestep=0.002, friction=5.0,
                      save_every=10, seed=1)
    expected = 1.5 * MOLAR_GAS_CONSTANT * temperature * len(MASSES)  # (1/2) RT per degree of freedom
    # ~3000 frames, correlation time ~0.1 ps: the mean is known to about 1.5 %
    assert run["energies"].mean() == pytest.approx(expected, rel=0.05)


def test_optimize_finds_the_minimum_of_a_quadratic():
    h, _ = rigid_body_free_hessian()
    force_fn = quadratic_force_fn(h + 1e3 * np.eye(len(h)), POSITIONS)  # positive definite everywhere
    found = optimize(POSITIONS + 0.01, force_fn, fmax=1e-3)
    np.testing.assert_allclose(found, POSITIONS, atol=1e-6)


def test_distance_difference_gradient_matches_finite_differences():
    coordinate = DistanceDifference([(0, 2, 1), (1, 3, 4)])
    value, gradient = coordinate(POSITIONS)
    numeric = np.zeros_like(POSITIONS)
    for index in np.ndindex(POSITIONS.shape):
        plus, minus = POSITIONS.copy(), POSITIONS.copy()
        plus[index] += 1e-6
        minus[index] -= 1e-6
        numeric[index] = (coordinate(plus)[0] - coordinate(minus)[0]) / 2e-6
    np.testing.assert_allclose(gradient, numeric, atol=1e-8)


def test_umbrella_windows_hold_the_coordinate_at_their_centres():
    coordinate = DistanceDifference([(0, 2, 1)])

    def weak_springs(x):  # keeps the atoms together; much softer than the bias along xi
        return 0.5 * 100.0 * ((x - POSITIONS) ** 2).sum(), -100.0 * (x - POSITIONS)

    centres = [-0.04, 0.0, 0.04]
    result = umbrella_sampling(POSITIONS, MASSES * 10, weak_springs, coordinate, centres, k=2e5, temperature=300,
                               n_steps=2000, equilibration_steps=500, save_every=10, timestep=0.001, friction=20.0,
                               seed=2)
    for w, centre in enumerate(centres):
        values = result["coordinate"][result["window"] == w]
        # width sqrt(RT/k) = 0.0035 nm; the springs pull xi towards its start by at most ~0.001 nm
        assert values.mean() == pytest.approx(centre, abs=0.004)
        assert values.std() < 0.01


def test_near_duplicates_are_removed_but_distinct_frames_kept():
    rng = np.random.default_rng(4)
    rotation = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    moved = POSITIONS @ rotation.T + np.array([1.0, -2.0, 0.5])
    distinct = POSITIONS + rng.normal(0.0, 0.01, POSITIONS.shape)
    frames = np.stack([POSITIONS, moved, distinct, distinct + 1e-6])
    np.testing.assert_array_equal(remove_near_duplicates(frames, 1e-4), [0, 2])
