"""Shared fixtures: alanine dipeptide in TIP3P built with OpenMM's amber14/tip3p files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as u
import pytest
import torch

SYSTEM_DIR = Path(__file__).resolve().parents[1] / "systems" / "alanine-dipeptide"
SOLUTE = list(range(22))
SOLUTE_SELECTION = "resname ACE or resname ALA or resname NME"
FORCEFIELD_FILES = ("amber14-all.xml", "amber14/tip3p.xml")


def evaluate(system: openmm.System, positions, platform: str = "Reference", box=None,
             parameters: dict | None = None, groups: int | set = -1) -> tuple[float, np.ndarray]:
    """Potential energy (kJ/mol) and forces (kJ/mol/nm) of ``system`` (or of force ``groups``)."""
    properties = {"Threads": "1"} if platform == "CPU" else {}
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName(platform),
                             properties)
    if box is not None:
        context.setPeriodicBoxVectors(*box)
    context.setPositions(positions)
    for name, value in (parameters or {}).items():
        context.setParameter(name, value)
    state = context.getState(getEnergy=True, getForces=True, groups=groups)
    return (state.getPotentialEnergy().value_in_unit(u.kilojoule_per_mole),
            state.getForces(asNumpy=True).value_in_unit(u.kilojoule_per_mole / u.nanometer))


def finite_difference_forces(system: openmm.System, positions: np.ndarray, atoms, group: int, h: float = 1e-5
                             ) -> np.ndarray:
    """Central-difference forces (kJ/mol/nm) [len(atoms), 3] on ``atoms`` from the energy of force ``group``."""
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    forces = np.zeros((len(atoms), 3))
    for k, atom in enumerate(atoms):
        for axis in range(3):
            values = []
            for sign in (1, -1):
                moved = np.array(positions, dtype=float)
                moved[atom, axis] += sign * h
                context.setPositions(moved)
                values.append(context.getState(getEnergy=True, groups={group}).getPotentialEnergy()
                              .value_in_unit(u.kilojoule_per_mole))
            forces[k, axis] = -(values[0] - values[1]) / (2 * h)
    return forces


class ZeroPotential(torch.nn.Module):
    """E = 0 with a graph attached to the positions."""

    def forward(self, species: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return (positions * 0.0).sum()


class CentroidRestraint(torch.nn.Module):
    """Analytic E = k * sum_i |r_i - centroid|^2 (kJ/mol), with k in kJ/mol/nm^2."""

    def __init__(self, k: float = 150.0):
        super().__init__()
        self.k = k

    def forward(self, species: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        centred = positions - positions.mean(0, keepdim=True)
        return self.k * (centred * centred).sum()


@pytest.fixture(scope="session")
def forcefield():
    return app.ForceField(*FORCEFIELD_FILES)


@pytest.fixture(scope="session")
def solvated():
    return app.PDBFile(str(SYSTEM_DIR / "alanine-dipeptide-tip3p.pdb"))


@pytest.fixture(scope="session")
def solute_pdb():
    return app.PDBFile(str(SYSTEM_DIR / "alanine-dipeptide.pdb"))


@pytest.fixture(scope="session")
def vacuum_solute_system(forcefield, solute_pdb):
    """The solute alone, no cutoff: E_MM(solute alone)."""
    return forcefield.createSystem(solute_pdb.topology, nonbondedMethod=app.NoCutoff, constraints=None)


@pytest.fixture(scope="session")
def cluster_system(forcefield, solvated):
    """Solute + waters without periodicity (NoCutoff), flexible solute."""
    return forcefield.createSystem(solvated.topology, nonbondedMethod=app.NoCutoff, constraints=None)


@pytest.fixture(scope="session")
def pme_system(forcefield, solvated):
    """Solute + waters with PME, 0.9 nm cutoff, HBonds constraints."""
    return forcefield.createSystem(solvated.topology, nonbondedMethod=app.PME, nonbondedCutoff=0.9 * u.nanometer,
                                   constraints=app.HBonds)


@pytest.fixture(scope="session")
def pme_flexible_system(forcefield, solvated):
    """Solute + rigid waters with PME, 0.9 nm cutoff, no constraints on the solute."""
    return forcefield.createSystem(solvated.topology, nonbondedMethod=app.PME, nonbondedCutoff=0.9 * u.nanometer,
                                   constraints=None, rigidWater=True)


@pytest.fixture(scope="session")
def octahedron(forcefield, solute_pdb):
    """The solute in a truncated-octahedron TIP3P box (triclinic reduced form), PME 0.8 nm."""
    modeller = app.Modeller(solute_pdb.topology, solute_pdb.positions)
    modeller.addSolvent(forcefield, model="tip3p", padding=1.1 * u.nanometer, boxShape="octahedron")
    system = forcefield.createSystem(modeller.topology, nonbondedMethod=app.PME, nonbondedCutoff=0.8 * u.nanometer,
                                     constraints=None, rigidWater=True)
    return modeller.topology, system, np.asarray(modeller.positions.value_in_unit(u.nanometer))


@pytest.fixture(scope="session")
def ff_potential(vacuum_solute_system, solute_pdb):
    from mlmm.potentials import ForceFieldPotential

    numbers = [a.element.atomic_number for a in solute_pdb.topology.atoms()]
    return ForceFieldPotential.from_system(vacuum_solute_system, SOLUTE, numbers)


def solute_positions_tensor(positions) -> torch.Tensor:
    """Solute positions (nm) as a float64 tensor."""
    return torch.tensor(np.asarray(positions.value_in_unit(u.nanometer))[SOLUTE], dtype=torch.float64)
