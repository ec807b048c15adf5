"""Figures of the analysis results: spectra with error bands, Arrhenius plots (matplotlib, PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_spectrum(wavenumbers: np.ndarray, intensities: np.ndarray, errors: Optional[np.ndarray], ylabel: str,
                  title: str, path: Path) -> None:
    """One spectrum against wavenumber (cm^-1), with a shaded +-error band when ``errors`` are given."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7, 3.5))
    axes.plot(wavenumbers, intensities, lw=0.8)
    if errors is not None:
        axes.fill_between(wavenumbers, intensities - errors, intensities + errors, alpha=0.3, lw=0)
    axes.set(xlabel="wavenumber (cm$^{-1}$)", ylabel=ylabel, xlim=(0, wavenumbers[-1]), title=title)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_arrhenius(temperatures: Sequence[float], rates: Sequence, fit, title: str, path: Path) -> None:
    """k(T) (1/ps, log scale) against 1000/T with the rates' confidence intervals and the fitted line
    (``fit`` an :class:`mlmm.analysis.rates.ArrheniusFit`)."""
    plt = _pyplot()
    temperatures = np.asarray(temperatures, dtype=np.float64)
    values = np.array([rate.rate for rate in rates])
    bars = np.array([[rate.rate - rate.lower, rate.upper - rate.rate] for rate in rates]).T
    figure, axes = plt.subplots(figsize=(5, 3.8))
    axes.errorbar(1000.0 / temperatures, values, yerr=bars, fmt="o", capsize=3,
                  label=f"MD, {rates[0].confidence:.0%} interval")
    grid = np.linspace(temperatures.min() * 0.95, temperatures.max() * 1.05, 50)
    axes.plot(1000.0 / grid, fit.rate(grid), label=f"Arrhenius: Ea = {fit.activation_energy:.1f} "
                                                    f"+- {fit.activation_energy_error:.1f} kJ/mol")
    axes.set(yscale="log", xlabel="1000 / T (1/K)", ylabel="k (1/ps)", title=title)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
