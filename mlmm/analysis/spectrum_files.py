"""Spectra of files: the power spectrum of a trajectory with velocities or the IR spectrum of a dipole log,
written as CSV and PNG (the `mlmm spectrum` command)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np

from mlmm.analysis.correlation import frame_interval
from mlmm.analysis.plots import plot_spectrum
from mlmm.analysis.spectra import block_spectrum, ir_spectrum, power_spectrum
from mlmm.analysis.trajectory import read_trajectory

DIPOLE_COLUMNS = ("dipole_x_e_nm", "dipole_y_e_nm", "dipole_z_e_nm")
DERIVATIVE_COLUMNS = tuple(f"dipole_derivative_{x}_e_nm_per_ps" for x in "xyz")


@dataclass(frozen=True)
class SpectrumResult:
    """A spectrum and where it came from.

    Attributes
    ----------
    kind : str
        "power" (degrees of freedom per cm^-1) or "ir" ((e nm/ps)^2 per cm^-1).
    wavenumbers, intensities : ndarray
        cm^-1 and the spectrum.
    errors : ndarray or None
        Block standard errors of the intensities (with ``blocks`` >= 2).
    frames : int
        Frames used.
    timestep : float
        Saving interval (ps).
    """

    kind: str
    wavenumbers: np.ndarray
    intensities: np.ndarray
    errors: Optional[np.ndarray]
    frames: int
    timestep: float


def read_dipoles(path: Union[str, Path]) -> tuple[np.ndarray, np.ndarray, bool]:
    """Times [frames] (ps), dipole series [frames, 3] and whether it is the derivative, from a CSV log
    with a ``time_ps`` column and ``dipole_{x,y,z}_e_nm`` columns, as :class:`mlmm.EmbeddingReporter` writes;
    its exact derivative columns ``dipole_derivative_{x,y,z}_e_nm_per_ps`` (e nm/ps) are used when present."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or any(column not in rows[0] for column in ("time_ps", *DIPOLE_COLUMNS)):
        raise ValueError(f"{path} has no columns time_ps and {', '.join(DIPOLE_COLUMNS)}; write it with "
                         "mlmm.EmbeddingReporter (electrostatic or buffer scheme)")
    derivative = all(column in rows[0] for column in DERIVATIVE_COLUMNS)
    columns = DERIVATIVE_COLUMNS if derivative else DIPOLE_COLUMNS
    times = np.array([float(row["time_ps"]) for row in rows])
    return times, np.array([[float(row[column]) for column in columns] for row in rows]), derivative


def spectrum_of_file(path: Union[str, Path], topology: Optional[Union[str, Path]] = None, atoms: str = "all",
                     temperature: float = 300.0, window: str = "hann", max_lag: Optional[float] = None,
                     blocks: int = 1, correction: str = "harmonic") -> SpectrumResult:
    """IR spectrum of a dipole CSV log (.csv; from dM/dt when it has those columns), else the power spectrum
    of a trajectory with velocities.

    ``atoms`` (MDTraj selection) picks the atoms of a power spectrum; ``temperature`` (K) normalises it
    and enters the IR quantum correction; ``blocks`` >= 2 adds block-averaged error bars.
    """
    path = Path(path)
    if path.suffix.lower() == ".csv":
        times, series, derivative = read_dipoles(path)
        kind, function = "ir", ir_spectrum
        arguments = {"temperature": temperature, "correction": correction, "derivative": derivative}
        extra: tuple = ()
    else:
        trajectory = read_trajectory(path, topology)
        if trajectory.velocities is None:
            raise ValueError(f"{path} has no velocities, so no power spectrum: run with an .h5 trajectory and "
                             "[output] velocities = true")
        selected = trajectory.topology.select(atoms)
        if selected.size == 0:
            raise ValueError(f"the selection {atoms!r} matches no atom of {path}")
        times, series = trajectory.times, trajectory.velocities[:, selected]
        kind, function, arguments = "power", power_spectrum, {"temperature": temperature}
        extra = (trajectory.masses[selected],)
    timestep = frame_interval(times, len(times))
    options = {"window": window, "max_lag": max_lag, **arguments}
    if blocks >= 2:
        wavenumbers, intensities, errors = block_spectrum(function, series, *extra, timestep, blocks=blocks, **options)
    else:
        (wavenumbers, intensities), errors = function(series, *extra, timestep, **options), None
    return SpectrumResult(kind, wavenumbers, intensities, errors, len(times), timestep)


def write_spectrum(result: SpectrumResult, prefix: Union[str, Path]) -> tuple[Path, Path]:
    """Write ``prefix``.csv (wavenumber, intensity[, error]) and ``prefix``.png; return both paths."""
    prefix = Path(prefix)
    unit = "degrees of freedom per cm^-1" if result.kind == "power" else "(e nm/ps)^2 per cm^-1"
    column = "intensity_dof_per_cm-1" if result.kind == "power" else "intensity_e2_nm2_ps-2_per_cm-1"
    table, figure_path = Path(f"{prefix}.csv"), Path(f"{prefix}.png")  # a prefix may hold dots (run-0.5)
    columns = [result.wavenumbers, result.intensities] + ([] if result.errors is None else [result.errors])
    header = f"wavenumber_cm-1,{column}" + ("" if result.errors is None else ",standard_error")
    np.savetxt(table, np.column_stack(columns), delimiter=",", header=header, comments="")
    title = (f"{'IR' if result.kind == 'ir' else 'power'} spectrum, {result.frames} frames every "
             f"{result.timestep * 1000:.3g} fs")
    plot_spectrum(result.wavenumbers, result.intensities, result.errors, unit, title, figure_path)
    return table, figure_path
