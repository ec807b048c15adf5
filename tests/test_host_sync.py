"""The fixed-shape paths that run on GPUs use no operation that synchronises the GPU with the host.

A CUDA graph cannot hold such an operation (its capture fails), so every scheme's module must
avoid them where shapes are fixed. tests/test_cuda.py checks the capture itself on a GPU; this
test runs everywhere: it records the aten operations of one energy + gradient evaluation of each
scheme under fixed shapes (:func:`~mlmm.potentials.neighbors.fixed_shape_tracing`, the GPU path on
CPU) and looks for the known synchronising ones. The networks are the trained water models rebuilt
from their recipes, i.e. with this mlmm's code (what ``mlmm rescript`` and training write).
"""

import openmm.app as app
import openmm.unit as u
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import mlmm
from conftest import WATER_DIR, WATER_MODELS
from mlmm.bridge.ahead_of_time import energy_and_gradient
from mlmm.bridge.transports import without_parameter_gradients
from mlmm.potentials.neighbors import fixed_shape_tracing
from mlmm.training.models import eager_potential

#: aten operations that wait for the GPU: a value read on the host (item), data-dependent shapes
#: (nonzero, masked_select), linalg's error checks (linalg.solve, cholesky, inv: use the _ex forms),
#: and prod, whose backward counts the zero factors on the host.
SYNCHRONISING = {"aten._local_scalar_dense", "aten.nonzero", "aten.masked_select", "aten._linalg_check_errors",
                 "aten.prod", "aten.is_nonzero", "aten.equal"}


class RecordedOperations(TorchDispatchMode):
    """Records the name of every aten operation dispatched while it is active."""

    def __init__(self):
        super().__init__()
        self.names = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.add(str(func.overloadpacket))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("embedding", list(WATER_MODELS))
def test_the_fixed_shape_path_has_no_host_synchronisation(embedding):
    pdb = app.PDBFile(str(WATER_DIR / "water-tip3p.pdb"))
    system = app.ForceField("amber14/tip3p.xml").createSystem(pdb.topology, nonbondedMethod=app.PME,
                                                              nonbondedCutoff=0.9 * u.nanometer, constraints=None)
    module = without_parameter_gradients(mlmm.plan_embedding(
        pdb.topology, system, [0, 1, 2], eager_potential(WATER_MODELS[embedding]), embedding=embedding).module)
    positions = torch.tensor(pdb.positions.value_in_unit(u.nanometer), dtype=torch.float64)
    box = torch.tensor(pdb.topology.getPeriodicBoxVectors().value_in_unit(u.nanometer), dtype=torch.float64)
    recorded = RecordedOperations()
    with fixed_shape_tracing(), recorded:
        energy, gradient = energy_and_gradient(module, positions, box)
    assert torch.isfinite(energy) and torch.isfinite(gradient).all()
    assert gradient.abs().max() > 0  # the backward ran
    assert len(recorded.names) > 20  # the mode saw the module's operations
    assert not recorded.names & SYNCHRONISING, sorted(recorded.names & SYNCHRONISING)
