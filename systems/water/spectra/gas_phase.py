"""IR and power spectra of the ML water molecule in the gas phase from NVE MD in OpenMM, against the
model's own harmonic frequencies (normal-mode analysis of the same model).

Every normal mode starts with energy kT (harmonic amplitude, random phase), no rotation; the molecule
then runs NVE (VerletIntegrator, TorchForce of the trained model) and the positions and velocities are
saved every SAVE_EVERY steps. The IR spectrum uses the model's own dipole (its charges times positions)
at every saved frame; the power spectrum the velocities. Each band's peak (the largest point within
60 cm^-1 of a harmonic frequency, refined by a parabola) is compared with the harmonic frequencies and with
those frequencies as the Verlet integrator shifts them, (2/dt) arcsin(omega dt / 2).

    .venv/bin/python systems/water/spectra/gas_phase.py --temperature 20 --time 20
    .venv/bin/python systems/water/spectra/gas_phase.py --temperature 300 --time 20
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
from mlmm.analysis import band_maximum, ir_spectrum, power_spectrum
from mlmm.analysis.normal_modes import harmonic_analysis
from mlmm.potentials.io import load_potential
from mlmm.units import MOLAR_GAS_CONSTANT, SPEED_OF_LIGHT_CM_PER_PS

HERE = Path(__file__).resolve().parent
MODEL = HERE.parent / "model" / "model.pt"
SPECIES = [8, 1, 1]
SAVE_EVERY = 5
BAND_HALF_WIDTH = 60.0  # cm^-1 searched on either side of a harmonic frequency
#: Gas-phase fundamentals of H2O (cm^-1): bend, symmetric and antisymmetric stretch (Shimanouchi, NIST).
EXPERIMENT = [1595.0, 3657.0, 3756.0]


def start(analysis, masses: np.ndarray, temperature: float, seed: int):
    """Positions and velocities with energy kT in every normal mode at a random phase (nm, nm/ps)."""
    phases = np.random.default_rng(seed).uniform(0.0, 2.0 * np.pi, len(analysis.wavenumbers))
    positions, velocities = analysis.positions.copy(), np.zeros_like(analysis.positions)
    kt = MOLAR_GAS_CONSTANT * temperature
    for mode, k, wavenumber, phase in zip(analysis.modes, analysis.force_constants, analysis.wavenumbers, phases):
        # along the unit Cartesian vector q the mode's mass is k / omega^2; amplitude sqrt(2 kT / k)
        omega = 2.0 * np.pi * SPEED_OF_LIGHT_CM_PER_PS * wavenumber
        amplitude = np.sqrt(2.0 * kt / k)
        positions += amplitude * np.cos(phase) * mode
        velocities -= amplitude * omega * np.sin(phase) * mode
    return positions, velocities


def run_nve(positions, velocities, timestep_ps: float, steps: int):
    """Saved positions and velocities [frames, 3, 3] and total energies (kJ/mol) of an NVE run in OpenMM."""
    pdb = app.PDBFile(str(HERE.parent / "water.pdb"))
    mm = app.ForceField("amber14/tip3p.xml").createSystem(pdb.topology, nonbondedMethod=app.NoCutoff,
                                                          constraints=None, rigidWater=False, removeCMMotion=False)
    system = mlmm.create_mixed_system(pdb.topology, mm, "all", str(MODEL), embedding="mechanical")
    integrator = openmm.VerletIntegrator(timestep_ps)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("CPU"), {"Threads": "1"})
    context.setPositions(positions)
    # velocity Verlet: OpenMM's VerletIntegrator is leapfrog with velocities at half steps; starting them
    # half a step early keeps the initial energy in the modes
    state = context.getState(getForces=True)
    forces = state.getForces(asNumpy=True).value_in_unit(u.kilojoule_per_mole / u.nanometer)
    masses = np.array([system.getParticleMass(i).value_in_unit(u.dalton) for i in range(3)])
    context.setVelocities(velocities - 0.5 * timestep_ps * forces / masses[:, None])
    frames = steps // SAVE_EVERY
    saved_positions, saved_velocities, energies = (np.empty((frames, 3, 3)), np.empty((frames, 3, 3)),
                                                   np.empty(frames))
    for n in range(frames):
        integrator.step(SAVE_EVERY)
        state = context.getState(getPositions=True, getVelocities=True, getEnergy=True)
        saved_positions[n] = state.getPositions(asNumpy=True).value_in_unit(u.nanometer)
        saved_velocities[n] = state.getVelocities(asNumpy=True).value_in_unit(u.nanometer / u.picosecond)
        energies[n] = (state.getPotentialEnergy() + state.getKineticEnergy()).value_in_unit(u.kilojoule_per_mole)
    return saved_positions, saved_velocities, energies


def model_dipoles(model, positions: np.ndarray) -> np.ndarray:
    """The model's dipole (e nm) at every frame."""
    species = torch.tensor(SPECIES)
    with torch.no_grad():
        return np.array([model.evaluate(species, torch.from_numpy(x))["dipole"].mean(0).numpy() for x in positions])


def symmetry_axes(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors along the C2 axis (HOH bisector) and in-plane perpendicular to it."""
    first, second = positions[1] - positions[0], positions[2] - positions[0]
    axis = first / np.linalg.norm(first) + second / np.linalg.norm(second)
    axis /= np.linalg.norm(axis)
    across = first - second - np.dot(first - second, axis) * axis
    return axis, across / np.linalg.norm(across)


def mode_peaks(analysis, masses, wavenumbers_grid, dipoles, velocities, interval, temperature, verlet):
    """IR and power-spectrum peak of each normal mode (cm^-1).

    The two O-H stretches of the model lie only ~8 cm^-1 apart, about the resolution of tens of ps; they
    are told apart by symmetry. The molecule does not rotate (zero angular momentum), so the dipole
    component along the C2 axis carries the A1 bands (bend, symmetric stretch) and the in-plane component
    across it the B2 band (antisymmetric stretch); the power spectrum of each mode uses the velocity of its
    mass-weighted normal coordinate.
    """
    axis, across = symmetry_axes(analysis.positions)
    sqrt_m = np.sqrt(masses)[None, :, None]
    ir_peaks, power_peaks = [], []
    for mode, centre in zip(analysis.modes, verlet):
        direction = across if abs(np.dot(mode[0], across)) > abs(np.dot(mode[0], axis)) else axis
        _, ir = ir_spectrum(np.outer(dipoles @ direction, direction), interval)
        weighted = mode * sqrt_m[0] / np.linalg.norm(mode * sqrt_m[0])  # mass-weighted unit mode vector
        coordinate = (velocities * sqrt_m * weighted[None]).sum((1, 2))  # dQ/dt, sqrt(amu) nm/ps
        _, power = power_spectrum(np.pad(coordinate[:, None, None], ((0, 0), (0, 0), (0, 2))), [1.0], interval,
                                  temperature)
        ir_peaks.append(band_maximum(wavenumbers_grid, ir, centre - BAND_HALF_WIDTH, centre + BAND_HALF_WIDTH))
        power_peaks.append(band_maximum(wavenumbers_grid, power, centre - BAND_HALF_WIDTH, centre + BAND_HALF_WIDTH))
    return ir_peaks, power_peaks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--temperature", type=float, default=20.0, help="K (default 20)")
    parser.add_argument("--time", type=float, default=20.0, help="ps of NVE (default 20)")
    parser.add_argument("--timestep", type=float, default=0.1, help="fs (default 0.1)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--replot", action="store_true", help="only redraw the PNG from the CSV and JSON")
    args = parser.parse_args()
    if args.replot:
        return replot(f"gas-{args.temperature:g}K")
    torch.set_num_threads(1)
    model, _ = load_potential(MODEL)
    masses = np.array([15.999, 1.008, 1.008])
    pdb_positions = app.PDBFile(str(HERE.parent / "water.pdb")).getPositions(asNumpy=True).value_in_unit(u.nanometer)
    analysis = harmonic_analysis(model, SPECIES, pdb_positions, masses)
    timestep = args.timestep * 1e-3
    positions, velocities = start(analysis, masses, args.temperature, args.seed)
    saved_positions, saved_velocities, energies = run_nve(positions, velocities, timestep,
                                                          int(round(args.time / timestep)))
    interval = SAVE_EVERY * timestep
    dipoles = model_dipoles(model, saved_positions)
    wavenumbers, ir = ir_spectrum(dipoles, interval)
    _, power = power_spectrum(saved_velocities, masses, interval, args.temperature)
    harmonic = analysis.wavenumbers
    omega_dt = 2.0 * np.pi * SPEED_OF_LIGHT_CM_PER_PS * harmonic * timestep
    verlet = 2.0 / omega_dt * np.arcsin(omega_dt / 2.0) * harmonic
    result = {"temperature_K": args.temperature, "time_ps": args.time, "timestep_fs": args.timestep,
              "seed": args.seed, "frames": len(energies), "save_interval_fs": interval * 1e3,
              "resolution_cm-1": 1.0 / (SPEED_OF_LIGHT_CM_PER_PS * args.time),
              "energy_drift_kJ_mol": float(energies[-1] - energies[0]),
              "energy_rms_kJ_mol": float(energies.std()),
              "harmonic_cm-1": harmonic.tolist(), "harmonic_verlet_cm-1": verlet.tolist(),
              "harmonic_ir_km_mol": analysis.ir_intensities.tolist(),
              "experiment_cm-1": EXPERIMENT}
    result["ir_peaks_cm-1"], result["power_peaks_cm-1"] = mode_peaks(
        analysis, masses, wavenumbers, dipoles, saved_velocities, interval, args.temperature, verlet)
    for kind in ("ir", "power"):
        result[f"{kind}_minus_harmonic_cm-1"] = [p - h for p, h in zip(result[f"{kind}_peaks_cm-1"], harmonic)]
    name = f"gas-{args.temperature:g}K"
    (HERE / f"{name}.json").write_text(json.dumps(result, indent=1))
    np.savetxt(HERE / f"{name}.csv", np.column_stack([wavenumbers, ir, power])[wavenumbers < 4500], delimiter=",",
               header="wavenumber_cm-1,ir_e2_nm2_ps-2_per_cm-1,power_dof_per_cm-1", comments="", fmt="%.6g")
    plot(name, wavenumbers, ir, power, harmonic, args.temperature)
    print(json.dumps(result, indent=1))


def plot(name: str, wavenumbers, ir, power, harmonic, temperature: float) -> None:
    """IR and power spectrum around the bend and the stretches, harmonic frequencies dotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, 2, figsize=(9, 5), sharex="col")
    ranges = [(harmonic[0] - 40, harmonic[0] + 40), (harmonic[1] - 60, harmonic[2] + 60)]
    for row, (values, label) in enumerate(((ir, "IR (model dipole)"), (power, "power spectrum"))):
        for column, (low, high) in enumerate(ranges):
            keep = (wavenumbers > low) & (wavenumbers < high)
            ax = axes[row, column]
            ax.plot(wavenumbers[keep], values[keep] / values[keep].max(), lw=0.9, label=label)
            for h in harmonic:
                if low < h < high:
                    ax.axvline(h, color="k", ls=":", lw=0.8)
            ax.set_xlim(low, high)
        axes[row, 0].set_ylabel(f"{label}\n(normalised)")
    for ax in axes[1]:
        ax.set_xlabel("wavenumber (cm$^{-1}$)")
    figure.suptitle(f"ML water, gas phase, NVE at {temperature:g} K (dotted: the model's harmonic frequencies)")
    figure.tight_layout()
    figure.savefig(HERE / f"{name}.png", dpi=120)
    plt.close(figure)


def replot(name: str) -> None:
    """Redraw ``name``.png from its CSV and JSON."""
    table = np.loadtxt(HERE / f"{name}.csv", delimiter=",", skiprows=1)
    result = json.loads((HERE / f"{name}.json").read_text())
    plot(name, table[:, 0], table[:, 1], table[:, 2], result["harmonic_cm-1"], result["temperature_K"])


if __name__ == "__main__":
    main()
