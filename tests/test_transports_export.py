"""TorchForce, PythonForce (also compiled by torch.compile) and the exported .pt give the same energies and forces."""

import json
import shutil
import subprocess
import sys
import textwrap

from pathlib import Path

import numpy as np
import openmm
import pytest
import torch

import mlmm
from mlmm.potentials import PhysNet, QEqCharges
from conftest import SOLUTE, evaluate

EMBEDDINGS = ["mechanical", "mechanical-ml-charges"]
WATER_ELECTROSTATIC = Path(__file__).resolve().parents[1] / "systems" / "water" / "embedding" / "model" / "model.pt"


def _potential(embedding, ff_potential):
    return QEqCharges(ff_potential) if embedding == "mechanical-ml-charges" else ff_potential


@pytest.mark.parametrize("embedding", EMBEDDINGS)
@pytest.mark.parametrize("platform", ["Reference", "CPU"])
def test_transports_agree(embedding, platform, solvated, pme_system, ff_potential):
    potential = _potential(embedding, ff_potential)
    results = {}
    for transport in ("torch", "python"):
        system = mlmm.create_mixed_system(solvated.topology, pme_system, SOLUTE, potential, embedding,
                                          transport=transport, force_group=1)
        results[transport] = evaluate(system, solvated.positions, platform, groups={1})
    (e_torch, f_torch), (e_python, f_python) = results["torch"], results["python"]
    assert abs(e_torch - e_python) <= 1e-6 * abs(e_torch)
    scale = np.abs(f_torch).max()
    assert scale > 1.0
    assert np.abs(f_torch - f_python).max() <= 1e-6 * scale


PLAIN_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import openmm, openmm.app as app, openmm.unit as u
    import openmmtorch
    pt, xml, pdb, out = sys.argv[1:]
    system = openmm.XmlSerializer.deserialize(open(xml).read())
    force = openmmtorch.TorchForce(pt)
    force.setUsesPeriodicBoundaryConditions(True)
    force.setForceGroup(1)
    system.addForce(force)
    positions = app.PDBFile(pdb).positions
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions)
    state = context.getState(getEnergy=True, getForces=True)
    assert "mlmm" not in sys.modules
    np.savez(out, energy=state.getPotentialEnergy().value_in_unit(u.kilojoule_per_mole),
             forces=state.getForces(asNumpy=True).value_in_unit(u.kilojoule_per_mole / u.nanometer))
""")


@pytest.mark.parametrize("embedding", EMBEDDINGS)
def test_exported_file_runs_in_a_plain_openmm_script(embedding, tmp_path, solvated, pme_system, ff_potential):
    from conftest import SYSTEM_DIR

    potential = _potential(embedding, ff_potential)
    pt, xml = tmp_path / "ml.pt", tmp_path / "mm.xml"
    mlmm.export(pt, solvated.topology, pme_system, SOLUTE, potential, embedding, system_xml=xml)
    script = tmp_path / "plain.py"
    script.write_text(PLAIN_SCRIPT)
    out = tmp_path / "out.npz"
    subprocess.run([sys.executable, str(script), str(pt), str(xml), str(SYSTEM_DIR / "alanine-dipeptide-tip3p.pdb"),
                    str(out)], check=True, cwd=tmp_path)
    plain = np.load(out)
    system = mlmm.create_mixed_system(solvated.topology, pme_system, SOLUTE, potential, embedding)
    energy, forces = evaluate(system, solvated.positions)
    assert abs(float(plain["energy"]) - energy) <= 1e-9 * abs(energy)
    np.testing.assert_allclose(plain["forces"], forces, atol=1e-9, rtol=0)
    import torch

    files = {"mlmm_force.json": ""}
    torch.jit.load(str(pt), _extra_files=files)
    assert json.loads(files["mlmm_force.json"])["embedding"] == embedding


def test_cuda_graphs_are_requested_from_torchforce_and_ignored_on_cpu(solvated, pme_system, ff_potential):
    plain = mlmm.create_mixed_system(solvated.topology, pme_system, SOLUTE, ff_potential)
    graphed = mlmm.create_mixed_system(solvated.topology, pme_system, SOLUTE, ff_potential, cuda_graphs=True)
    assert '<Property name="useCUDAGraphs" value="true"/>' in openmm.XmlSerializer.serialize(graphed)
    assert '<Property name="useCUDAGraphs" value="false"/>' in openmm.XmlSerializer.serialize(plain)
    energies = []
    for system in (graphed, plain):  # the ML force alone: float64 in torch, while the CPU platform's PME is single
        next(f for f in system.getForces() if f.getName() == "mlmm mechanical").setForceGroup(5)
        energies.append(evaluate(system, solvated.positions, platform="CPU", groups={5})[0])
    assert energies[0] == pytest.approx(energies[1], rel=1e-12) and energies[0] != 0.0
    with pytest.raises(ValueError, match="cuda_graphs=True needs transport='torch'"):
        mlmm.create_mixed_system(solvated.topology, pme_system, SOLUTE, ff_potential, transport="python",
                                 cuda_graphs=True)


def random_physnet():
    """A small PhysNet with random (non-zero) outputs for the solute's elements, float64."""
    torch.manual_seed(5)
    network = PhysNet(["H", "C", "N", "O"], n_features=16, n_basis=8).double()
    for block in network.blocks:
        torch.nn.init.normal_(block.output.weight, std=0.1)
    return network


@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("clang++") is None,
                    reason="torch.compile (Inductor) needs a C++ compiler")
def test_a_compiled_python_force_agrees_with_torchforce(solvated, pme_system):
    """torch.compile'd PythonForce runs the fixed-shape paths (full neighbour lists, the ``capacity``
    nearest MM molecules, no host checks) and must give TorchForce's energy and forces."""
    network = random_physnet()
    results = {}
    for transport, compiled in (("torch", False), ("python", True)):
        system = mlmm.create_mixed_system(solvated.topology, pme_system, SOLUTE, network, "mechanical-ml-charges",
                                          transport=transport, compiled=compiled, force_group=1)
        results[transport] = evaluate(system, solvated.positions, "CPU", groups={1})
    (e_torch, f_torch), (e_compiled, f_compiled) = results["torch"], results["python"]
    assert abs(e_torch - e_compiled) <= 1e-6 * abs(e_torch)
    scale = np.abs(f_torch).max()
    assert scale > 1.0
    assert np.abs(f_torch - f_compiled).max() <= 1e-6 * scale


def test_compiled_needs_the_python_transport_an_eager_network_and_fixed_shapes(solvated, pme_system):
    network = random_physnet()
    with pytest.raises(ValueError, match="transport='python'"):
        mlmm.create_mixed_system(solvated.topology, pme_system, SOLUTE, network, compiled=True)
    with pytest.raises(ValueError, match="cannot trace TorchScript"):
        mlmm.create_mixed_system(solvated.topology, pme_system, SOLUTE, torch.jit.script(network), transport="python",
                                 compiled=True)
    with pytest.raises(ValueError, match="fixed shapes"):
        mlmm.create_mixed_system(solvated.topology, pme_system, SOLUTE, network, "buffer", transport="python",
                                 compiled=True)
    with pytest.raises(ValueError, match="electrostatic model file"):
        mlmm.create_mixed_system(solvated.topology, pme_system, SOLUTE, WATER_ELECTROSTATIC, "electrostatic",
                                 transport="python", compiled=True)
