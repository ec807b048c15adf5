"""Power spectrum against analytic harmonic oscillators and exact sum rules."""

import numpy as np
import pytest

from mlmm.analysis import power_spectrum
from mlmm.units import MOLAR_GAS_CONSTANT, SPEED_OF_LIGHT_CM_PER_PS

TEMPERATURE = 300.0  # K


def verlet_oscillators(wavenumber: float, mass: float, timestep: float, frames: int, atoms: int, seed: int):
    """Velocities [frames, atoms, 3] of independent 3D harmonic oscillators run with velocity Verlet.

    Every Cartesian oscillator starts with energy kT at a random phase.
    """
    omega = 2.0 * np.pi * SPEED_OF_LIGHT_CM_PER_PS * wavenumber  # rad/ps
    k = mass * omega ** 2  # kJ/mol/nm^2
    kt = MOLAR_GAS_CONSTANT * TEMPERATURE
    amplitude = np.sqrt(2.0 * kt / k)
    phase = np.random.default_rng(seed).uniform(0, 2 * np.pi, (atoms, 3))
    x, v = amplitude * np.cos(phase), -amplitude * omega * np.sin(phase)
    velocities = np.empty((frames, atoms, 3))
    for n in range(frames):
        velocities[n] = v
        v_half = v - 0.5 * timestep * k * x / mass
        x = x + timestep * v_half
        v = v_half - 0.5 * timestep * k * x / mass
    return velocities


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
    omega = 2.0 * np.pi * SPEED_OF_LIGHT_CM_PER_PS * wavenumber
    verlet = 2.0 / timestep * np.arcsin(omega * timestep / 2.0) / (2.0 * np.pi * SPEED_OF_LIGHT_CM_PER_PS)
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


@pytest.mark.filterwarnings("ignore:correlation times")
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
