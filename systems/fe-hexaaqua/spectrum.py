"""Power spectrum of the Fe-O motions of Fe3+ in TIP3P from the buffer-embedding trajectory.

Reads trajectory.npz (run_md.py: the ion and the waters of its first shell at the start, every 4
fs of NVE), keeps the resident waters (oxygen within FIRST_SHELL_NM of the ion in at least
RESIDENT_FRACTION of the frames; waters that move to the second shell would add their slower
motions to the band) and computes with mlmm.analysis.power_spectrum (Hann window, correlation
times up to MAX_LAG_PS):
  - the Fe-water stretching spectrum: for each resident water the velocity of the ion-water
    distance (ion to the water's centre of mass, minimum image), with the ion-water reduced
    mass, so the band integrates to one degree of freedom per water (n in all);
  - the spectrum of the ion's own motion (its rattling in the cage of the first shell, 3 degrees
    of freedom).
Writes spectrum.csv (wavenumber, both spectra), spectrum.png and spectrum.json (band maxima,
integrals, Fe-O distances). Run from the repository root:
    .venv/bin/python systems/fe-hexaaqua/spectrum.py
"""

import json
import sys
from pathlib import Path

import numpy as np

from mlmm.analysis import power_spectrum
from mlmm.units import MOLAR_GAS_CONSTANT

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from build import FIRST_SHELL_NM, oxygen_distances  # noqa: E402  (this folder)

RESIDENT_FRACTION = 0.95
MAX_LAG_PS = 2.0
TEMPERATURE_K = 300.0  # the kT of the normalisation; the NVE run's own mean temperature is reported
BAND_CM = (150.0, 800.0)  # where the Fe-O bands lie: maxima are searched here


def stretch_velocities(positions, velocities, masses, box_nm):
    """Ion-water distances [F, n] (nm), their velocities as [F, n, 3] (x component; nm/ps), reduced masses [n]."""
    iron_x, iron_v = positions[:, 0], velocities[:, 0]
    n_waters = (len(masses) - 1) // 3
    water_m = masses[1:].reshape(n_waters, 3)
    total = water_m.sum(1)
    centre_x = (positions[:, 1:].reshape(-1, n_waters, 3, 3) * water_m[None, :, :, None]).sum(2) / total[None, :, None]
    centre_v = (velocities[:, 1:].reshape(-1, n_waters, 3, 3) * water_m[None, :, :, None]).sum(2) / total[None, :, None]
    separation = centre_x - iron_x[:, None]
    separation -= box_nm * np.round(separation / box_nm)
    distance = np.linalg.norm(separation, axis=-1)
    radial = ((centre_v - iron_v[:, None]) * separation).sum(-1) / distance
    pseudo = np.zeros(radial.shape + (3,))
    pseudo[..., 0] = radial
    return distance, pseudo, masses[0] * total / (masses[0] + total)


def band_maximum(wavenumbers, intensities):
    inside = (wavenumbers >= BAND_CM[0]) & (wavenumbers <= BAND_CM[1])
    return float(wavenumbers[inside][np.argmax(intensities[inside])])


def main():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = np.load(HERE / "trajectory.npz")
    positions, velocities = data["positions"].astype(np.float64), data["velocities"].astype(np.float64)
    masses, dt, box = data["masses"], float(data["timestep_ps"]), float(data["box_nm"])
    oxygen = oxygen_distances(positions, box, 0, list(range(1, positions.shape[1], 3)))  # [F, waters]
    resident = np.flatnonzero((oxygen < FIRST_SHELL_NM).mean(0) >= RESIDENT_FRACTION)
    keep = np.concatenate([[0], (1 + 3 * resident[:, None] + np.arange(3)).ravel()])
    n_tracked = oxygen.shape[1]
    positions, velocities, masses, oxygen = positions[:, keep], velocities[:, keep], masses[keep], oxygen[:, resident]
    distance, radial, reduced = stretch_velocities(positions, velocities, masses, box)
    wavenumbers, stretch = power_spectrum(radial, reduced, dt, TEMPERATURE_K, max_lag=MAX_LAG_PS)
    _, iron = power_spectrum(velocities[:, :1], masses[:1], dt, TEMPERATURE_K, max_lag=MAX_LAG_PS)
    kinetic = 0.5 * (masses[None, :, None] * velocities ** 2).sum((1, 2)).mean()  # kJ/mol
    degrees_of_freedom = 3 + 6 * len(reduced)  # the ion and rigid waters
    result = {"waters_tracked": n_tracked, "resident_waters": len(reduced), "resident_fraction": RESIDENT_FRACTION,
              "frames": len(positions), "picoseconds": len(positions) * dt,
              "max_lag_ps": MAX_LAG_PS,
              "stretch_band_maximum_cm": band_maximum(wavenumbers, stretch),
              "iron_band_maximum_cm": band_maximum(wavenumbers, iron),
              "stretch_integral": float(np.trapezoid(stretch, wavenumbers)),
              "iron_integral": float(np.trapezoid(iron, wavenumbers)),
              "fe_o_mean_nm": float(oxygen.mean()), "fe_o_std_nm": float(oxygen.std()),
              "fe_o_max_nm": float(oxygen.max()), "fe_water_centre_mean_nm": float(distance.mean()),
              "first_shell_kinetic_temperature_K": float(2 * kinetic / (degrees_of_freedom * MOLAR_GAS_CONSTANT))}
    np.savetxt(HERE / "spectrum.csv", np.column_stack([wavenumbers, stretch, iron]), delimiter=",", fmt="%.6g",
               header="wavenumber_cm-1,fe_water_stretch_per_cm-1,fe_motion_per_cm-1", comments="")
    figure, axis = plt.subplots(figsize=(6, 3.5))
    keep = wavenumbers <= 1200
    axis.plot(wavenumbers[keep], stretch[keep], label=f"Fe-water stretch ({len(reduced)} DOF)")
    axis.plot(wavenumbers[keep], iron[keep], label="Fe motion (3 DOF)")
    axis.set_xlabel("wavenumber (cm$^{-1}$)")
    axis.set_ylabel("power spectrum (DOF per cm$^{-1}$)")
    axis.set_title(f"Fe$^{{3+}}$ in TIP3P, buffer embedding, {result['picoseconds']:.0f} ps NVE")
    axis.legend()
    figure.tight_layout()
    figure.savefig(HERE / "spectrum.png", dpi=120)
    (HERE / "spectrum.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
