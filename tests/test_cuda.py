"""The CUDA platform with CUDA graphs, every scheme: the same energies and forces as the Reference platform.

Skipped where no CUDA platform and GPU are present (the suite never needs one)."""


import numpy as np
import openmm
import openmm.app as app
import openmm.unit as u
import pytest
import torch

import mlmm
from conftest import WATER_DIR, WATER_MODELS, evaluate


def _cuda_available() -> bool:
    try:
        openmm.Platform.getPlatformByName("CUDA")
    except Exception:  # OpenMM raises a plain Exception for an unknown platform
        return False
    return torch.cuda.is_available()


pytestmark = pytest.mark.skipif(not _cuda_available(), reason="needs the OpenMM CUDA platform and a GPU")



@pytest.fixture(scope="module")
def water_box():
    pdb = app.PDBFile(str(WATER_DIR / "water-tip3p.pdb"))
    system = app.ForceField("amber14/tip3p.xml").createSystem(pdb.topology, nonbondedMethod=app.PME,
                                                              nonbondedCutoff=0.9 * u.nanometer, constraints=None)
    return pdb, system


@pytest.mark.parametrize("embedding", list(WATER_MODELS))
def test_cuda_graphs_match_the_reference_platform_during_md(water_box, embedding):
    """20 steps of MD on CUDA with the ML force in a CUDA graph (replayed as the MM molecules move), then the
    energy and forces at the final positions against the Reference platform (mixed precision: 1e-5)."""
    pdb, mm_system = water_box
    system = mlmm.create_mixed_system(pdb.topology, mm_system, [0, 1, 2], WATER_MODELS[embedding], embedding=embedding,
                                      cuda_graphs=True)
    integrator = openmm.LangevinMiddleIntegrator(300 * u.kelvin, 1 / u.picosecond, 0.0005 * u.picosecond)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("CUDA"))
    context.setPositions(pdb.positions)
    integrator.step(20)
    state = context.getState(getEnergy=True, getForces=True, getPositions=True)
    energy = state.getPotentialEnergy().value_in_unit(u.kilojoule_per_mole)
    forces = state.getForces(asNumpy=True).value_in_unit(u.kilojoule_per_mole / u.nanometer)
    expected_energy, expected_forces = evaluate(system, state.getPositions())
    assert np.isfinite(energy)
    assert energy == pytest.approx(expected_energy, rel=1e-5, abs=0.05)
    np.testing.assert_allclose(forces, expected_forces, atol=1e-3 * np.abs(expected_forces).max())
