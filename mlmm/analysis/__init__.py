"""Analysis of ML/MM trajectories: vibrational spectra and reaction rates."""

from mlmm.analysis.dipoles import dipole_moments, unwrap_positions
from mlmm.analysis.spectra import band_maximum, block_spectrum, ir_spectrum, power_spectrum, quantum_correction

__all__ = ["band_maximum", "block_spectrum", "dipole_moments", "ir_spectrum", "power_spectrum", "quantum_correction",
           "unwrap_positions"]
