"""IR and power spectra of the ML water molecule in TIP3P (electrostatic embedding), beside the gas phase.

The ML water (GFN2-xTB PhysNet model with its electrostatic embedding, ../embedding/model) sits in 859
rigid TIP3P waters (3 nm box, PME 0.9 nm). After 2 ps of Langevin dynamics at 300 K (1/ps) the system
runs NVE (Verlet, 0.5 fs); every SAVE_EVERY steps the ML water's velocities and its dipole (ML charges
plus induced dipoles, from the embedding module's report) are kept (solvated-trajectory.npz, not in git).
Spectra: mlmm.analysis with a Hann window and correlation times up to MAX_LAG_PS, with block standard
errors from BLOCKS blocks; band maxima refined by a parabola; solvated.png beside the gas phase at 300 K
(gas-300K.csv from gas_phase.py).

    .venv/bin/python systems/water/spectra/solvated.py --time 20      (23 min on one core)
    .venv/bin/python systems/water/spectra/solvated.py --reanalyse    (spectra from the saved trajectory)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as u
import torch

import mlmm
from mlmm.analysis import band_maximum, block_spectrum, ir_spectrum, power_spectrum

HERE = Path(__file__).resolve().parent
WATER = HERE.parent
SAVE_EVERY = 2
TIMESTEP_PS = 0.0005
TEMPERATURE_K = 300.0
MAX_LAG_PS = 2.0
BLOCKS = 4
ML_ATOMS = [0, 1, 2]
MASSES = np.array([15.999, 1.008, 1.008])


def build() -> tuple[app.PDBFile, openmm.System, "mlmm.EmbeddingPlan"]:
    pdb = app.PDBFile(str(WATER / "water-tip3p.pdb"))
    mm = app.ForceField("amber14/tip3p.xml").createSystem(pdb.topology, nonbondedMethod=app.PME,
                                                          nonbondedCutoff=0.9 * u.nanometer, constraints=app.HBonds)
    model = str(WATER / "embedding" / "model" / "model.pt")
    plan = mlmm.plan_embedding(pdb.topology, mm, ML_ATOMS, model, embedding="electrostatic")
    system = mlmm.create_mixed_system(pdb.topology, mm, ML_ATOMS, model, embedding="electrostatic")
    return pdb, system, plan


def run(picoseconds: float, seed: int) -> dict:
    pdb, system, plan = build()
    platform = openmm.Platform.getPlatformByName("CPU")
    langevin = openmm.LangevinMiddleIntegrator(TEMPERATURE_K, 1.0, TIMESTEP_PS)
    langevin.setRandomNumberSeed(seed)
    context = openmm.Context(system, langevin, platform, {"Threads": "1"})
    context.setPositions(pdb.positions)
    openmm.LocalEnergyMinimizer.minimize(context, 10.0, 200)
    context.setVelocitiesToTemperature(TEMPERATURE_K, seed)
    langevin.step(int(round(2.0 / TIMESTEP_PS)))
    state = context.getState(getPositions=True, getVelocities=True)
    verlet = openmm.VerletIntegrator(TIMESTEP_PS)
    nve = openmm.Context(system, verlet, platform, {"Threads": "1"})
    nve.setPositions(state.getPositions())
    nve.setVelocities(state.getVelocities())
    frames = int(round(picoseconds / TIMESTEP_PS)) // SAVE_EVERY
    velocities, dipoles, energies = np.empty((frames, 3, 3)), np.empty((frames, 3)), np.empty(frames)
    box = torch.as_tensor(state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(u.nanometer))
    for n in range(frames):
        verlet.step(SAVE_EVERY)
        state = nve.getState(getPositions=True, getVelocities=True, getEnergy=True)
        velocities[n] = state.getVelocities(asNumpy=True).value_in_unit(u.nanometer / u.picosecond)[ML_ATOMS]
        positions = torch.as_tensor(state.getPositions(asNumpy=True).value_in_unit(u.nanometer))
        with torch.no_grad():
            dipoles[n] = plan.module.report(positions, box)["dipole"].numpy()
        energies[n] = (state.getPotentialEnergy() + state.getKineticEnergy()).value_in_unit(u.kilojoule_per_mole)
    return {"velocities": velocities, "dipoles": dipoles, "energies": energies}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--time", type=float, default=20.0, help="ps of NVE (default 20)")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--reanalyse", action="store_true", help="spectra of the saved trajectory, no MD")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.reanalyse:
        data = dict(np.load(HERE / "solvated-trajectory.npz"))
        args.time = len(data["energies"]) * SAVE_EVERY * TIMESTEP_PS
    else:
        data = run(args.time, args.seed)
        np.savez_compressed(HERE / "solvated-trajectory.npz", **data)
    interval = SAVE_EVERY * TIMESTEP_PS
    options = {"window": "hann", "max_lag": MAX_LAG_PS, "blocks": BLOCKS}
    wavenumbers, ir, ir_error = block_spectrum(ir_spectrum, data["dipoles"], interval, **options)
    _, power, power_error = block_spectrum(power_spectrum, data["velocities"], MASSES, interval, TEMPERATURE_K,
                                           **options)
    energies = data["energies"]
    drift = np.polyfit(np.arange(len(energies)) * interval, energies, 1)[0]
    result = {"time_ps": args.time, "seed": args.seed, "frames": len(energies), "save_interval_fs": interval * 1e3,
              "max_lag_ps": MAX_LAG_PS, "blocks": BLOCKS, "energy_drift_kJ_mol_ps": float(drift),
              "ir_peaks_cm-1": bands(wavenumbers, ir), "power_peaks_cm-1": bands(wavenumbers, power)}
    (HERE / "solvated.json").write_text(json.dumps(result, indent=1))
    keep = wavenumbers < 4500
    np.savetxt(HERE / "solvated.csv", np.column_stack([wavenumbers, ir, ir_error, power, power_error])[keep],
               delimiter=",", comments="", fmt="%.6g",
               header="wavenumber_cm-1,ir_e2_nm2_ps-2_per_cm-1,ir_error,power_dof_per_cm-1,power_error")
    plot(wavenumbers, ir, ir_error, power, power_error)
    print(json.dumps(result, indent=1))


def bands(wavenumbers: np.ndarray, intensities: np.ndarray) -> dict:
    """Peak wavenumbers (cm^-1) of the bend (1300-1900) and stretch (3000-4000) bands."""
    return {"bend": band_maximum(wavenumbers, intensities, 1300.0, 1900.0),
            "stretch": band_maximum(wavenumbers, intensities, 3000.0, 4000.0)}


def plot(wavenumbers, ir, ir_error, power, power_error) -> None:
    """Solvated spectra (block standard errors shaded) over the gas phase at 300 K, each band normalised."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gas = np.loadtxt(HERE / "gas-300K.csv", delimiter=",", skiprows=1)
    figure, axes = plt.subplots(2, 2, figsize=(9, 5), sharex="col")
    for row, (values, error, gas_values, label) in enumerate(((ir, ir_error, gas[:, 1], "IR"),
                                                              (power, power_error, gas[:, 2], "power spectrum"))):
        for column, (low, high) in enumerate(((1350.0, 1800.0), (3300.0, 3900.0))):
            ax = axes[row, column]
            keep, keep_gas = (wavenumbers > low) & (wavenumbers < high), (gas[:, 0] > low) & (gas[:, 0] < high)
            scale = values[keep].max()
            ax.plot(wavenumbers[keep], values[keep] / scale, lw=1.0, label="in TIP3P (electrostatic)")
            ax.fill_between(wavenumbers[keep], (values - error)[keep] / scale, (values + error)[keep] / scale,
                            alpha=0.3, lw=0)
            ax.plot(gas[keep_gas, 0], gas_values[keep_gas] / gas_values[keep_gas].max(), lw=0.8, color="0.4",
                    label="gas phase (one NVE run)")
            ax.set_xlim(low, high)
        axes[row, 0].set_ylabel(f"{label}\n(normalised per band)")
    axes[0, 0].legend(fontsize=8)
    for ax in axes[1]:
        ax.set_xlabel("wavenumber (cm$^{-1}$)")
    figure.suptitle("ML water at 300 K: in TIP3P (20 ps NVE, 4 blocks) and in the gas phase")
    figure.tight_layout()
    figure.savefig(HERE / "solvated.png", dpi=120)
    plt.close(figure)


if __name__ == "__main__":
    main()
