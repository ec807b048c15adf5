"""Vibrational spectra from MD trajectories (PHYSICS.md section 4).

Units: velocities nm/ps, masses amu (g/mol), timestep ps, temperature K, wavenumbers cm^-1.
Correlation functions are computed by Wiener-Khinchin with zero padding to twice the length
(no circular wrap-around), averaged over all time origins, and tapered by a one-sided window.
"""

from __future__ import annotations

import warnings
from typing import Optional, Tuple

import numpy as np

from mlmm.units import MOLAR_GAS_CONSTANT, SPEED_OF_LIGHT_CM_PER_PS

__all__ = ["power_spectrum"]

_WINDOWS = ("hann", "blackman", "none")
_MIN_FRAMES = 16


def autocorrelation(series: np.ndarray) -> np.ndarray:
    """Time-origin averaged autocorrelation C[t] = <x(0) x(t)> of ``series`` [frames, ...] along axis 0.

    Summed over all trailing axes, for lags 0..frames-1, each lag divided by its number of origins.
    """
    frames = series.shape[0]
    flat = series.reshape(frames, -1)
    spectrum = np.fft.rfft(flat, n=2 * frames, axis=0)
    correlation = np.fft.irfft((spectrum * spectrum.conj()).real, n=2 * frames, axis=0)[:frames].sum(1)
    return correlation / np.arange(frames, 0, -1)


def one_sided_window(length: int, window: str) -> np.ndarray:
    """Window w[t] for lags t = 0..length-1, w[0] = 1 falling to 0 (the right half of a symmetric window)."""
    if window not in _WINDOWS:
        raise ValueError(f"window={window!r} is not one of {_WINDOWS}")
    t = np.arange(length) / length
    if window == "hann":
        return np.cos(0.5 * np.pi * t) ** 2
    if window == "blackman":
        return 0.42 + 0.5 * np.cos(np.pi * t) + 0.08 * np.cos(2.0 * np.pi * t)
    return np.ones(length)


def cosine_transform(correlation: np.ndarray, timestep: float) -> Tuple[np.ndarray, np.ndarray]:
    """Frequencies (1/ps) and the full Fourier transform of an even function given for lags >= 0.

    F(nu) = dt [C(0) + 2 sum_{t>0} C(t) cos(2 pi nu t dt)] on the grid nu_k = k / (2 L dt), k = 0..L
    (zero padded to 2L); sum_k F(nu_k) dnu over the one-sided grid with half weight at both ends
    is exactly C(0) / 2.
    """
    length = len(correlation)
    even = np.concatenate([correlation, [0.0], correlation[:0:-1]])  # C(-t) = C(t), length 2L
    transform = np.fft.rfft(even).real * timestep
    return np.fft.rfftfreq(2 * length, d=timestep), transform


def power_spectrum(velocities, masses, timestep: float, temperature: float, window: str = "hann",
                   max_lag: Optional[float] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Vibrational density of states S(nu~) = (2/kT) sum_i m_i FT[<v_i(0) . v_i(t)>].

    Parameters
    ----------
    velocities : array [frames, atoms, 3]
        Velocities in nm/ps, saved every ``timestep``. Any velocity-like coordinate works (e.g.
        a bond's stretching velocity in one component with the reduced mass in ``masses``).
    masses : array [atoms]
        Masses in amu.
    timestep : float
        Time between saved frames (ps).
    temperature : float
        Temperature (K) in kT.
    window : str
        One-sided taper of the correlation function: "hann" (default), "blackman" or "none".
    max_lag : float, optional
        Longest correlation time kept (ps; default the whole trajectory). Shorter lags average
        more time origins per point: a smoother spectrum with resolution about 1 / (c max_lag).

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
    if velocities.shape[0] < _MIN_FRAMES:
        raise ValueError(f"{velocities.shape[0]} frames are too few for a spectrum (need at least {_MIN_FRAMES})")
    if not np.all(np.isfinite(velocities)):
        bad = np.flatnonzero(~np.isfinite(velocities).all(axis=(1, 2)))
        raise ValueError(f"velocities contain NaN or infinite values (frames {bad[:5].tolist()}...)")
    if not timestep > 0 or not temperature > 0:
        raise ValueError(f"timestep ({timestep} ps) and temperature ({temperature} K) must be positive")
    weighted = velocities * np.sqrt(masses)[None, :, None]
    lags = velocities.shape[0]
    if max_lag is not None:
        if not max_lag > 0:
            raise ValueError(f"max_lag={max_lag} ps must be positive")
        lags = min(lags, int(round(max_lag / timestep)) + 1)
    correlation = autocorrelation(weighted)[:lags] * one_sided_window(lags, window)
    frequencies, transform = cosine_transform(correlation, float(timestep))
    kt = MOLAR_GAS_CONSTANT * float(temperature)
    wavenumbers = frequencies / SPEED_OF_LIGHT_CM_PER_PS
    intensities = 2.0 / kt * transform * SPEED_OF_LIGHT_CM_PER_PS
    resolution = 1.0 / (SPEED_OF_LIGHT_CM_PER_PS * lags * timestep)
    if resolution > 20.0:
        warnings.warn(f"correlation times up to {lags * timestep:.3g} ps resolve only {resolution:.0f} cm^-1; "
                      "use a longer trajectory or max_lag for sharper bands", stacklevel=2)
    return wavenumbers, intensities
