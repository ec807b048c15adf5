"""Electrostatic embedding: the static + induced model, the environment of whole molecules, the OpenMM force."""

from pathlib import Path

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as u
import pytest
import torch

import mlmm
from mlmm.data.snapshots import mm_environment, switched_charges
from mlmm.potentials import ElectrostaticEmbedding, ElectrostaticPotential, PhysNet, load_potential
from mlmm.units import COULOMB_CONSTANT
from conftest import evaluate, finite_difference_forces

WATER = Path(__file__).resolve().parents[1] / "systems" / "water"
ML_GROUP = 5
SPECIES = torch.tensor([8, 1, 1])


def random_head(seed: int = 0, **options) -> ElectrostaticEmbedding:
    """An untrained embedding network with non-zero outputs (its output layer starts at zero)."""
    torch.manual_seed(seed)
    head = ElectrostaticEmbedding(["H", "O"], **options).double()
    with torch.no_grad():
        for parameter in head.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return head


@pytest.fixture(scope="module")
def water_potential():
    vacuum, _ = load_potential(WATER / "model" / "model.pt")
    return ElectrostaticPotential(vacuum, random_head())


@pytest.fixture(scope="module")
def water_box():
    pdb = app.PDBFile(str(WATER / "water-tip3p.pdb"))
    system = app.ForceField("amber14/tip3p.xml").createSystem(
        pdb.topology, nonbondedMethod=app.PME, nonbondedCutoff=0.9 * u.nanometer, constraints=None,
        rigidWater=False)
    return pdb, system


def _ml_force_to_group(system):
    force = next(f for f in system.getForces() if f.getName() == "mlmm electrostatic")
    force.setForceGroup(ML_GROUP)
    return system


def test_isolated_polarizable_atom_has_the_analytic_induced_dipole_and_energy():
    """One atom of polarizability alpha in the field of a distant charge: mu = alpha F, E_ind = -k_e alpha F^2/2."""
    head = random_head().double()
    with torch.no_grad():
        head.log_width.fill_(np.log(1e-4))  # practically bare Coulomb at 2 nm
    x = torch.zeros(1, 3, dtype=torch.float64)
    mm_x = torch.tensor([[2.0, 0.0, 0.0]], dtype=torch.float64)
    with torch.no_grad():
        out = head.evaluate_in_field(torch.tensor([8]), x, mm_x, torch.tensor([0.7], dtype=torch.float64), 0.0)
    alpha = float(out["polarizabilities"][0, 0])
    field = -0.7 / 2.0 ** 2  # e/nm^2 along +x at the origin from +0.7 e at x = 2 nm
    assert float(out["induced_dipoles"][0, 0, 0]) == pytest.approx(alpha * field, rel=1e-6)
    assert float(out["charges"][0, 0]) == pytest.approx(0.0, abs=1e-12)  # one atom carries the total charge
    assert float(out["energy"][0]) == pytest.approx(-0.5 * COULOMB_CONSTANT * alpha * field ** 2, rel=1e-6)


def test_energy_is_linear_plus_quadratic_in_the_mm_charges_and_forces_are_gradients(water_potential):
    x = torch.tensor([[0.0, 0.0, 0.0], [0.0957, 0.0, 0.0], [-0.024, 0.0927, 0.0]], dtype=torch.float64)
    generator = torch.Generator().manual_seed(1)
    mm_x = 0.8 + 0.5 * torch.randn(30, 3, generator=generator, dtype=torch.float64)
    mm_q = 0.4 * torch.randn(30, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        energies = [float(water_potential.embedding_outputs(SPECIES, x, mm_x, scale * mm_q, 0.0)["energy"])
                    for scale in (0.0, 1.0, 2.0, 3.0)]
    assert energies[0] == 0.0
    assert energies[3] - 3 * energies[2] + 3 * energies[1] - energies[0] == pytest.approx(0.0, abs=1e-9)
    x.requires_grad_(True)
    mm_x.requires_grad_(True)
    energy, charges = water_potential.energy_in_field(SPECIES, x, mm_x, mm_q, 0.0)
    assert float(charges.sum().detach()) == pytest.approx(0.0, abs=1e-12)
    gradients = torch.autograd.grad(energy, [x, mm_x])
    h = 1e-5
    for tensor, gradient in zip((x, mm_x), gradients):
        for index in [(0, 0), (1, 1), (2, 2)]:
            shifted = []
            for sign in (1, -1):
                moved = [x.detach().clone(), mm_x.detach().clone()]
                moved[0 if tensor is x else 1][index] += sign * h
                with torch.no_grad():
                    shifted.append(float(water_potential.energy_in_field(SPECIES, moved[0], moved[1], mm_q, 0.0)[0]))
            assert float(gradient[index]) == pytest.approx((shifted[0] - shifted[1]) / (2 * h), rel=1e-5, abs=1e-5)


def test_openmm_energy_equals_the_model_in_the_independently_selected_environment(water_box, water_potential):
    """The force's environment (top-k, torch minimum image, weights) against numpy's exact snapshot path."""
    pdb, mm_system = water_box
    system = _ml_force_to_group(mlmm.create_mixed_system(pdb.topology, mm_system, "resid 0", water_potential,
                                                         embedding="electrostatic"))
    positions = np.array(pdb.positions.value_in_unit(u.nanometer))
    positions[5:] += [1.3, -0.7, 2.2]  # unwrapped solvent: the force must image it
    energy, forces = evaluate(system, positions, groups={ML_GROUP})
    box = np.array(pdb.topology.getPeriodicBoxVectors().value_in_unit(u.nanometer))
    residues = [[a.index for a in r.atoms()] for r in list(pdb.topology.residues())[1:]]
    ml_x, atoms, mm_x = mm_environment(positions, box, [0, 1, 2], residues, 1.2, [(0, 1), (0, 2)])
    nonbonded = next(f for f in mm_system.getForces() if isinstance(f, openmm.NonbondedForce))
    charges = np.array([nonbonded.getParticleParameters(int(i))[0].value_in_unit(u.elementary_charge)
                        for i in atoms])
    anchor = np.repeat(np.arange(0, len(atoms), 3), 3)  # TIP3P: O first in each water
    weighted = switched_charges(ml_x, mm_x, charges, anchor, 0.9, 1.1)
    reference, _ = water_potential.energy_in_field(SPECIES, torch.tensor(ml_x), torch.tensor(mm_x),
                                                   torch.tensor(weighted), 0.0)
    assert 100 < np.count_nonzero(weighted) / 3 < 400
    assert energy == pytest.approx(float(reference.detach()), abs=1e-8)
    # forces on ML atoms and on MM atoms inside, in the switching shell and outside the cutoff
    shell = int(atoms[np.flatnonzero((weighted != 0) & (np.abs(weighted) < 0.5 * np.abs(charges)))[0]])
    outside = int(np.setdiff1d(np.arange(3, len(positions)), atoms)[0])
    inside = int(atoms[np.flatnonzero(weighted == charges)[0]])
    assert np.all(forces[outside] == 0.0)
    atoms = [0, 2, inside, shell]
    np.testing.assert_allclose(forces[atoms], finite_difference_forces(system, positions, atoms, ML_GROUP),
                               rtol=1e-4, atol=2e-3)


def _pair_system(charges_b):
    """Water A (ML) and a three-site molecule B without periodicity."""
    topology = app.Topology()
    chain = topology.addChain()
    system = openmm.System()
    nonbonded = openmm.NonbondedForce()
    for name, charges in (("HOH", (-0.834, 0.417, 0.417)), ("MOL", charges_b)):
        residue = topology.addResidue(name, chain)
        for element, q in zip(("O", "H", "H"), charges):
            topology.addAtom(element, app.Element.getBySymbol(element), residue)
            system.addParticle(app.Element.getBySymbol(element).mass)
            nonbonded.addParticle(q, 0.3, 0.1)
    atoms = list(topology.atoms())
    for a, b in ((0, 1), (0, 2), (3, 4), (3, 5)):
        topology.addBond(atoms[a], atoms[b])
    system.addForce(nonbonded)
    return topology, system


def test_a_molecule_crossing_the_cutoff_enters_smoothly_and_whole(water_potential):
    """Move molecule B (net charge -1) out through the switching shell in 0.0005 nm steps."""
    topology, mm_system = _pair_system((-1.2, 0.1, 0.1))
    system = _ml_force_to_group(mlmm.create_mixed_system(topology, mm_system, [0, 1, 2], water_potential,
                                                         embedding="electrostatic"))
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    water = np.array([[0.0, 0.0, 0.0], [0.0957, 0.0, 0.0], [-0.024, 0.0927, 0.0]])
    molecule = water[[0, 1, 2]] * [1, -1, 1] + [0.0, 0.0, 0.2]  # H atoms 0.1 nm from its O, pointing back
    path = np.arange(0.95, 1.25, 0.0005)  # anchor distance to the nearest ML atom 0.854 -> 1.154 nm
    energies, slopes = [], []
    for distance in path:
        positions = np.vstack([water, molecule + [distance, 0.0, -0.2]])
        context.setPositions(positions)
        state = context.getState(getEnergy=True, getForces=True, groups={ML_GROUP})
        energies.append(state.getPotentialEnergy().value_in_unit(u.kilojoule_per_mole))
        forces = state.getForces(asNumpy=True).value_in_unit(u.kilojoule_per_mole / u.nanometer)
        slopes.append(-forces[3:, 0].sum())  # dE/d(distance): the molecule moves rigidly along x
        assert np.allclose(forces[3:6].sum(0) + forces[:3].sum(0), 0.0, atol=1e-8)  # momentum conserved
    energies = np.array(energies)
    vacuum = float(water_potential(SPECIES, torch.tensor(water)).detach())
    assert abs(energies[0] - vacuum) > 1.0  # B polarizes A inside the switch ...
    assert energies[-1] == pytest.approx(vacuum, abs=1e-9)  # ... and is gone beyond the cutoff
    assert np.abs(np.diff(energies)).max() < 0.05
    finite_difference = np.gradient(energies, path)
    assert np.allclose(np.array(slopes)[1:-1], finite_difference[1:-1], atol=0.02 * np.abs(slopes).max())


def test_charged_molecules_enter_whole(water_potential):
    """A charged molecule with its anchor inside and an atom far outside the cutoff keeps its net charge."""
    topology, mm_system = _pair_system((-1.2, 0.1, 0.1))
    plan = mlmm.bridge.mixed.plan_embedding(topology, mm_system, [0, 1, 2], water_potential, "electrostatic")
    positions = torch.tensor([[0.0, 0.0, 0.0], [0.0957, 0.0, 0.0], [-0.024, 0.0927, 0.0],
                              [1.0, 0.0, 0.0], [1.4, 0.0, 0.0], [1.0, 0.1, 0.0]], dtype=torch.float64)
    x_ml = plan.module.ml_positions(positions, None)
    mm_positions, mm_charges, inside = plan.module.environment(x_ml, positions, None)
    weight = float(mm_charges[0] / -1.2)
    assert 0.0 < weight < 1.0 and int(inside) == 1
    assert float(mm_charges.sum()) == pytest.approx(-1.0 * weight, abs=1e-12)
    assert torch.allclose(mm_positions, positions[3:])


def test_the_ml_region_split_by_the_box_gives_the_same_energy(water_box, water_potential):
    pdb, mm_system = water_box
    system = _ml_force_to_group(mlmm.create_mixed_system(pdb.topology, mm_system, "resid 0", water_potential,
                                                         embedding="electrostatic"))
    positions = np.array(pdb.positions.value_in_unit(u.nanometer))
    box = np.array(pdb.topology.getPeriodicBoxVectors().value_in_unit(u.nanometer))
    reference, _ = evaluate(system, positions, groups={ML_GROUP})
    split = positions.copy()
    split[1] += box[0]  # one hydrogen a box length away: the region is not whole
    split[2] -= box[1]
    assert evaluate(system, split, groups={ML_GROUP})[0] == pytest.approx(reference, abs=1e-8)


def test_scheme_mismatches_and_small_boxes_are_clear_errors(water_box, water_potential):
    pdb, mm_system = water_box
    with pytest.raises(ValueError, match="trained for embedding='electrostatic'"):
        mlmm.create_mixed_system(pdb.topology, mm_system, "resid 0", water_potential, embedding="mechanical")
    with pytest.raises(ValueError, match="needs a model trained for it"):
        mlmm.create_mixed_system(pdb.topology, mm_system, "resid 0", PhysNet(["H", "O"]), embedding="electrostatic")
    wide = ElectrostaticPotential(water_potential.vacuum, random_head(environment_cutoff=1.6,
                                                                      environment_switch_distance=1.4))
    with pytest.raises(ValueError, match="larger than half the smallest box width"):
        mlmm.create_mixed_system(pdb.topology, mm_system, "resid 0", wide, embedding="electrostatic")
    with pytest.raises(ValueError, match="capacity"):
        mlmm.create_mixed_system(pdb.topology, mm_system, "resid 0", water_potential, embedding="electrostatic",
                                 capacity=0)


def test_a_saved_electrostatic_model_keeps_its_scheme_and_environment(tmp_path, water_potential):
    path = mlmm.potentials.save_potential(water_potential, tmp_path / "es.pt")
    loaded, metadata = load_potential(path)
    assert metadata["embedding_scheme"] == "electrostatic"
    assert metadata["environment"] == {"cutoff_nm": 1.1, "switch_distance_nm": 0.9}
    x = torch.tensor([[0.0, 0.0, 0.0], [0.0957, 0.0, 0.0], [-0.024, 0.0927, 0.0]], dtype=torch.float64)
    mm_x, mm_q = torch.tensor([[0.5, 0.1, 0.0]], dtype=torch.float64), torch.tensor([0.3], dtype=torch.float64)
    with torch.no_grad():
        assert float(loaded.energy_in_field(SPECIES, x, mm_x, mm_q, 0.0)[0]) == pytest.approx(
            float(water_potential.energy_in_field(SPECIES, x, mm_x, mm_q, 0.0)[0]), abs=1e-10)


def reported_simulation(water_box, water_potential):
    """The embedding plan and a Verlet simulation (0.2 fs, Reference) of the ML water in its box."""
    pdb, mm_system = water_box
    plan = mlmm.plan_embedding(pdb.topology, mm_system, "resid 0", water_potential, "electrostatic")
    system = mlmm.create_mixed_system(pdb.topology, mm_system, "resid 0", water_potential, embedding="electrostatic")
    simulation = app.Simulation(pdb.topology, system, openmm.VerletIntegrator(0.0002),
                                openmm.Platform.getPlatformByName("Reference"))
    simulation.context.setPositions(pdb.positions)
    return plan, simulation


def test_the_reporter_writes_molecules_charges_and_dipole_each_interval(tmp_path, water_box, water_potential):
    plan, simulation = reported_simulation(water_box, water_potential)
    reporter = mlmm.EmbeddingReporter(tmp_path / "embedding.csv", 2, plan.module)
    simulation.reporters.append(reporter)
    simulation.step(4)
    reporter.close()
    rows = (tmp_path / "embedding.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert header[:3] == ["step", "time_ps", "molecules"] and header[-3:] == ["q0_e", "q1_e", "q2_e"]
    assert [row.split(",")[0] for row in rows[1:]] == ["2", "4"]
    values = dict(zip(header, map(float, rows[-1].split(","))))
    assert 100 < values["molecules"] < 400
    assert values["q0_e"] + values["q1_e"] + values["q2_e"] == pytest.approx(0.0, abs=1e-9)
    state = simulation.context.getState(getPositions=True)
    x = torch.as_tensor(state.getPositions(asNumpy=True).value_in_unit(u.nanometer))
    box = torch.as_tensor(state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(u.nanometer))
    with torch.no_grad():
        expected = plan.module.report(x, box)
    assert values["energy_kJ_per_mol"] == pytest.approx(float(expected["energy"]), abs=1e-8)
    assert values["static_energy_kJ_per_mol"] + values["induced_energy_kJ_per_mol"] == pytest.approx(
        values["energy_kJ_per_mol"], abs=1e-8)


def test_the_reported_dipole_derivative_is_the_directional_derivative_along_the_velocities(
        tmp_path, water_box, water_potential):
    plan, simulation = reported_simulation(water_box, water_potential)
    simulation.context.setVelocitiesToTemperature(300.0, 5)
    reporter = mlmm.EmbeddingReporter(tmp_path / "embedding.csv", 3, plan.module, dipole_derivative=True)
    simulation.reporters.append(reporter)
    simulation.step(3)
    reporter.close()
    header, row = (tmp_path / "embedding.csv").read_text().splitlines()
    values = dict(zip(header.split(","), map(float, row.split(","))))
    reported = np.array([values[f"dipole_derivative_{x}_e_nm_per_ps"] for x in "xyz"])
    state = simulation.context.getState(getPositions=True, getVelocities=True)
    x = state.getPositions(asNumpy=True).value_in_unit(u.nanometer)
    v = state.getVelocities(asNumpy=True).value_in_unit(u.nanometer / u.picosecond)
    box = torch.as_tensor(state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(u.nanometer))
    h = 1e-5  # ps: central difference of M(r + h v), every atom moving (MM charges polarize the ML water)
    with torch.no_grad():
        ahead, behind = (plan.module.report(torch.as_tensor(x + s * h * v), box)["dipole"].numpy() for s in (1, -1))
    expected = (ahead - behind) / (2 * h)
    assert np.abs(expected).max() > 1e-3  # the dipole moves, so the comparison can fail
    np.testing.assert_allclose(reported, expected, rtol=1e-5, atol=1e-8)


def test_both_transports_and_lambda_interpolation_agree(water_box, water_potential):
    pdb, mm_system = water_box
    results = [evaluate(mlmm.create_mixed_system(pdb.topology, mm_system, "resid 0", water_potential,
                                                 embedding="electrostatic", transport=transport), pdb.positions)
               for transport in ("torch", "python")]
    assert results[1][0] == pytest.approx(results[0][0], abs=1e-8)
    assert np.allclose(results[1][1], results[0][1], atol=1e-8)
    interpolated = mlmm.create_mixed_system(pdb.topology, mm_system, "resid 0", water_potential,
                                            embedding="electrostatic", interpolate=True)
    assert evaluate(interpolated, pdb.positions)[0] == pytest.approx(results[0][0], abs=1e-6)
    assert evaluate(interpolated, pdb.positions, parameters={"lambda_interpolate": 0.0})[0] == pytest.approx(
        evaluate(mm_system, pdb.positions)[0], abs=1e-6)


def test_scheme_errors_against_an_analytic_coulomb_reference():
    """E_int errors of embedding schemes (mlmm.training.embedding_errors): a reference whose interaction is
    exactly the bare Coulomb energy of fixed charges (energies and forces in numpy) gives that scheme zero
    error; charges 10 % too large give a signed mean error of 10 % of the mean interaction."""
    from mlmm.data.dataset import Dataset
    from mlmm.training.embedding_errors import coulomb_interaction, fixed_charges, scheme_errors

    rng = np.random.default_rng(4)
    water = np.array([[0.0, 0.0, 0.0], [0.0957, 0.0, 0.0], [-0.024, 0.0927, 0.0]])
    positions = water + 0.005 * rng.standard_normal((5, 3, 3))
    mm_positions = rng.uniform(0.3, 0.7, (5, 6, 3)) * rng.choice([-1, 1], (5, 6, 3))
    mm_charges = rng.normal(0.0, 0.4, (5, 6))
    charges = np.array([-0.8, 0.4, 0.4])
    delta = positions[:, :, None] - mm_positions[:, None]  # [F, n, m, 3]
    r = np.linalg.norm(delta, axis=-1)
    pair = COULOMB_CONSTANT * charges[None, :, None] * mm_charges[:, None, :]
    interaction = (pair / r).sum((1, 2))
    forces = (pair[..., None] * delta / r[..., None] ** 3).sum(2)
    vacuum_energies, vacuum_forces = rng.normal(0, 5, 5), rng.normal(0, 50, (5, 3, 3))
    vacuum = Dataset(species=np.array([8, 1, 1]), positions=positions, energies=vacuum_energies,
                     forces=vacuum_forces)
    embedded = Dataset(species=np.array([8, 1, 1]), positions=positions, energies=vacuum_energies + interaction,
                       forces=vacuum_forces + forces, mm_positions=mm_positions, mm_charges=mm_charges)
    result = scheme_errors({"exact": coulomb_interaction(fixed_charges(charges)),
                            "scaled": coulomb_interaction(fixed_charges(1.1 * charges))}, embedded, vacuum)
    assert result["reference"]["n_frames"] == 5
    assert result["reference"]["interaction_mean"] == pytest.approx(interaction.mean(), rel=1e-12)
    assert max(result["exact"].values()) < 1e-9 and min(result["exact"].values()) > -1e-9
    assert result["scaled"]["energy_mean_error"] == pytest.approx(0.1 * interaction.mean(), rel=1e-9)
    assert result["scaled"]["energy_mae"] == pytest.approx(0.1 * np.abs(interaction).mean(), rel=1e-9)
    assert result["scaled"]["forces_mae"] == pytest.approx(0.1 * np.abs(forces).mean(), rel=1e-9)
    selected = scheme_errors({"scaled": coulomb_interaction(fixed_charges(1.1 * charges))}, embedded, vacuum, [1, 3])
    assert selected["scaled"]["energy_mean_error"] == pytest.approx(0.1 * interaction[[1, 3]].mean(), rel=1e-9)


def test_the_water_models_errors_on_the_held_out_run_are_those_of_its_card(tmp_path, capsys):
    """assess_system_schemes(held_out=True), as systems/water/embedding/evaluate.py --held-out calls it, scores
    every frame of data/water-held-out-gfn2.h5 (an MM MD run no training run has seen) and reproduces
    model/schemes-held-out.json, the numbers of the model card; the system's layout is rebuilt with a copy
    of the model folder, as the function writes its result next to the model."""
    import json
    import shutil

    from mlmm.training.embedding_errors import assess_system_schemes

    folder = tmp_path / "embedding" / "model"
    folder.mkdir(parents=True)
    for name in ("model.pt", "split.json"):
        shutil.copy(WATER / "embedding" / "model" / name, folder / name)
    (tmp_path / "embedding" / "data").symlink_to(WATER / "embedding" / "data")
    (tmp_path / "model").symlink_to(WATER / "model")
    result = assess_system_schemes(tmp_path / "embedding", "water", [-0.834, 0.417, 0.417], held_out=True)
    assert capsys.readouterr().out.startswith("300 held-out frames, reference E_int")
    shipped = json.loads((WATER / "embedding" / "model" / "schemes-held-out.json").read_text())
    assert result["reference"]["n_frames"] == 300
    assert json.loads((folder / "schemes-held-out.json").read_text()) == result
    for scheme in ("mechanical", "mechanical-ml-charges", "electrostatic"):
        for key, value in shipped[scheme].items():
            assert result[scheme][key] == pytest.approx(value, rel=1e-6), (scheme, key)
    assert result["electrostatic"]["energy_mae"] < result["mechanical"]["energy_mae"] / 3
