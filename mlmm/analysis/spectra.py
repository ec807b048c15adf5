"""Vibrational spectra from MD trajectories: power spectrum (VDOS) and IR (PHYSICS.md section 4).

Units: velocities nm/ps, masses amu (g/mol), dipoles e nm, dipole derivatives e nm/ps, timestep ps,
temperature K, wavenumbers cm^-1. Correlation functions are computed by Wiener-Khinchin with zero
padding to twice the length (no circular wrap-around), averaged over all time origins, and tapered
by a one-sided window. ``timestep`` is the saving interval, or the frames' times (checked to be even).
"""

from __future__ import annotations

from typing import Callable, Optional, Tuple

import numpy as np

from mlmm.analysis.correlation import (autocorrelation, check_frames, cosine_transform, frame_interval, lags_kept,
                                       one_sided_window, warn_if_unresolved)
from mlmm.units import MOLAR_GAS_CONSTANT, SECOND_RADIATION_CONSTANT_CM_K, SPEED_OF_LIGHT_CM_PER_PS

__all__ = ["power_spectrum", "ir_spectrum", "quantum_correction", "block_spectrum", "band_maximum"]

CORRECTIONS = ("harmonic", "standard", "schofield")
#: Highest wavenumber (cm^-1) an IR spectrum is expected to cover unless told otherwise (O-H, N-H, C-H stretches).
IR_MAX_WAVENUMBER = 4000.0


def power_spectrum(velocities, masses, timestep, temperature: float, window: str = "hann",
                   max_lag: Optional[float] = None,
                   max_wavenumber: Optional[float] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Vibrational density of states S(nu~) = (2/kT) sum_i m_i FT[<v_i(0) . v_i(t)>].

    Parameters
    ----------
    velocities : array [frames, atoms, 3]
        Velocities in nm/ps, saved every ``timestep``. Any velocity-like coordinate works (e.g.
        a bond's stretching velocity in one component with the reduced mass in ``masses``).
    masses : array [atoms]
        Masses in amu.
    timestep : float or array [frames]
        Time between saved frames (ps), or the time of every frame (ps; must be evenly spaced).
    temperature : float
        Temperature (K) in kT.
    window : str
        One-sided taper of the correlation function: "hann" (default), "blackman" or "none".
    max_lag : float, optional
        Longest correlation time kept (ps; default the whole trajectory). Shorter lags average
        more time origins per point: a smoother spectrum with resolution about 1 / (c max_lag).
    max_wavenumber : float, optional
        Highest wavenumber (cm^-1) of interest: warns when the saving interval cannot reach it.

    Returns
    -------
    wavenumbers : ndarray [L + 1] (L: the number of lags kept)
        cm^-1, from 0 to the Nyquist wavenumber 1 / (2 c dt).
    intensities : ndarray [L + 1]
        Degrees of freedom per cm^-1: its integral over wavenumbers (trapezoid) is
        sum_i m_i <v_i^2> / kT, i.e. the number of degrees of freedom in equipartition.
    """
    velocities = np.asarray(velocities, dtype=np.float64) if velocities is not None else None
    if velocities is None or velocities.ndim != 3 or velocities.shape[2] != 3:
        raise ValueError("power_spectrum needs velocities of shape [frames, atoms, 3] in nm/ps, got "
                         f"{None if velocities is None else velocities.shape}")
    masses = np.asarray(masses, dtype=np.float64)
    if masses.shape != (velocities.shape[1],) or not np.all(masses > 0):
        raise ValueError(f"masses must be {velocities.shape[1]} positive values in amu, got shape {masses.shape}")
    check_frames(velocities, "velocities")
    dt = frame_interval(timestep, velocities.shape[0])
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature} K")
    weighted = velocities * np.sqrt(masses)[None, :, None]
    wavenumbers, transform, lags = _spectrum(weighted, dt, window, max_lag)
    intensities = 2.0 / (MOLAR_GAS_CONSTANT * float(temperature)) * transform
    warn_if_unresolved(wavenumbers, intensities, lags, dt, max_wavenumber)
    return wavenumbers, intensities


def ir_spectrum(dipoles, timestep, temperature: Optional[float] = None, window: str = "hann",
                correction: Optional[str] = "harmonic", derivative: bool = False, max_lag: Optional[float] = None,
                max_wavenumber: Optional[float] = IR_MAX_WAVENUMBER) -> Tuple[np.ndarray, np.ndarray]:
    """IR absorption n(w) alpha(w) up to a constant: w^2 FT[<M(0) . M(t)>] times a quantum correction.

    The mean dipole is removed first (a static dipole does not absorb). With ``correction="harmonic"``
    (or None) the result is the classical line shape w^2 FT[C_cl] = FT[<dM/dt(0) . dM/dt(t)>], which is
    what the harmonic quantum correction beta hbar w / (1 - exp(-beta hbar w)) turns the quantum
    absorption formula into; "standard" (2 / (1 + exp(-beta hbar w))) and "schofield" (exp(beta hbar w / 2))
    multiply it by their ratio to the harmonic factor (see :func:`quantum_correction`).

    Parameters
    ----------
    dipoles : array [frames, 3]
        Dipole moment (e nm) of the absorbing system every ``timestep``, or its time derivative
        (e nm/ps) with ``derivative=True`` (exact derivatives avoid the finite-sampling error of w^2).
        Periodic jumps must be removed first (:func:`mlmm.analysis.dipole_moments` does).
    timestep : float or array [frames]
        Saving interval (ps), or the time of every frame (ps; must be evenly spaced).
    temperature : float, optional
        K; needed by the "standard" and "schofield" corrections.
    window : str
        One-sided taper of the correlation function: "hann" (default), "blackman" or "none".
    correction : str or None
        "harmonic" (default; also None), "standard" or "schofield".
    derivative : bool
        ``dipoles`` holds dM/dt (e nm/ps) rather than M.
    max_lag : float, optional
        Longest correlation time kept (ps); default the whole trajectory.
    max_wavenumber : float or None
        Highest wavenumber (cm^-1) of interest, 4000 by default: warns when the saving interval
        cannot reach it (None: no such check).

    Returns
    -------
    wavenumbers : ndarray [L + 1]
        cm^-1, from 0 to the Nyquist wavenumber.
    intensities : ndarray [L + 1]
        (e nm / ps)^2 per cm^-1. Uncorrected (harmonic) its integral over wavenumbers is the mean square
        of dM/dt (the sum rule; exact for ``derivative=True`` and no window).
    """
    series = np.asarray(dipoles, dtype=np.float64) if dipoles is not None else None
    if series is None or series.ndim != 2 or series.shape[1] != 3:
        raise ValueError("ir_spectrum needs dipoles of shape [frames, 3] in e nm (or e nm/ps with derivative=True), "
                         f"got {None if series is None else series.shape}")
    check_frames(series, "dipoles")
    dt = frame_interval(timestep, series.shape[0])
    wavenumbers, transform, lags = _spectrum(series - series.mean(axis=0), dt, window, max_lag)
    intensities = 2.0 * transform
    if not derivative:
        intensities *= (2.0 * np.pi * SPEED_OF_LIGHT_CM_PER_PS * wavenumbers) ** 2
    intensities *= quantum_correction(wavenumbers, temperature, correction)
    warn_if_unresolved(wavenumbers, intensities, lags, dt, max_wavenumber)
    return wavenumbers, intensities


def quantum_correction(wavenumbers, temperature: Optional[float], correction: Optional[str]) -> np.ndarray:
    """Factor Q(w) / Q_harmonic(w) that turns the classical IR line shape into a corrected one (1 at w = 0).

    With x = beta hbar w = h c nu~ / kT: 1 for "harmonic" (and None); 2 tanh(x/2) / x for "standard";
    2 sinh(x/2) / x for "schofield".
    """
    wavenumbers = np.asarray(wavenumbers, dtype=np.float64)
    if correction is None or correction == "harmonic":
        return np.ones_like(wavenumbers)
    if correction not in CORRECTIONS:
        raise ValueError(f"correction={correction!r} is not one of {CORRECTIONS} (or None)")
    if temperature is None or not temperature > 0:
        raise ValueError(f"the {correction!r} quantum correction needs a positive temperature in K, got {temperature}")
    half = 0.5 * SECOND_RADIATION_CONSTANT_CM_K * wavenumbers / float(temperature)
    safe = np.where(half > 0, half, 1.0)
    ratio = np.tanh(safe) / safe if correction == "standard" else np.sinh(safe) / safe
    return np.where(half > 0, ratio, 1.0)


def block_spectrum(spectrum: Callable[..., Tuple[np.ndarray, np.ndarray]], series, *args, blocks: int = 4,
                   **kwargs) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A spectrum with error bars: mean and standard error over ``blocks`` consecutive parts of the trajectory.

    ``spectrum`` is :func:`ir_spectrum` or :func:`power_spectrum`; ``series`` (dipoles or velocities) is cut
    along its first axis into equal blocks (a remainder at the end is dropped); ``args`` and ``kwargs`` are
    passed on unchanged (a per-frame time array is not accepted here: give the saving interval).

    Returns
    -------
    wavenumbers, mean, standard_error : ndarray
        cm^-1; the block mean of the intensities and its standard error (std over blocks / sqrt(blocks)).
    """
    series = np.asarray(series, dtype=np.float64)
    if int(blocks) < 2:
        raise ValueError(f"block error bars need at least 2 blocks, got {blocks}")
    length = series.shape[0] // int(blocks)
    parts = [spectrum(series[b * length:(b + 1) * length], *args, **kwargs) for b in range(int(blocks))]
    intensities = np.stack([part[1] for part in parts])
    error = intensities.std(axis=0, ddof=1) / np.sqrt(len(parts))
    return parts[0][0], intensities.mean(axis=0), error


def band_maximum(wavenumbers, intensities, low: float, high: float) -> float:
    """Wavenumber (cm^-1) of the largest intensity between ``low`` and ``high`` cm^-1, refined by a parabola
    through it and its two neighbours (exact for a locally quadratic band top)."""
    wavenumbers, intensities = np.asarray(wavenumbers), np.asarray(intensities)
    inside = np.flatnonzero((wavenumbers >= low) & (wavenumbers <= high))
    if inside.size == 0:
        raise ValueError(f"no wavenumber between {low} and {high} cm^-1 (the grid spans {wavenumbers[0]:.0f} to "
                         f"{wavenumbers[-1]:.0f} cm^-1)")
    i = int(inside[np.argmax(intensities[inside])])
    if i == 0 or i == len(wavenumbers) - 1:
        return float(wavenumbers[i])
    left, middle, right = intensities[i - 1:i + 2]
    curvature = left - 2.0 * middle + right
    shift = 0.5 * (left - right) / curvature if curvature < 0 else 0.0
    return float(wavenumbers[i] + shift * (wavenumbers[i + 1] - wavenumbers[i]))


def _spectrum(series: np.ndarray, timestep: float, window: str, max_lag) -> Tuple[np.ndarray, np.ndarray, int]:
    """Wavenumbers (cm^-1), the Fourier transform of the windowed autocorrelation per cm^-1, and the lags kept."""
    lags = lags_kept(series.shape[0], timestep, max_lag)
    correlation = autocorrelation(series)[:lags] * one_sided_window(lags, window)
    frequencies, transform = cosine_transform(correlation, timestep)
    return frequencies / SPEED_OF_LIGHT_CM_PER_PS, transform * SPEED_OF_LIGHT_CM_PER_PS, lags
