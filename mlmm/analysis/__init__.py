"""Analysis of ML/MM trajectories: spectra."""

from mlmm.analysis.spectra import power_spectrum

__all__ = ["power_spectrum"]
