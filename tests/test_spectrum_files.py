"""Trajectories with velocities, and `mlmm spectrum` on them and on dipole logs."""

import csv

import numpy as np
import pytest

from mlmm.analysis.trajectory import read_trajectory
from mlmm.bridge.simulation import run_simulation
from mlmm.cli import main
from mlmm.config import load_config
from mlmm.units import MOLAR_GAS_CONSTANT, SPEED_OF_LIGHT_CM_PER_PS
from test_simulation import log_steps, write_config


@pytest.mark.filterwarnings("ignore:correlation times", "ignore:the spectrum still has")
def test_velocities_are_stored_resumed_and_give_the_power_spectrum(tmp_path, capsys):
    pytest.importorskip("tables")
    config = load_config(write_config(tmp_path, trajectory="trajectory.h5", steps=40, report_interval=2,
                                      velocities=True))
    run_simulation(config, progress=False)
    result = run_simulation(config.with_overrides(steps=80), progress=False)
    data = read_trajectory(result.trajectory)
    assert data.velocities.shape == (40, 22, 3) and data.boxes is None
    np.testing.assert_allclose(data.times, np.arange(1, 41) * 0.002, atol=1e-9)
    # the stored velocities (nm/ps) carry the kinetic energy of the log, written from the same State; the
    # masses read with the trajectory are MDTraj's element masses (H 1.00794), the force field's H is 1.008
    with open(result.log, newline="") as handle:
        kinetic = np.array([float(row["kinetic_kJ_mol"]) for row in csv.DictReader(handle)])
    stored = 0.5 * (data.masses[None, :, None] * data.velocities ** 2).sum((1, 2))
    np.testing.assert_allclose(stored, kinetic, rtol=1e-4)
    assert log_steps(result.log) == list(range(2, 81, 2))

    assert main(["spectrum", str(result.trajectory), "--temperature", "300", "--window", "none"]) == 0
    printed = capsys.readouterr().out
    table = np.loadtxt(tmp_path / "out" / "trajectory-power.csv", delimiter=",", skiprows=1)
    assert (tmp_path / "out" / "trajectory-power.png").stat().st_size > 10_000
    # sum rule: the spectrum integrates to sum m <v^2> / kT
    exact = 2.0 * stored.mean() / (MOLAR_GAS_CONSTANT * 300.0)
    assert np.trapezoid(table[:, 1], table[:, 0]) == pytest.approx(exact, rel=1e-8)
    assert "40 frames every 2 fs" in printed and "trajectory-power.csv" in printed


def test_a_dcd_run_without_velocities_is_refused_by_name(tmp_path, capsys):
    with pytest.raises(ValueError, match="velocities = true needs an HDF5 trajectory"):
        load_config(write_config(tmp_path, velocities=True))
    result = run_simulation(load_config(write_config(tmp_path, trajectory="trajectory.h5", steps=20)),
                            progress=False)
    assert main(["spectrum", str(result.trajectory)]) == 1
    assert "has no velocities" in capsys.readouterr().err


def write_dipole_log(path, times, dipoles, derivatives=None):
    """A CSV log with the columns EmbeddingReporter writes for a one-atom ML region."""
    extra = [] if derivatives is None else [f"dipole_derivative_{x}_e_nm_per_ps" for x in "xyz"]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["step", "time_ps", "molecules", "dipole_x_e_nm", "dipole_y_e_nm", "dipole_z_e_nm", *extra,
                         "q_0"])
        for n, (t, dipole) in enumerate(zip(times, dipoles)):
            writer.writerow([n + 1, t, 12, *dipole, *([] if derivatives is None else derivatives[n]), 0.3])


@pytest.mark.filterwarnings("ignore:correlation times")
def test_ir_spectrum_of_a_dipole_log_with_error_bars(tmp_path, capsys):
    timestep, wavenumber = 0.0005, 1750.0
    times = np.arange(1, 4097) * timestep
    dipoles = np.zeros((len(times), 3)) + [0.0, 0.1, 0.0]
    dipoles[:, 0] = 0.02 * np.sin(2 * np.pi * SPEED_OF_LIGHT_CM_PER_PS * wavenumber * times)
    write_dipole_log(tmp_path / "embedding.csv", times, dipoles)
    assert main(["spectrum", str(tmp_path / "embedding.csv"), "--blocks", "4", "--output", str(tmp_path / "ir")]) == 0
    table = np.loadtxt(tmp_path / "ir.csv", delimiter=",", skiprows=1)
    assert table.shape[1] == 3 and np.all(table[:, 2] >= 0)
    spacing = table[1, 0] - table[0, 0]  # 32.6 cm^-1 for blocks of 1024 frames
    assert abs(table[np.argmax(table[:, 1]), 0] - wavenumber) < spacing
    assert "ir spectrum of 4096 frames" in capsys.readouterr().out
    # with the exact derivative columns the spectrum comes from dM/dt: the same band, the same strength
    omega = 2 * np.pi * SPEED_OF_LIGHT_CM_PER_PS * wavenumber
    derivatives = np.zeros_like(dipoles)
    derivatives[:, 0] = 0.02 * omega * np.cos(omega * times)
    write_dipole_log(tmp_path / "derivative.csv", times, dipoles, derivatives)
    assert main(["spectrum", str(tmp_path / "derivative.csv"), "--blocks", "4", "--output",
                 str(tmp_path / "d-dt.v2")]) == 0
    from_derivative = np.loadtxt(tmp_path / "d-dt.v2.csv", delimiter=",", skiprows=1)  # the prefix's dots kept
    assert from_derivative[:, 1].max() == pytest.approx(table[:, 1].max(), rel=0.02)
    assert np.argmax(from_derivative[:, 1]) == np.argmax(table[:, 1])

    times[2000:] += 0.25 * timestep  # a restart that shifted the clock
    write_dipole_log(tmp_path / "uneven.csv", times, dipoles)
    assert main(["spectrum", str(tmp_path / "uneven.csv")]) == 1
    assert "not evenly spaced" in capsys.readouterr().err
