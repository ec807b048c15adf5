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


DIMER_DIR = Path(__file__).resolve().parents[1] / "systems" / "formic-acid-dimer"
ML_FORCE_GROUP = 5


@pytest.fixture(scope="session")
def dimer_in_water():
    """The formic acid dimer in TIP3P: (pdb, PME 0.9 nm system with rigid waters and a flexible dimer, dimer atoms)."""
    pdb = app.PDBFile(str(DIMER_DIR / "formic-acid-dimer-tip3p.pdb"))
    forcefield = app.ForceField(str(DIMER_DIR / "formic-acid.xml"), "amber14/tip3p.xml")
    system = forcefield.createSystem(pdb.topology, nonbondedMethod=app.PME, nonbondedCutoff=0.9 * u.nanometer,
                                     constraints=None, rigidWater=True)
    return pdb, system, [a.index for a in pdb.topology.atoms() if a.residue.name == "FMA"]


def ml_force_energy(system: openmm.System, positions) -> tuple[float, np.ndarray]:
    """Energy (kJ/mol) and forces (kJ/mol/nm) of the forces named ``mlmm*`` alone (Reference platform)."""
    for force in system.getForces():
        if force.getName().startswith("mlmm"):
            force.setForceGroup(ML_FORCE_GROUP)
    return evaluate(system, positions, groups={ML_FORCE_GROUP})


def check_qeq_charges_scheme(potential: torch.nn.Module, dimer) -> None:
    """An energy-only potential with QEq charges in the mechanical-ml-charges scheme, on the dimer in water.

    QEq charges do not depend on the MM charges, so the ML force is E_ML + s C with the MM charges
    scaled by s: 2 E(1/2) - E(1) must equal the potential's mechanical-embedding energy.
    """
    import mlmm
    from mlmm.embedding.surgery import clone_system

    pdb, mm_system, ml_atoms = dimer
    energies = {}
    for scale in (0.5, 1.0):
        scaled = clone_system(mm_system)
        nonbonded = next(f for f in scaled.getForces() if isinstance(f, openmm.NonbondedForce))
        for i in set(range(scaled.getNumParticles())) - set(ml_atoms):
            charge, sigma, epsilon = nonbonded.getParticleParameters(i)
            nonbonded.setParticleParameters(i, scale * charge, sigma, epsilon)
        mixed = mlmm.create_mixed_system(pdb.topology, scaled, ml_atoms, mlmm.potentials.QEqCharges(potential),
                                         embedding="mechanical-ml-charges")
        energies[scale] = ml_force_energy(mixed, pdb.positions)[0]
    mechanical = ml_force_energy(mlmm.create_mixed_system(pdb.topology, mm_system, ml_atoms, potential),
                                 pdb.positions)[0]
    assert 2 * energies[0.5] - energies[1.0] == pytest.approx(mechanical, rel=1e-10)
    assert abs(energies[1.0] - mechanical) > 1.0  # the QEq charges do interact with the water


def check_adapted_model_file(family: str, source: Path, potential: torch.nn.Module, dimer, output: Path) -> None:
    """``mlmm adapt FAMILY SOURCE OUTPUT`` writes a model file that runs without the adapter, as ``potential``."""
    import mlmm
    from mlmm.cli import main

    pdb, mm_system, ml_atoms = dimer
    assert main(["adapt", family, str(source), str(output)]) == 0
    from_file = mlmm.create_mixed_system(pdb.topology, mm_system, ml_atoms, output)
    in_memory = mlmm.create_mixed_system(pdb.topology, mm_system, ml_atoms, potential)
    assert ml_force_energy(from_file, pdb.positions)[0] == pytest.approx(
        ml_force_energy(in_memory, pdb.positions)[0], rel=1e-12)


WATER_DIR = Path(__file__).resolve().parents[1] / "systems" / "water"
#: The trained water models for each scheme (a vacuum model serves both mechanical schemes).
WATER_MODELS = {
    "mechanical": WATER_DIR / "model" / "model.pt",
    "mechanical-ml-charges": WATER_DIR / "model" / "model.pt",
    "electrostatic": WATER_DIR / "embedding" / "model" / "model.pt",
    "buffer": WATER_DIR / "buffer" / "model" / "model.pt",
}
