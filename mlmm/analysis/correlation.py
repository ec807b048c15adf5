"""Time-correlation functions and their Fourier transforms, with the checks every spectrum shares.

Units: times in ps, frequencies in 1/ps, wavenumbers in cm^-1 (PHYSICS.md section 4).
"""

from __future__ import annotations

import warnings
from typing import Tuple, Union

import numpy as np

from mlmm.units import SPEED_OF_LIGHT_CM_PER_PS

WINDOWS = ("hann", "blackman", "none")
MIN_FRAMES = 16
#: Coarsest resolution (cm^-1) accepted without a warning.
COARSE_RESOLUTION = 20.0
#: Share of the band maximum that, found at the Nyquist edge, signals folded (aliased) intensity.
ALIASING_EDGE_SHARE = 0.01


def frame_interval(timestep: Union[float, np.ndarray], frames: int) -> float:
    """Saving interval (ps) from a number, or from the frames' times [frames] (ps) after checking they are even
    (no step differs from the median by more than 1 %, beyond single-precision rounding)."""
    times = np.asarray(timestep, dtype=np.float64)
    if times.ndim == 0:
        interval = float(times)
    else:
        if times.shape != (frames,):
            raise ValueError(f"got {times.shape[0] if times.ndim == 1 else times.shape} frame times for {frames} "
                             "frames; pass one time (ps) per frame or the saving interval as a number")
        steps = np.diff(times)
        interval = float(np.median(steps))
        # 1 % of a step, plus the rounding of times stored in single precision (trajectory files)
        tolerance = 0.01 * abs(interval) + 1e-7 * float(np.abs(times).max())
        irregular = np.flatnonzero(np.abs(steps - interval) > tolerance)
        if irregular.size:
            first = int(irregular[0])
            raise ValueError(f"frames are not evenly spaced in time: {times[first]:.6g} -> {times[first + 1]:.6g} ps "
                             f"after frame {first} (the interval is {interval:.6g} ps elsewhere); a spectrum needs one "
                             "saving interval, e.g. split the trajectory where a restart left a gap or duplicate")
    if not interval > 0:
        raise ValueError(f"the saving interval must be positive, got {interval} ps")
    return interval


def check_frames(series: np.ndarray, name: str) -> None:
    """Refuse too short series and NaN/infinite frames of ``series`` [frames, ...], naming the frames."""
    if series.shape[0] < MIN_FRAMES:
        raise ValueError(f"{series.shape[0]} frames are too few for a spectrum (need at least {MIN_FRAMES})")
    finite = np.isfinite(series.reshape(series.shape[0], -1)).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise ValueError(f"{name} contain NaN or infinite values (frames {bad[:5].tolist()}...)")


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
    if window not in WINDOWS:
        raise ValueError(f"window={window!r} is not one of {WINDOWS}")
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


def lags_kept(frames: int, timestep: float, max_lag) -> int:
    """Number of lags 0..L-1 to keep: all frames, or those up to ``max_lag`` (ps)."""
    if max_lag is None:
        return frames
    if not max_lag > 0:
        raise ValueError(f"max_lag={max_lag} ps must be positive")
    return min(frames, int(round(max_lag / timestep)) + 1)


def warn_if_unresolved(wavenumbers: np.ndarray, intensities: np.ndarray, lags: int, timestep: float,
                       max_wavenumber) -> None:
    """Warn about coarse resolution, a saving interval too long for ``max_wavenumber`` (cm^-1) and intensity
    that reaches the Nyquist edge (motion faster than the saving interval folds back into the spectrum)."""
    resolution = 1.0 / (SPEED_OF_LIGHT_CM_PER_PS * lags * timestep)
    if resolution > COARSE_RESOLUTION:
        warnings.warn(f"correlation times up to {lags * timestep:.3g} ps resolve only {resolution:.0f} cm^-1; "
                      "use a longer trajectory or max_lag for sharper bands", stacklevel=3)
    nyquist = wavenumbers[-1]
    if max_wavenumber is not None and nyquist < max_wavenumber:
        warnings.warn(f"saving every {timestep * 1000:.3g} fs reaches only {nyquist:.0f} cm^-1 (Nyquist), below the "
                      f"{max_wavenumber:.0f} cm^-1 asked for: faster motions alias into the spectrum; save at most "
                      f"every {1000.0 / (2 * SPEED_OF_LIGHT_CM_PER_PS * max_wavenumber):.3g} fs", stacklevel=3)
        return
    edge = intensities[wavenumbers > 0.95 * nyquist]
    peak = np.abs(intensities).max()
    if peak > 0 and np.abs(edge).max() > ALIASING_EDGE_SHARE * peak:
        warnings.warn(f"the spectrum still has {np.abs(edge).max() / peak:.1%} of its maximum at the Nyquist "
                      f"wavenumber {nyquist:.0f} cm^-1: motions faster than the saving interval "
                      f"({timestep * 1000:.3g} fs) alias into it; save more often", stacklevel=3)
