"""Peer parity: openmm-ml 1.8's mechanical embedding with the identical torch model."""

import numpy as np
import openmm
import openmm.unit as u
import pytest
import torch

import mlmm
from conftest import SOLUTE, evaluate

openmmml = pytest.importorskip("openmmml")


def _compute(state, model, atoms, species):
    """openmm-ml style PythonForce callback (positions of the ML particles only, nm)."""
    positions = torch.tensor(state.getPositions(asNumpy=True).value_in_unit(u.nanometer), dtype=torch.float64)
    positions.requires_grad_(True)
    energy = model(species, positions)
    energy.backward()
    return float(energy.detach()), -positions.grad.numpy()


class _TorchModelImpl(openmmml.mlpotential.MLPotentialImpl):
    """An openmm-ml potential wrapping a given torch module, written the way openmm-ml's models are."""

    def __init__(self, model):
        self.model = model

    def addForces(self, topology, system, atoms, forceGroup, **args):
        from functools import partial

        atoms = list(range(topology.getNumAtoms())) if atoms is None else list(atoms)
        elements = [a.element.atomic_number for a in topology.atoms()]
        species = torch.tensor([elements[i] for i in atoms])
        force = openmm.PythonForce(partial(_compute, model=self.model, atoms=atoms, species=species))
        force.setParticles(atoms)
        force.setForceGroup(forceGroup)
        system.addForce(force)

    def getMLLongRange(self):
        return False


class _Factory(openmmml.mlpotential.MLPotentialImplFactory):
    model = None

    def createImpl(self, name, **args):
        return _TorchModelImpl(self.model)


@pytest.mark.parametrize("system_name", ["cluster_system", "pme_flexible_system"])
def test_same_energy_and_forces_as_openmmml_mechanical(system_name, request, solvated, ff_potential):
    system = request.getfixturevalue(system_name)
    factory = _Factory()
    factory.model = ff_potential
    openmmml.MLPotential.registerImplFactory("mlmm-test-model", factory)
    peer = openmmml.MLPotential("mlmm-test-model").createMixedSystem(solvated.topology, system, SOLUTE,
                                                                     embedding="mechanical")
    ours = mlmm.create_mixed_system(solvated.topology, system, SOLUTE, ff_potential, embedding="mechanical")
    e_peer, f_peer = evaluate(peer, solvated.positions)
    e_ours, f_ours = evaluate(ours, solvated.positions)
    assert abs(e_ours - e_peer) <= 1e-5 * abs(e_peer)
    scale = np.abs(f_peer).max()
    assert np.abs(f_ours - f_peer).max() <= 1e-5 * scale
