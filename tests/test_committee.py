"""Committees: one batched model whose members match separate models; sigma is zero for identical
members and grows away from the training data."""

import pytest
import torch

import mlmm
from mlmm.potentials import HDNNP, select_member, stack_members
from conftest import SOLUTE, evaluate
from test_networks import POSITIONS, SPECIES, make_model


def test_stacked_committee_equals_its_members():
    members = [make_model("schnet", seed=s) for s in range(3)]
    committee = stack_members(members)
    energies = committee.evaluate(SPECIES, POSITIONS)["energy"]
    expected = torch.stack([m(SPECIES, POSITIONS) for m in members])
    torch.testing.assert_close(energies, expected, rtol=1e-12, atol=1e-10)
    assert torch.equal(select_member(committee, 1)(SPECIES, POSITIONS), expected[1])
    energy, sigma_e, sigma_f = torch.jit.script(committee).energy_and_uncertainty(SPECIES, POSITIONS)
    assert energy.item() == pytest.approx(expected.mean().item(), rel=1e-12)
    assert sigma_e.item() == pytest.approx(expected.std().item(), rel=1e-9)
    forces = []
    for member in members:
        x = POSITIONS.clone().requires_grad_(True)
        forces.append(-torch.autograd.grad(member(SPECIES, x), x)[0])
    expected_sigma_f = torch.stack(forces).var(0).sum(-1).sqrt()
    torch.testing.assert_close(sigma_f, expected_sigma_f, rtol=1e-9, atol=1e-9)


def test_identical_members_have_zero_sigma():
    """Zero up to rounding: the mean of three equal float64 numbers may differ from them by an ulp."""
    member = make_model("physnet")
    energy, sigma_e, sigma_f = stack_members([member, member, member]).energy_and_uncertainty(SPECIES, POSITIONS)
    assert sigma_e.item() <= 1e-14 * abs(energy.item())
    assert sigma_f.abs().max().item() <= 1e-12


def test_incompatible_members_are_refused():
    with pytest.raises(ValueError, match="differs in architecture"):
        stack_members([make_model("schnet"), make_model("hdnnp")])
    shifted = make_model("schnet")
    shifted.set_energy_scaling({"H": -1300.0})
    with pytest.raises(ValueError, match="energy_shift"):
        stack_members([make_model("schnet"), shifted])


def test_sigma_grows_away_from_training_data():
    """Fit a 4-member committee to a Morse H2 curve on r in [0.065, 0.095] nm; its spread is
    larger outside that range than inside."""
    torch.manual_seed(0)
    committee = HDNNP(["H"], n_radial=8, angular_etas=(4.0,), hidden=(16,), n_members=4).double()
    species = torch.tensor([1, 1])

    def dimer(r):
        return torch.stack([torch.zeros(3, dtype=torch.float64), torch.tensor([r, 0.0, 0.0], dtype=torch.float64)])

    def morse(r):
        return 458.0 * (1 - torch.exp(-19.0 * (r - 0.0741))) ** 2

    committee.set_energy_scaling({"H": 0.0}, scale=50.0)  # outputs of order 1 for a ~100 kJ/mol range
    train = torch.linspace(0.065, 0.095, 12, dtype=torch.float64)
    descriptors = torch.cat([committee.descriptors(species, dimer(r)) for r in train])
    committee.set_input_scaling(descriptors.mean(0), descriptors.std(0))
    optimizer = torch.optim.Adam(committee.parameters(), lr=1e-2)
    for _ in range(300):
        optimizer.zero_grad()
        loss = sum(((committee.evaluate(species, dimer(r))["energy"] - morse(r)) ** 2).mean() for r in train)
        loss.backward()
        optimizer.step()
    inside = [committee.energy_and_uncertainty(species, dimer(r))[1].item() for r in (0.07, 0.08, 0.09)]
    outside = [committee.energy_and_uncertainty(species, dimer(r))[1].item() for r in (0.14, 0.2)]
    errors = [abs(committee(species, dimer(r)) - morse(torch.tensor(r))).item() for r in (0.07, 0.08, 0.09)]
    assert max(errors) < 5.0  # the fit worked (kJ/mol, on a 460 kJ/mol well)
    assert min(outside) > 3 * max(inside)


@pytest.mark.parametrize("family", ["physnet", "painn", "schnet", "hdnnp"])
def test_network_as_create_mixed_system_potential(family, tmp_path, solvated, pme_system):
    """A saved two-member committee as the potential of a mechanical embedding (PME, Reference):
    the ML force group's energy equals the model evaluated directly on the solute."""
    model = make_model(family, n_members=2)
    path = mlmm.save_potential(model, tmp_path / f"{family}.pt")
    _, metadata = mlmm.load_potential(path)
    assert metadata["supported_elements"] == [1, 6, 7, 8] and metadata["cutoff_nm"] == 0.5
    assert metadata["architecture"]["family"] == family and metadata["architecture"]["n_members"] == 2
    mixed = mlmm.create_mixed_system(solvated.topology, pme_system, SOLUTE, str(path), force_group=5)
    energy, _ = evaluate(mixed, solvated.positions, groups={5})
    species = torch.tensor([a.element.atomic_number for a in list(solvated.topology.atoms())[:22]])
    x = torch.tensor([[v.x, v.y, v.z] for v in solvated.positions[:22]], dtype=torch.float64)
    assert energy == pytest.approx(model(species, x).item(), rel=1e-9)
    # TorchForce gets a copy without parameter gradients; the caller's model stays trainable.
    from_module = mlmm.create_mixed_system(solvated.topology, pme_system, SOLUTE, model, force_group=5)
    assert evaluate(from_module, solvated.positions, groups={5})[0] == pytest.approx(energy, rel=1e-12)
    assert all(p.requires_grad for p in model.parameters())


def test_the_uncertainty_reporter_writes_the_committee_spread_along_a_run(tmp_path):
    import csv

    import numpy as np
    import openmm
    import openmm.app as app
    import openmm.unit as unit

    from conftest import SYSTEM_DIR

    water = SYSTEM_DIR.parent / "water"
    committee, _ = mlmm.load_potential(water / "active-learning" / "iteration-1" / "model.pt")
    pdb = app.PDBFile(str(water / "water.pdb"))
    mm = app.ForceField("amber14/tip3p.xml").createSystem(pdb.topology, nonbondedMethod=app.NoCutoff,
                                                          constraints=None, rigidWater=False)
    system = mlmm.create_mixed_system(pdb.topology, mm, "all", committee)
    simulation = app.Simulation(pdb.topology, system, openmm.VerletIntegrator(0.0002),
                                openmm.Platform.getPlatformByName("Reference"))
    simulation.context.setPositions(pdb.positions)
    simulation.context.setVelocitiesToTemperature(300.0, 3)
    reporter = mlmm.UncertaintyReporter(tmp_path / "uncertainty.csv", 5, committee, [0, 1, 2])
    simulation.reporters.append(reporter)
    simulation.step(10)
    reporter.close()
    with open(tmp_path / "uncertainty.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["step"]) for row in rows] == [5, 10]
    state = simulation.context.getState(getPositions=True, getEnergy=True)
    x = torch.as_tensor(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer))
    energy, sigma_e, sigma_f = committee.energy_and_uncertainty(torch.tensor([8, 1, 1]), x)
    assert float(rows[-1]["energy_kJ_per_mol"]) == pytest.approx(float(energy), abs=1e-6)
    # the ML region is all of the system: the reported energy is the simulation's potential energy
    assert float(rows[-1]["energy_kJ_per_mol"]) == pytest.approx(
        state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole), abs=1e-4)
    assert float(rows[-1]["sigma_energy_kJ_per_mol"]) == pytest.approx(float(sigma_e), abs=1e-8) and float(sigma_e) > 0
    assert float(rows[-1]["max_sigma_force_kJ_per_mol_nm"]) == pytest.approx(float(sigma_f.max()), rel=1e-8)
    assert int(rows[-1]["atom_of_max_sigma_force"]) == int(np.argmax(sigma_f.numpy()))
    with pytest.raises(TypeError, match="energy_and_uncertainty"):
        mlmm.UncertaintyReporter(tmp_path / "x.csv", 5, torch.nn.Linear(3, 1), [0, 1, 2])
