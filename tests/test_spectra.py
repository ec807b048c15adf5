"""Power and IR spectra against analytic harmonic oscillators, exact sum rules and periodic dipole jumps."""

import numpy as np
import pytest

import scipy.constants

from mlmm.analysis import band_maximum, block_spectrum, dipole_moments, ir_spectrum, power_spectrum, quantum_correction
from mlmm.units import MOLAR_GAS_CONSTANT, SPEED_OF_LIGHT_CM_PER_PS

TEMPERATURE = 300.0  # K


def verlet_oscillators(wavenumber: float, mass: float, timestep: float, frames: int, atoms: int, seed: int,
                       positions: bool = False):
    """Velocities [frames, atoms, 3] of independent 3D harmonic oscillators run with velocity Verlet.

    Every Cartesian oscillator starts with energy kT at a random phase. With ``positions``, returns
    (positions, velocities).
    """
    omega = 2.0 * np.pi * SPEED_OF_LIGHT_CM_PER_PS * wavenumber  # rad/ps
    k = mass * omega ** 2  # kJ/mol/nm^2
    kt = MOLAR_GAS_CONSTANT * TEMPERATURE
    amplitude = np.sqrt(2.0 * kt / k)
    phase = np.random.default_rng(seed).uniform(0, 2 * np.pi, (atoms, 3))
    x, v = amplitude * np.cos(phase), -amplitude * omega * np.sin(phase)
    velocities, trajectory = np.empty((frames, atoms, 3)), np.empty((frames, atoms, 3))
    for n in range(frames):
        velocities[n], trajectory[n] = v, x
        v_half = v - 0.5 * timestep * k * x / mass
        x = x + timestep * v_half
        v = v_half - 0.5 * timestep * k * x / mass
    return (trajectory, velocities) if positions else velocities


def verlet_wavenumber(wavenumber: float, timestep: float) -> float:
    """Frequency (cm^-1) of a harmonic oscillator integrated by Verlet: (2/dt) arcsin(w dt / 2)."""
    omega = 2.0 * np.pi * SPEED_OF_LIGHT_CM_PER_PS * wavenumber
    return 2.0 / timestep * np.arcsin(omega * timestep / 2.0) / (2.0 * np.pi * SPEED_OF_LIGHT_CM_PER_PS)


def peak(wavenumbers, intensities):
    """Wavenumber of the largest intensity, refined by a parabola through its neighbours."""
    i = int(np.argmax(intensities))
    left, centre, right = intensities[i - 1:i + 2]
    shift = 0.5 * (left - right) / (left - 2 * centre + right)
    return wavenumbers[i] + shift * (wavenumbers[1] - wavenumbers[0])


def test_a_verlet_oscillator_peaks_at_the_verlet_frequency():
    wavenumber, mass, timestep, atoms = 3000.0, 1.0, 0.001, 4  # cm^-1, amu, ps
    velocities = verlet_oscillators(wavenumber, mass, timestep, 2 ** 15, atoms, seed=1)
    wavenumbers, intensities = power_spectrum(velocities, np.full(atoms, mass), timestep, TEMPERATURE)
    verlet = verlet_wavenumber(wavenumber, timestep)
    assert verlet - wavenumber > 40.0  # the Verlet shift is resolved, so the check below can fail
    assert abs(peak(wavenumbers, intensities) - verlet) < 0.5


def test_oscillators_at_kt_integrate_to_their_degrees_of_freedom():
    # at 500 cm^-1 and 1 fs (omega dt = 0.09) Verlet keeps the mean kinetic energy within 0.1 %;
    # at omega dt = 0.57 (the test above) its shadow dynamics change the velocity amplitude by 5 %
    wavenumber, mass, timestep, atoms = 500.0, 12.0, 0.001, 4
    velocities = verlet_oscillators(wavenumber, mass, timestep, 2 ** 15, atoms, seed=3)
    wavenumbers, intensities = power_spectrum(velocities, np.full(atoms, mass), timestep, TEMPERATURE)
    assert np.trapezoid(intensities, wavenumbers) == pytest.approx(3 * atoms, rel=0.01)
    assert abs(peak(wavenumbers, intensities) - wavenumber) < 0.5
    # a shorter correlation time: the same sum rule, a broader band at the same place
    wavenumbers, smooth = power_spectrum(velocities, np.full(atoms, mass), timestep, TEMPERATURE, max_lag=2.0)
    assert len(wavenumbers) == 2002
    assert np.trapezoid(smooth, wavenumbers) == pytest.approx(3 * atoms, rel=0.01)
    assert abs(peak(wavenumbers, smooth) - wavenumber) < 2.0
    assert smooth.max() < 0.2 * intensities.max()


@pytest.mark.filterwarnings("ignore:correlation times", "ignore:the spectrum still has")
def test_the_integral_is_the_mass_weighted_mean_square_velocity_over_kt_for_any_window():
    rng = np.random.default_rng(2)
    velocities, masses = rng.normal(size=(500, 5, 3)), rng.uniform(1.0, 20.0, 5)
    exact = (masses[None, :, None] * velocities ** 2).sum((1, 2)).mean() / (MOLAR_GAS_CONSTANT * TEMPERATURE)
    for window in ("hann", "blackman", "none"):
        wavenumbers, intensities = power_spectrum(velocities, masses, 0.002, TEMPERATURE, window=window)
        assert np.trapezoid(intensities, wavenumbers) == pytest.approx(exact, rel=1e-10)
        assert wavenumbers[-1] == pytest.approx(1.0 / (2 * SPEED_OF_LIGHT_CM_PER_PS * 0.002))


def test_bad_trajectories_are_refused_with_the_reason():
    good = np.zeros((100, 2, 3))
    with pytest.raises(ValueError, match="velocities of shape"):
        power_spectrum(None, [1.0, 1.0], 0.001, 300.0)
    with pytest.raises(ValueError, match="velocities of shape"):
        power_spectrum(np.zeros((100, 2)), [1.0, 1.0], 0.001, 300.0)
    with pytest.raises(ValueError, match="too few"):
        power_spectrum(good[:5], [1.0, 1.0], 0.001, 300.0)
    nan = good.copy()
    nan[7, 1, 0] = np.nan
    with pytest.raises(ValueError, match=r"NaN.*frames \[7\]"):
        power_spectrum(nan, [1.0, 1.0], 0.001, 300.0)
    with pytest.raises(ValueError, match="masses"):
        power_spectrum(good, [1.0], 0.001, 300.0)
    with pytest.raises(ValueError, match="must be positive"):
        power_spectrum(good, [1.0, 1.0], 0.0, 300.0)
    with pytest.raises(ValueError, match="window"):
        power_spectrum(good, [1.0, 1.0], 0.001, 300.0, window="welch")
    with pytest.raises(ValueError, match="max_lag"):
        power_spectrum(good, [1.0, 1.0], 0.001, 300.0, max_lag=-1.0)
    with pytest.warns(UserWarning, match="resolve only"):
        power_spectrum(good, [1.0, 1.0], 0.001, 300.0)


def test_the_ir_band_of_a_verlet_oscillator_is_at_the_verlet_frequency_from_dipoles_or_their_derivatives():
    wavenumber, mass, timestep = 3000.0, 1.0, 0.001
    positions, velocities = verlet_oscillators(wavenumber, mass, timestep, 2 ** 15, 1, seed=4, positions=True)
    charge = 0.4  # e: M = q x, dM/dt = q v
    verlet = verlet_wavenumber(wavenumber, timestep)
    from_dipoles = ir_spectrum(charge * positions[:, 0], timestep)
    from_derivatives = ir_spectrum(charge * velocities[:, 0], timestep, derivative=True)
    for wavenumbers, intensities in (from_dipoles, from_derivatives):
        assert abs(peak(wavenumbers, intensities) - verlet) < 0.5
    # band strengths: Verlet keeps x = A cos(W t) with W the Verlet frequency, but its velocities have the
    # amplitude A w sqrt(1 - (w dt / 2)^2), so W^2 |x|^2 / |v|^2 = (W / w)^2 / (1 - (w dt / 2)^2) = 1.117 here
    half = np.pi * SPEED_OF_LIGHT_CM_PER_PS * wavenumber * timestep  # w dt / 2
    expected = (verlet / wavenumber) ** 2 / (1.0 - half ** 2)
    assert from_dipoles[1].max() / from_derivatives[1].max() == pytest.approx(expected, rel=0.005)


@pytest.mark.filterwarnings("ignore:correlation times", "ignore:the spectrum still has")
def test_the_ir_sum_rule_gives_the_mean_square_dipole_derivative():
    rng = np.random.default_rng(5)
    derivatives = rng.normal(size=(400, 3)) + [0.3, -0.2, 0.1]  # e nm/ps, with a mean that is removed
    wavenumbers, intensities = ir_spectrum(derivatives, 0.0005, window="none", derivative=True,
                                           max_wavenumber=None)
    centred = derivatives - derivatives.mean(axis=0)
    assert np.trapezoid(intensities, wavenumbers) == pytest.approx((centred ** 2).sum(1).mean(), rel=1e-10)


def test_quantum_corrections_match_their_closed_forms():
    wavenumbers, temperature = np.array([0.0, 200.0, 1600.0, 3700.0]), 300.0
    x = scipy.constants.h * scipy.constants.c * 100.0 * wavenumbers / (scipy.constants.k * temperature)
    harmonic = np.where(x > 0, x / -np.expm1(-np.where(x > 0, x, 1.0)), 1.0)
    standard = 2.0 / (1.0 + np.exp(-x))
    schofield = np.exp(x / 2.0)
    assert np.allclose(quantum_correction(wavenumbers, temperature, "harmonic"), 1.0)
    assert np.allclose(quantum_correction(wavenumbers, temperature, "standard"), standard / harmonic, rtol=1e-8)
    assert np.allclose(quantum_correction(wavenumbers, temperature, "schofield"), schofield / harmonic, rtol=1e-8)
    # at 3700 cm^-1 and 300 K (x = 17.7) the standard correction weakens an O-H band about ninefold
    assert quantum_correction(wavenumbers, temperature, "standard")[-1] == pytest.approx(0.113, abs=0.001)


def test_a_molecule_wrapped_across_the_box_keeps_a_continuous_dipole():
    # a bent three-charge "water" vibrating while it drifts through the faces of a triclinic box
    box = np.array([[2.0, 0.0, 0.0], [0.6, 1.8, 0.0], [-0.5, 0.4, 1.9]])
    frames, timestep = 8192, 0.0005
    t = np.arange(frames) * timestep
    stretch = 0.01 * np.sin(2 * np.pi * SPEED_OF_LIGHT_CM_PER_PS * 3600.0 * t)
    centre = np.array([1.9, 1.7, 1.8]) + np.outer(t, [1.5, -0.9, 1.2])
    oxygen = centre
    hydrogen1 = centre + (0.0957 + stretch)[:, None] * np.array([1.0, 0.0, 0.0])
    hydrogen2 = centre + 0.0957 * np.array([np.cos(1.824), np.sin(1.824), 0.0])
    whole = np.stack([oxygen, hydrogen1, hydrogen2], axis=1)
    fractional = whole @ np.linalg.inv(box)
    wrapped = (fractional - np.floor(fractional)) @ box
    charges = [-0.834, 0.417, 0.417]
    reference = dipole_moments(whole, charges)
    assert np.abs(np.diff(dipole_moments(wrapped, charges), axis=0)).max() > 0.3  # the jumps are there
    assert np.allclose(dipole_moments(wrapped, charges, boxes=box, molecules=[[0, 1, 2]]), reference, atol=1e-12)
    expected = ir_spectrum(reference, timestep)
    assert np.allclose(ir_spectrum(dipole_moments(wrapped, charges, boxes=box, molecules=[[0, 1, 2]]), timestep)[1],
                       expected[1])
    assert abs(peak(*expected) - 3600.0) < 1.0


@pytest.mark.filterwarnings("ignore:correlation times")
def test_block_error_bars_cover_the_exact_flat_spectrum_of_white_noise():
    rng = np.random.default_rng(6)
    masses, timestep, blocks = np.array([2.0, 5.0]), 0.002, 8
    kt = MOLAR_GAS_CONSTANT * TEMPERATURE
    velocities = rng.normal(size=(8 * 512, 2, 3)) * np.sqrt(kt / masses)[None, :, None]
    with pytest.warns(UserWarning, match="Nyquist"):
        wavenumbers, mean, error = block_spectrum(power_spectrum, velocities, masses, timestep, TEMPERATURE,
                                                  blocks=blocks)
    flat = 6.0 / wavenumbers[-1]  # 6 degrees of freedom spread evenly from 0 to the Nyquist wavenumber
    inner = slice(1, -1)  # the end points carry half weight
    z = (mean[inner] - flat) / error[inner]
    assert np.all(error[inner] > 0)
    assert 0.6 < np.mean(np.abs(z) < 1.0) < 0.8  # about 68 % of the points within one standard error
    assert np.trapezoid(mean, wavenumbers) == pytest.approx(6.0, rel=0.02)


def test_bad_ir_input_and_uneven_or_aliased_sampling_are_reported():
    dipoles = np.zeros((100, 3))
    with pytest.raises(ValueError, match=r"dipoles of shape \[frames, 3\]"):
        ir_spectrum(np.zeros((100, 2, 3)), 0.001)
    with pytest.raises(ValueError, match="too few"):
        ir_spectrum(dipoles[:10], 0.001)
    nan = dipoles.copy()
    nan[42] = np.inf
    with pytest.raises(ValueError, match=r"frames \[42\]"):
        ir_spectrum(nan, 0.001)
    times = np.arange(100) * 0.001
    times[60:] += 0.0005  # a restart that left half a step
    with pytest.raises(ValueError, match="not evenly spaced.*after frame 59"):
        ir_spectrum(dipoles, times)
    with pytest.raises(ValueError, match="frame times"):
        power_spectrum(np.zeros((100, 1, 3)), [1.0], times[:50], 300.0)
    with pytest.raises(ValueError, match="needs a positive temperature"):
        ir_spectrum(dipoles, 0.001, correction="standard")
    with pytest.raises(ValueError, match="correction"):
        ir_spectrum(dipoles, 0.001, temperature=300.0, correction="kubo")
    t = np.arange(4096) * 0.005  # 5 fs: the Nyquist wavenumber is 3336 cm^-1
    stretch = np.outer(np.sin(2 * np.pi * SPEED_OF_LIGHT_CM_PER_PS * 1600.0 * t), [0.01, 0.0, 0.0])
    with pytest.warns(UserWarning, match="reaches only 3336 cm"):
        ir_spectrum(stretch, t)
    wavenumbers, intensities = ir_spectrum(stretch, t, max_wavenumber=3000.0)  # no warning: asked for less
    assert abs(peak(wavenumbers, intensities) - 1600.0) < 0.5


def test_band_maximum_refines_the_top_of_a_band_between_grid_points():
    wavenumbers = np.arange(0.0, 4000.0, 16.7)
    parabola = np.maximum(0.0, 1.0 - ((wavenumbers - 1641.3) / 80.0) ** 2)
    assert band_maximum(wavenumbers, parabola, 1300.0, 1900.0) == pytest.approx(1641.3, abs=1e-9)
    assert band_maximum(wavenumbers, parabola, 2000.0, 3000.0) == pytest.approx(2000.0, abs=16.7)  # flat: a point
    with pytest.raises(ValueError, match="no wavenumber between"):
        band_maximum(wavenumbers, parabola, 5000.0, 6000.0)
