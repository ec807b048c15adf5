"""TorchForce, PythonForce (also compiled ahead of time) and the exported .pt give the same energies and forces."""

import copy
import json
import shutil
import subprocess
import sys
import textwrap


import numpy as np
import openmm
import openmm.unit as u
import pytest
import torch

import mlmm
from mlmm.potentials import PhysNet, QEqCharges, load_potential
from conftest import DIMER_DIR, SOLUTE, evaluate, ml_force_energy

EMBEDDINGS = ["mechanical", "mechanical-ml-charges"]
WATER_ELECTROSTATIC = DIMER_DIR.parent / "water" / "embedding" / "model" / "model.pt"


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


@pytest.mark.parametrize("embedding, model, options", [
    ("mechanical", DIMER_DIR / "model" / "model.pt", {}),
    ("electrostatic", DIMER_DIR / "embedding" / "model" / "model.pt", {}),
    ("buffer", DIMER_DIR / "buffer" / "model-anchored-contacts" / "model.pt",
     {"buffer_cutoff": 0.45, "buffer_switch_distance": 0.35})])
def test_a_python_force_system_survives_copy_and_xml(dimer_in_water, embedding, model, options):
    """A System whose PythonForce runs a model loaded from a file (TorchScript, which pickle cannot
    write by itself) can be copied and written to and read back from XML, as scripts and tools
    that save or copy Systems do; the copies give the original's ML energy and forces (the eager
    module against the TorchScript it was pickled as: the same operations)."""
    pdb, mm_system, dimer = dimer_in_water
    system = mlmm.create_mixed_system(pdb.topology, mm_system, dimer, str(model), embedding, transport="python",
                                      **options)
    copies = [copy.deepcopy(system), openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(system))]
    energy, forces = ml_force_energy(system, pdb.positions)
    assert energy != 0.0
    for copied in copies:
        copied_energy, copied_forces = ml_force_energy(copied, pdb.positions)
        assert copied_energy == pytest.approx(energy, rel=1e-12)
        assert np.abs(copied_forces - forces).max() <= 1e-9 * np.abs(forces).max()


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
                    reason="AOTInductor needs a C++ compiler")
@pytest.mark.parametrize("embedding, model", [("mechanical-ml-charges", DIMER_DIR / "model" / "model.pt"),
                                              ("electrostatic", DIMER_DIR / "embedding" / "model" / "model.pt")])
def test_a_compiled_python_force_agrees_with_torchforce(dimer_in_water, embedding, model):
    """The PythonForce compiled ahead of time (from the networks rebuilt from the model file's
    recipes; the electrostatic model's vacuum and embedding terms compiled one by one) runs the
    fixed-shape paths (full neighbour lists, the ``capacity`` nearest MM molecules, no host checks)
    and must give TorchForce's energy and forces, also at a second geometry (the dimer moved 0.2 nm)
    with other MM molecules within the cutoff than at the first call, whose geometry the graph was
    compiled at."""
    pdb, mm_system, dimer = dimer_in_water
    start = np.array(pdb.positions.value_in_unit(u.nanometer))
    moved = start.copy()
    moved[dimer] += [0.2, 0.0, 0.0]
    results = {}
    for transport, compiled in (("torch", False), ("python", True)):
        system = mlmm.create_mixed_system(pdb.topology, mm_system, dimer, str(model), embedding, transport=transport,
                                          compiled=compiled, force_group=1)
        context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("CPU"),
                                 {"Threads": "1"})
        results[transport] = []
        for positions in (start, moved):
            context.setPositions(positions)
            state = context.getState(getEnergy=True, getForces=True, groups={1})
            results[transport].append((state.getPotentialEnergy().value_in_unit(u.kilojoule_per_mole),
                                       state.getForces(asNumpy=True).value_in_unit(u.kilojoule_per_mole / u.nanometer)))
    assert abs(results["torch"][0][0] - results["torch"][1][0]) > 1.0  # the two geometries differ
    for (e_torch, f_torch), (e_compiled, f_compiled) in zip(results["torch"], results["python"]):
        assert abs(e_torch - e_compiled) <= 1e-6 * abs(e_torch)
        scale = np.abs(f_torch).max()
        assert scale > 1.0
        assert np.abs(f_torch - f_compiled).max() <= 1e-6 * scale


@pytest.mark.parametrize("capacity", [None, 40])
def test_the_fixed_shape_graph_matches_the_eager_module_or_overflows_to_it(dimer_in_water, monkeypatch, capacity):
    """The energy-and-gradient graph ``compiled=True`` compiles (traced here and run op by op in place
    of the compiler) takes the fixed-shape paths: the bounding-sphere screen with exact distances for
    the ``capacity`` molecules nearest the dimer's sphere (fewer than the box holds), then those
    molecules. With the default capacity it must give the eager module's energy and gradient; with 40
    molecules, fewer than lie within the 0.9 nm cutoff, its energy is NaN and EagerComputation runs the
    eager module for that call instead."""
    from mlmm.bridge import transports
    from mlmm.bridge.ahead_of_time import energy_and_gradient, energy_and_gradient_graph
    from mlmm.bridge.mixed import plan_embedding
    from mlmm.training.models import eager_potential

    pdb, mm_system, dimer = dimer_in_water
    options = {} if capacity is None else {"capacity": capacity}
    plan = plan_embedding(pdb.topology, mm_system, dimer, eager_potential(DIMER_DIR / "model" / "model.pt"),
                          "mechanical-ml-charges", **options)
    assert plan.module.capacity < plan.module.anchor_indices.shape[0]  # the bounded screen, not the dense one
    x = torch.tensor(pdb.positions.value_in_unit(u.nanometer), dtype=torch.float64)
    box = torch.tensor(pdb.topology.getPeriodicBoxVectors().value_in_unit(u.nanometer), dtype=torch.float64)
    eager = energy_and_gradient(plan.module, x, box)
    module = transports.without_parameter_gradients(plan.module)
    graph = energy_and_gradient_graph(module, (x, box))
    monkeypatch.setattr(transports, "compile_energy_and_gradient", lambda module, arguments: graph)
    fixed_shape = graph(x, box)
    if capacity is None:
        assert float(fixed_shape[0]) == pytest.approx(float(eager[0]), abs=1e-8)
        torch.testing.assert_close(fixed_shape[1], eager[1], rtol=0, atol=1e-8)
    else:
        assert torch.isnan(fixed_shape[0])
    energy, gradient = transports.EagerComputation(plan.module, True, compiled=True).energy_and_gradient(x, box)
    assert float(energy) == pytest.approx(float(eager[0]), abs=1e-8) and np.isfinite(float(energy))
    torch.testing.assert_close(gradient, eager[1], rtol=0, atol=1e-8)


def test_compiled_needs_the_python_transport_an_eager_network_and_fixed_shapes(tmp_path, solvated, pme_system):
    network = random_physnet()
    without_recipe = mlmm.save_potential(network, tmp_path / "plain.pt")  # not written by `mlmm train`
    with pytest.raises(ValueError, match="transport='python'"):
        mlmm.create_mixed_system(solvated.topology, pme_system, SOLUTE, network, compiled=True)
    with pytest.raises(ValueError, match="TorchScript cannot be traced"):
        mlmm.create_mixed_system(solvated.topology, pme_system, SOLUTE, torch.jit.script(network), transport="python",
                                 compiled=True)
    with pytest.raises(ValueError, match="fixed shapes"):
        mlmm.create_mixed_system(solvated.topology, pme_system, SOLUTE, network, "buffer", transport="python",
                                 compiled=True)
    with pytest.raises(ValueError, match="has none; pass the eager module"):
        mlmm.create_mixed_system(solvated.topology, pme_system, SOLUTE, without_recipe, transport="python",
                                 compiled=True)
    scripted, metadata = load_potential(WATER_ELECTROSTATIC)  # without its vacuum network's recipe
    del metadata["extra"]["vacuum_model"]
    one_recipe = mlmm.save_potential(scripted, tmp_path / "one-recipe.pt", extra=metadata["extra"])
    with pytest.raises(ValueError, match="does not record how both its networks were built"):
        mlmm.create_mixed_system(solvated.topology, pme_system, SOLUTE, one_recipe, "electrostatic",
                                 transport="python", compiled=True)


def test_a_compiled_force_that_disagrees_with_the_traced_module_is_refused(monkeypatch):
    """compile_energy_and_gradient runs the traced graph once beside the compiled library and raises
    when they differ (here a stand-in for the compiler whose gradient is off by 1e-3 of its scale)."""
    from mlmm.bridge import ahead_of_time

    module = ahead_of_time_test_module()
    arguments = (torch.tensor([[0.0, 0.0, 0.0], [0.1, 0.02, 0.0], [0.0, 0.1, 0.03]], dtype=torch.float64),)
    traced = ahead_of_time.energy_and_gradient_graph(module, arguments)
    energy, gradient = traced(*arguments)
    assert float(gradient.abs().max()) > 1.0
    monkeypatch.setattr(torch._inductor, "aoti_compile_and_package", lambda program, package_path: package_path)
    monkeypatch.setattr(torch._inductor, "aoti_load_package", lambda package: traced)
    assert ahead_of_time.compile_energy_and_gradient(module, arguments) is traced  # agreeing: accepted

    def wrong(*inputs):
        energy, gradient = traced(*inputs)
        return energy, gradient + 1e-3 * gradient.abs().max()

    monkeypatch.setattr(torch._inductor, "aoti_load_package", lambda package: wrong)
    with pytest.raises(RuntimeError, match="compiled force disagrees with the traced module"):
        ahead_of_time.compile_energy_and_gradient(module, arguments)


def ahead_of_time_test_module() -> torch.nn.Module:
    """A small PhysNet on three atoms (H, O, H) taking positions only."""
    network = random_physnet()

    class Water(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.network = network
            self.register_buffer("species", torch.tensor([1, 8, 1]))

        def forward(self, positions):
            return self.network(self.species, positions)

    return Water()


def test_a_torch_force_is_built_without_the_simtk_notice_and_other_warnings_stay(tmp_path):
    """openmmtorch imports the deprecated simtk.openmm namespace, which logs a notice in every process that
    builds a TorchForce (Dask workers of an ensemble included); only that notice is dropped."""
    script = textwrap.dedent("""
        import logging
        import torch
        from mlmm.bridge.transports import make_force

        class Zero(torch.nn.Module):
            def forward(self, positions):
                return (positions * 0.0).sum()

        make_force(Zero(), periodic=False, transport="torch")
        logging.getLogger().warning("another notice")
    """)
    (tmp_path / "build_force.py").write_text(script)  # a file: TorchScript reads the module's source
    run = subprocess.run([sys.executable, str(tmp_path / "build_force.py")], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    assert "simtk" not in run.stderr and "another notice" in run.stderr
