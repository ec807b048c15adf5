"""OpenMM reporters: what a charge-coupled embedding sees (MM molecules around the ML region, ML charges,
dipole and its time derivative) and how much a committee disagrees on the ML region."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Union

import openmm.unit as u
import torch


class _CSVReporter:
    """Shared by the reporters: a CSV file written every ``interval`` steps, appended to when ``append``."""

    include = ["positions"]

    def __init__(self, file: Union[str, Path], interval: int, append: bool):
        if int(interval) < 1:
            raise ValueError(f"interval must be a positive number of steps, got {interval!r}")
        self.interval = int(interval)
        self.path = Path(file)
        self._file = open(self.path, "a" if append else "w", newline="")
        self._writer = csv.writer(self._file)
        self._header_written = append and self.path.stat().st_size > 0

    def describeNextReport(self, simulation):
        steps = self.interval - simulation.currentStep % self.interval
        return {"steps": steps, "periodic": False, "include": self.include}

    def close(self) -> None:
        """Close the CSV file."""
        self._file.close()


class EmbeddingReporter(_CSVReporter):
    """Write, every ``interval`` steps, one CSV row of the embedding's view of the system.

    Columns: step, time (ps), ``molecules`` (MM molecules with a non-zero weight in the
    environment), the energy parts the module reports (kJ/mol), the ML dipole (e nm; for the
    electrostatic scheme charges plus induced dipoles, about the coordinate origin of the
    whole ML region), with ``dipole_derivative`` its exact time derivative dM/dt = sum_i (dM/dr_i) . v_i
    (e nm/ps; automatic differentiation over every atom, the MM ones included, at three extra backward
    passes per row: the input for :func:`mlmm.analysis.ir_spectrum` with ``derivative=True``), and the
    ML charges q_0 ... q_{n-1} (e).

    Parameters
    ----------
    file : str or Path
        CSV file; appended to when ``append`` (for a resumed run), otherwise overwritten.
    interval : int
        Steps between rows.
    module : torch.nn.Module
        The embedding module with a ``report(positions, boxvectors)`` method, e.g.
        ``mlmm.plan_embedding(...).module`` for ``embedding="electrostatic"`` or ``"buffer"``.
    append : bool
        Continue an existing file (a resumed run) instead of overwriting it.
    dipole_derivative : bool
        Also write dM/dt (columns ``dipole_derivative_{x,y,z}_e_nm_per_ps``).
    """

    def __init__(self, file: Union[str, Path], interval: int, module: torch.nn.Module, append: bool = False,
                 dipole_derivative: bool = False):
        if not callable(getattr(module, "report", None)):
            raise TypeError(f"{type(module).__name__} has no report(positions, boxvectors) method; use the module of "
                            "an electrostatic or buffer embedding (mlmm.plan_embedding(...).module)")
        super().__init__(file, interval, append)
        self.module = module
        self.dipole_derivative = dipole_derivative
        if dipole_derivative:
            self.include = ["positions", "velocities"]

    def report(self, simulation, state) -> None:
        positions = torch.as_tensor(state.getPositions(asNumpy=True).value_in_unit(u.nanometer))
        box = None
        if simulation.system.usesPeriodicBoundaryConditions():
            box = torch.as_tensor(state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(u.nanometer))
        derivative: list = []
        if self.dipole_derivative:
            velocities = torch.as_tensor(state.getVelocities(asNumpy=True).value_in_unit(u.nanometer / u.picosecond))
            positions.requires_grad_(True)
            outputs = self.module.report(positions, box)
            derivative = [float((torch.autograd.grad(outputs["dipole"][k], positions, retain_graph=k < 2)[0]
                                 * velocities).sum()) for k in range(3)]
            outputs = {key: value.detach() for key, value in outputs.items()}
        else:
            with torch.no_grad():
                outputs = self.module.report(positions, box)
        energies = sorted(key for key in outputs if key.endswith("energy"))
        charges = outputs["charges"].tolist()
        if not self._header_written:
            self._writer.writerow(["step", "time_ps", "molecules", *[f"{k}_kJ_per_mol" for k in energies],
                                   "dipole_x_e_nm", "dipole_y_e_nm", "dipole_z_e_nm",
                                   *([f"dipole_derivative_{x}_e_nm_per_ps" for x in "xyz"] if derivative else []),
                                   *[f"q{i}_e" for i in range(len(charges))]])
            self._header_written = True
        self._writer.writerow([simulation.currentStep, state.getTime().value_in_unit(u.picosecond),
                               int(outputs["molecules"]), *[float(outputs[k]) for k in energies],
                               *outputs["dipole"].tolist(), *derivative, *charges])
        self._file.flush()


class UncertaintyReporter(_CSVReporter):
    """Write, every ``interval`` steps, one CSV row of a committee's disagreement on the ML region.

    The committee (an mlmm network with ``energy_and_uncertainty``, e.g. the model of an active-learning
    iteration) is evaluated on the ML atoms alone, in vacuum, at the simulation's positions. Columns: step,
    time (ps), the committee-mean energy and its spread sigma_E (kJ/mol), the largest per-atom force spread
    sigma_F (kJ/mol/nm) and the atom (system index) that has it. Frames with a large sigma_F are where the
    network is extrapolating: candidates for labelling.

    Parameters
    ----------
    file, interval, append
        As for :class:`EmbeddingReporter`.
    potential : torch.nn.Module
        The committee (``mlmm.load_potential(path)[0]``).
    ml_atoms : sequence of int
        System indices of the ML atoms, in the order the potential expects.
    """

    def __init__(self, file: Union[str, Path], interval: int, potential: torch.nn.Module, ml_atoms,
                 append: bool = False):
        if not callable(getattr(potential, "energy_and_uncertainty", None)):
            raise TypeError(f"{type(potential).__name__} has no energy_and_uncertainty(species, positions); use an "
                            "mlmm network potential (a committee: n_members >= 2, or its spread is zero)")
        super().__init__(file, interval, append)
        self.potential = potential
        self.ml_atoms = torch.as_tensor(list(ml_atoms), dtype=torch.long)
        self._species = None
        if not self._header_written:
            self._writer.writerow(["step", "time_ps", "energy_kJ_per_mol", "sigma_energy_kJ_per_mol",
                                   "max_sigma_force_kJ_per_mol_nm", "atom_of_max_sigma_force"])
            self._header_written = True

    def report(self, simulation, state) -> None:
        if self._species is None:
            atoms = list(simulation.topology.atoms())
            self._species = torch.tensor([atoms[int(i)].element.atomic_number for i in self.ml_atoms])
        positions = torch.as_tensor(state.getPositions(asNumpy=True).value_in_unit(u.nanometer))
        energy, sigma_energy, sigma_forces = self.potential.energy_and_uncertainty(
            self._species, positions.index_select(0, self.ml_atoms))
        worst = int(torch.argmax(sigma_forces))
        self._writer.writerow([simulation.currentStep, state.getTime().value_in_unit(u.picosecond), float(energy),
                               float(sigma_energy), float(sigma_forces[worst]), int(self.ml_atoms[worst])])
        self._file.flush()
