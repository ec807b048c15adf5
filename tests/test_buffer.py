"""Buffer (BuRNN-style) embedding: energy terms against a direct evaluation, smooth entry into the buffer, forces."""

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as u
import pytest
import torch

import mlmm
from mlmm.bridge.ahead_of_time import energy_and_gradient
from mlmm.potentials.neighbors import fixed_shape_tracing
from mlmm.potentials import PaiNN, PhysNet, VacuumAnchoredBuffer, load_potential
from mlmm.units import COULOMB_CONSTANT
from conftest import WATER_MODELS, evaluate, finite_difference_forces

ML_GROUP = 5
WATER = np.array([[0.0, 0.0, 0.0], [0.0957, 0.0, 0.0], [-0.024, 0.0927, 0.0]])
TIP3P = {"O": (-0.834, 0.315061, 0.636386), "H": (0.417, 1.0, 0.0)}  # charge e, sigma nm, epsilon kJ/mol


@pytest.fixture(scope="module", params=[PhysNet, PaiNN], ids=["PhysNet", "PaiNN"])
def network(request):
    """An untrained water network with non-zero outputs (its output layers start at zero)."""
    torch.manual_seed(3)
    model = request.param(["H", "O"], n_features=16, n_basis=8, n_modules=1).double()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return model


def waters(n: int) -> tuple[app.Topology, openmm.System]:
    """n TIP3P waters without periodicity (NoCutoff), flexible."""
    topology = app.Topology()
    chain = topology.addChain()
    system = openmm.System()
    nonbonded = openmm.NonbondedForce()
    for _ in range(n):
        residue = topology.addResidue("HOH", chain)
        atoms = []
        for name in ("O", "H", "H"):
            element = app.Element.getBySymbol(name)
            atoms.append(topology.addAtom(name, element, residue))
            system.addParticle(element.mass)
            nonbonded.addParticle(*TIP3P[name])
        topology.addBond(atoms[0], atoms[1])
        topology.addBond(atoms[0], atoms[2])
        first = 3 * residue.index
        for i, j in ((0, 1), (0, 2), (1, 2)):
            nonbonded.addException(first + i, first + j, 0.0, 1.0, 0.0)
    system.addForce(nonbonded)
    return topology, system


def _with_ml_group(system):
    force = next(f for f in system.getForces() if f.getName() == "mlmm buffer")
    force.setForceGroup(ML_GROUP)
    return system


def _lennard_jones(x_ml, x_mm):
    sigma = np.array([TIP3P[n][1] for n in "OHH"])
    epsilon = np.array([TIP3P[n][2] for n in "OHH"])
    r = np.linalg.norm(x_ml[:, None] - x_mm[None], axis=-1)
    s = 0.5 * (sigma[:, None] + sigma[None])
    e = np.sqrt(epsilon[:, None] * epsilon[None])
    return float((4 * e * ((s / r) ** 12 - (s / r) ** 6)).sum())


def test_energy_terms_match_a_direct_evaluation(network):
    """ML water + one water inside the buffer, one in its switching shell, one beyond it (Coulomb only)."""
    topology, mm_system = waters(4)
    system = _with_ml_group(mlmm.create_mixed_system(topology, mm_system, [0, 1, 2], network, embedding="buffer",
                                                     buffer_cutoff=0.5, buffer_switch_distance=0.35, cutoff=1.0,
                                                     switch_distance=0.9))
    shifts = [0.28, 0.43, 0.7]  # oxygen-oxygen distances along z: w = 1, 0 < w < 1, w = 0
    tilt = np.array([[0.0, 0.0, 0.0], [0.0, 0.0957, 0.0], [0.0927, 0.0, 0.024]])
    positions = np.vstack([WATER] + [tilt + [0.0, 0.0, z] for z in shifts])
    energy, _ = evaluate(system, positions, groups={ML_GROUP})

    # w = 1 - prod_i (1 - S(d_i)) over the distances from the ML atoms to each water's oxygen
    distances = np.linalg.norm(positions[:3, None] - positions[None, 3::3], axis=-1)  # [3 ML atoms, 3 waters]
    x = np.clip((distances - 0.35) / 0.15, 0, 1)
    weights = 1 - np.prod(x ** 3 * (10 - 15 * x + 6 * x ** 2), axis=0)
    assert weights[0] == 1.0 and 0 < weights[1] < 1 and weights[2] == 0.0
    species = torch.tensor([8, 1, 1] * 4)
    atom_weights = torch.tensor([1.0, 1.0, 1.0] + [w for w in weights for _ in range(3)], dtype=torch.float64)
    x_all = torch.tensor(positions)
    e_all, charges = network.weighted_energy_and_charges(species, x_all, atom_weights, 0.0)
    e_buffer, _ = network.weighted_energy_and_charges(species[3:], x_all[3:], atom_weights[3:], 0.0)
    q = charges[:3].detach().numpy()
    q = q - q.sum() / 3
    mm_q = np.array([TIP3P[n][0] for n in "OHH"])
    molecules = [positions[3 * k + 3:3 * k + 6] for k in range(3)]
    coulomb = sum((1 - w) * COULOMB_CONSTANT * (q[:, None] * mm_q[None]
                                                / np.linalg.norm(positions[:3, None] - x[None], axis=-1)).sum()
                  for x, w in zip(molecules, weights))
    lennard_jones = sum(w * _lennard_jones(positions[:3], x) for x, w in zip(molecules, weights))
    expected = float((e_all - e_buffer).detach()) - lennard_jones + coulomb
    assert energy == pytest.approx(expected, abs=1e-8)


def test_the_charge_difference_coupling_matches_a_direct_evaluation(network):
    """outer_coupling="charge-difference": the charge changes w q(I u B) - w q(B) of every cluster atom
    (I's own charges unshifted) interact with the molecules beyond the buffer, weighted 1 - w_m, never
    with their own molecule; they sum to the ML region's total charge."""
    topology, mm_system = waters(4)
    system = _with_ml_group(mlmm.create_mixed_system(topology, mm_system, [0, 1, 2], network, embedding="buffer",
                                                     buffer_cutoff=0.5, buffer_switch_distance=0.35, cutoff=1.0,
                                                     switch_distance=0.9, outer_coupling="charge-difference"))
    tilt = np.array([[0.0, 0.0, 0.0], [0.0, 0.0957, 0.0], [0.0927, 0.0, 0.024]])
    positions = np.vstack([WATER] + [tilt + [0.0, 0.0, z] for z in (0.28, 0.43, 0.7)])
    energy, _ = evaluate(system, positions, groups={ML_GROUP})

    distances = np.linalg.norm(positions[:3, None] - positions[None, 3::3], axis=-1)
    x = np.clip((distances - 0.35) / 0.15, 0, 1)
    weights = 1 - np.prod(x ** 3 * (10 - 15 * x + 6 * x ** 2), axis=0)
    buffer = [0, 1]  # the waters with w > 0, in the network's order
    species = torch.tensor([8, 1, 1] * 3)
    atom_weights = torch.tensor([1.0] * 3 + [weights[m] for m in buffer for _ in range(3)], dtype=torch.float64)
    x_all = torch.tensor(positions[:9])
    e_all, charges = network.weighted_energy_and_charges(species, x_all, atom_weights, 0.0)
    e_buffer, buffer_charges = network.weighted_energy_and_charges(species[3:], x_all[3:], atom_weights[3:], 0.0)
    changes = torch.cat([charges[:3], charges[3:] - buffer_charges]).detach().numpy()
    assert changes.sum() == pytest.approx(0.0, abs=1e-10) and abs(changes[3:]).max() > 1e-4
    owner = [-1] * 3 + [m for m in buffer for _ in range(3)]
    mm_q = np.array([TIP3P[n][0] for n in "OHH"])
    coulomb = 0.0
    for a in range(9):
        for m in range(3):
            if m != owner[a]:
                r = np.linalg.norm(positions[3 * m + 3:3 * m + 6] - positions[a], axis=-1)
                coulomb += (1 - weights[m]) * COULOMB_CONSTANT * changes[a] * (mm_q / r).sum()
    molecules = [positions[3 * k + 3:3 * k + 6] for k in range(3)]
    lennard_jones = sum(w * _lennard_jones(positions[:3], x) for x, w in zip(molecules, weights))
    expected = float((e_all - e_buffer).detach()) - lennard_jones + coulomb
    assert energy == pytest.approx(expected, abs=1e-8)


@pytest.mark.parametrize("coupling", ["ml-charges", "charge-difference"])
def test_a_water_entering_the_buffer_changes_the_energy_smoothly(network, coupling):
    """Total energy (MM + ML) and forces as one water moves through the buffer's switching shell.

    A jump is a change of energy between neighbouring points that the force does not account
    for: the change less the work along the step (trapezoid rule, whose error, h^3/12 times the
    third derivative, is below 1e-3 kJ/mol here). The bare change would fail a smooth but steep
    energy: the random PaiNN's varies by 23 kJ/mol across the shell, up to 0.41 per step.
    """
    topology, mm_system = waters(2)
    system = mlmm.create_mixed_system(topology, mm_system, [0, 1, 2], network, embedding="buffer",
                                      buffer_cutoff=0.5, buffer_switch_distance=0.35, cutoff=1.0, switch_distance=0.9,
                                      outer_coupling=coupling)
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    mover = WATER + [0.0, 0.0, 0.0]
    path = np.arange(0.30, 0.60, 0.0005)  # oxygen at (0, 0, z): nearest ML atom is the ML oxygen
    energies, slopes = [], []
    for z in path:
        context.setPositions(np.vstack([WATER, mover + [0.0, 0.0, z]]))
        state = context.getState(getEnergy=True, getForces=True)
        energies.append(state.getPotentialEnergy().value_in_unit(u.kilojoule_per_mole))
        forces = state.getForces(asNumpy=True).value_in_unit(u.kilojoule_per_mole / u.nanometer)
        slopes.append(-forces[3:, 2].sum())
    energies, slopes = np.array(energies), np.array(slopes)
    work = 0.5 * (slopes[1:] + slopes[:-1]) * np.diff(path)
    assert np.abs(np.diff(energies) - work).max() < 0.05
    finite_difference = np.gradient(energies, path)
    assert np.allclose(slopes[1:-1], finite_difference[1:-1], atol=0.02 * np.abs(slopes).max())


@pytest.mark.parametrize("coupling", ["ml-charges", "charge-difference"])
def test_forces_on_all_atoms_are_gradients_in_a_periodic_box(network, coupling):
    pdb = app.PDBFile("systems/water/water-tip3p.pdb")
    mm_system = app.ForceField("amber14/tip3p.xml").createSystem(
        pdb.topology, nonbondedMethod=app.PME, nonbondedCutoff=0.9 * u.nanometer, constraints=None, rigidWater=False)
    system = _with_ml_group(mlmm.create_mixed_system(pdb.topology, mm_system, "resid 0", network,
                                                     embedding="buffer", outer_coupling=coupling))
    positions = np.array(pdb.positions.value_in_unit(u.nanometer))
    energy, forces = evaluate(system, positions, groups={ML_GROUP})
    with torch.no_grad():
        plan = mlmm.plan_embedding(pdb.topology, mm_system, "resid 0", network, "buffer")
        box = torch.tensor(pdb.topology.getPeriodicBoxVectors().value_in_unit(u.nanometer))
        report = plan.module.report(torch.tensor(positions), box)
    assert 5 <= int(report["molecules"]) <= 30
    distances = np.linalg.norm(positions[3::3] - positions[0], axis=1)
    in_buffer = 3 + 3 * int(np.argmin(np.where(distances > 0.36, distances, np.inf)))  # in the switching shell
    atoms = [0, 1, in_buffer, in_buffer + 1]
    np.testing.assert_allclose(forces[atoms], finite_difference_forces(system, positions, atoms, ML_GROUP),
                               rtol=1e-4, atol=2e-3)


@pytest.mark.parametrize("coupling", ["ml-charges", "charge-difference"])
def test_the_fixed_shape_buffer_equals_the_exact_one_and_an_overflow_is_nan(network, coupling):
    """Where shapes are fixed (GPUs, CUDA graphs) the network sees the buffer_capacity nearest molecules,
    those beyond the buffer cutoff with weight 0, and must give the energy and gradient of the exact
    buffer the CPU path selects; fewer places than molecules inside poison the energy with NaN."""
    pdb = app.PDBFile("systems/water/water-tip3p.pdb")
    mm_system = app.ForceField("amber14/tip3p.xml").createSystem(
        pdb.topology, nonbondedMethod=app.PME, nonbondedCutoff=0.9 * u.nanometer, constraints=None, rigidWater=False)
    positions = torch.tensor(pdb.positions.value_in_unit(u.nanometer), dtype=torch.float64)
    box = torch.tensor(pdb.topology.getPeriodicBoxVectors().value_in_unit(u.nanometer), dtype=torch.float64)
    module = mlmm.plan_embedding(pdb.topology, mm_system, "resid 0", network, "buffer",
                                 outer_coupling=coupling).module
    inside = int(module.report(positions, box)["molecules"])
    assert 5 <= inside < module.buffer_capacity  # the fixed shape holds weight-0 molecules too
    exact = energy_and_gradient(module, positions, box)
    with fixed_shape_tracing():
        fixed = energy_and_gradient(module, positions, box)
        tight = mlmm.plan_embedding(pdb.topology, mm_system, "resid 0", network, "buffer",
                                    buffer_capacity=inside - 1, outer_coupling=coupling).module
        overflowing = float(tight(positions, box))
    assert abs(float(fixed[0]) - float(exact[0])) <= 1e-9 * abs(float(exact[0]))
    assert float((fixed[1] - exact[1]).abs().max()) <= 1e-9 * float(exact[1].abs().max())
    assert np.isnan(overflowing)


def test_buffer_input_errors(network):
    topology, mm_system = waters(2)
    with pytest.raises(ValueError, match="weighted_energy_and_charges"):
        mlmm.create_mixed_system(topology, mm_system, [0, 1, 2], torch.nn.Linear(1, 1), embedding="buffer")
    with pytest.raises(ValueError, match="buffer_capacity=0 must be a positive number"):
        mlmm.create_mixed_system(topology, mm_system, [0, 1, 2], network, embedding="buffer", buffer_capacity=0)
    with pytest.raises(ValueError, match="outer_coupling='dipoles' is not"):
        mlmm.create_mixed_system(topology, mm_system, [0, 1, 2], network, embedding="buffer",
                                 outer_coupling="dipoles")
    with pytest.raises(ValueError, match="shorter than the Coulomb cutoff"):
        mlmm.create_mixed_system(topology, mm_system, [0, 1, 2], network, embedding="buffer", buffer_cutoff=1.2,
                                 cutoff=1.0)
    chain = topology.addChain()
    residue = topology.addResidue("MOL", chain)  # a neutral solvent molecule with carbon, unknown to the network
    nonbonded = next(f for f in mm_system.getForces() if isinstance(f, openmm.NonbondedForce))
    for element, charge in (("C", 0.2), ("H", -0.1), ("H", -0.1)):
        topology.addAtom(element, app.Element.getBySymbol(element), residue)
        mm_system.addParticle(app.Element.getBySymbol(element).mass)
        nonbonded.addParticle(charge, 0.3, 0.1)
    with pytest.raises(ValueError, match="may join the buffer but has atoms the potential does not support"):
        mlmm.create_mixed_system(topology, mm_system, [0, 1, 2], network, embedding="buffer")
    topology, mm_system = waters(2)
    residue = topology.addResidue("HOH", topology.addChain())  # a TIP4P-type water: its M site has no element
    nonbonded = next(f for f in mm_system.getForces() if isinstance(f, openmm.NonbondedForce))
    first = mm_system.getNumParticles()
    for name, element, charge in (("O", "O", 0.0), ("H1", "H", 0.52), ("H2", "H", 0.52), ("M", None, -1.04)):
        topology.addAtom(name, element and app.Element.getBySymbol(element), residue)
        mm_system.addParticle(0.0 if element is None else app.Element.getBySymbol(element).mass)
        nonbonded.addParticle(charge, 0.3, 0.1)
    mm_system.setVirtualSite(first + 3, openmm.ThreeParticleAverageSite(first, first + 1, first + 2, 0.8, 0.1, 0.1))
    with pytest.raises(ValueError, match="particles without an element .virtual sites"):
        mlmm.create_mixed_system(topology, mm_system, [0, 1, 2], network, embedding="buffer")


@pytest.mark.parametrize("unused", [0, 3], ids=["full", "unused-padding"])
def test_batched_buffer_differences_equal_frame_by_frame_evaluations(network, unused):
    """buffer_frame_outputs (padding, parking, member batching) against direct weighted evaluations;
    ``unused`` padding atoms that no frame of the batch uses are left out and come back as zeros."""
    from mlmm.training.batching import buffer_frame_outputs

    water = torch.tensor(WATER)
    first = torch.tensor([[0.0, 0.0, 0.29], [0.0, 0.0, 0.1943], [0.0927, 0.0, 0.314]], dtype=torch.float64)
    second = first + torch.tensor([0.3, 0.0, 0.0], dtype=torch.float64)
    positions = torch.stack([water, water * 1.01])
    padding = torch.zeros(3 + unused, 3, dtype=torch.float64)
    buffers = torch.stack([torch.cat([first, second, padding[:unused]]), torch.cat([first * 1.02, padding])])
    mask = torch.tensor([[True] * 6 + [False] * unused, [True] * 3 + [False] * (3 + unused)])
    species, buffer_species = torch.tensor([8, 1, 1]), torch.tensor([8, 1, 1, 8, 1, 1, 8, 1, 1][:6 + unused])
    outputs = buffer_frame_outputs(network, species, positions, buffers, buffer_species, mask, create_graph=False)
    for k in range(2):
        real = mask[k]
        x = torch.cat([positions[k], buffers[k][real]]).requires_grad_(True)
        ones = torch.ones(len(x), dtype=torch.float64)
        whole, _ = network.weighted_energy_and_charges(torch.cat([species, buffer_species[real]]), x, ones, 0.0)
        alone, _ = network.weighted_energy_and_charges(buffer_species[real], x[3:], ones[3:], 0.0)
        (gradient,) = torch.autograd.grad(whole - alone, x)
        assert float(outputs["energy"][0, k].detach()) == pytest.approx(float((whole - alone).detach()), abs=1e-9)
        assert torch.allclose(outputs["forces"][0, k], -gradient[:3], atol=1e-9)
        assert torch.allclose(outputs["mm_forces"][0, k][real], -gradient[3:], atol=1e-9)
        _, whole_charges = network.weighted_energy_and_charges(torch.cat([species, buffer_species[real]]), x, ones,
                                                               0.0)
        _, buffer_charges = network.weighted_energy_and_charges(buffer_species[real], x[3:], ones[3:], 0.0)
        assert torch.allclose(outputs["mm_charge_changes"][0, k][real], whole_charges[3:] - buffer_charges, atol=1e-9)
    assert outputs["mm_forces"].shape[2] == outputs["mm_charge_changes"].shape[2] == 6 + unused
    assert torch.all(outputs["mm_forces"][0][~mask] == 0)
    assert torch.all(outputs["mm_charge_changes"][0][~mask] == 0)


def _buffer_frames():
    """24 frames of a water with one or two buffer waters donating a hydrogen bond (unlabelled)."""
    from mlmm.data.dataset import Dataset

    rng = np.random.default_rng(0)
    donor = np.array([[0.0, 0.0, 0.29], [0.0, 0.0, 0.1943], [0.0927, 0.0, 0.314]])
    frames = []
    for k in range(24):
        shift = np.repeat(rng.normal(0.0, 0.02, (2, 3)), 3, axis=0)  # each buffer water moves rigidly
        second = donor + [0.0, 0.3, 0.0]
        frames.append((WATER + rng.normal(0.0, 0.0005, (3, 3)), np.vstack([donor, second]) + shift, k % 3 != 0))
    mask = np.array([[True] * 3 + [third] * 3 for _, _, third in frames])
    data = Dataset(species=[8, 1, 1], positions=[w for w, _, _ in frames],
                   mm_positions=[b * m[:, None] for (_, b, _), m in zip(frames, mask)],
                   mm_charges=np.tile([-0.834, 0.417, 0.417], (24, 2)) * mask,
                   mm_species=np.tile([8, 1, 1], (24, 2)) * mask, mm_mask=mask)
    return data


def test_a_buffer_network_trains_on_cluster_differences(tmp_path):
    """`mlmm train` on tiny GFN2-xTB buffer data (E(I u B) - E(B), one or two buffer waters, labelled for
    the charge-difference coupling): the fit improves, the errors cover the buffer atoms' forces and
    charge changes, and the model file records the coupling, which the buffer scheme then uses."""
    from mlmm.data.calculators import BufferDifference
    from mlmm.data.labelling import label
    from mlmm.training.config import make_config
    from mlmm.training.trainer import train

    data = _buffer_frames()
    labelled = label(data, tmp_path / "buffer.h5", BufferDifference({"program": "xtb"}, "charge-difference"),
                     n_workers=0, progress=False)
    config = make_config({"data": {"datasets": ["buffer.h5"], "split": [0.875, 0.0, 0.125]},  # validate on train
                          "model": {"family": "physnet", "elements": ["H", "O"],
                                    "options": {"n_features": 8, "n_basis": 8, "n_modules": 1}},
                          "training": {"epochs": 150, "batch_size": 6, "learning_rate": 1e-2, "threads": 1,
                                       # charges weighted so that a 0.01 e error counts as 3 kJ/mol: this
                                       # tiny network learns them within 150 epochs (at 1e4 only a fifth)
                                       "force_weight": 0.0001, "charge_weight": 1e5, "ema_decay": 0.0},
                          "output": {"directory": "out"}}, base=tmp_path)
    metrics = train(config, progress=False)
    log = (tmp_path / "out" / "log.csv").read_text().splitlines()
    first, last = (float(row.split(",")[3]) for row in (log[1], log[-1]))
    assert last < 0.7 * first  # the training loss falls ...
    assert metrics["train"]["energy_mae"] < 0.6 * np.std(labelled.energies)  # ... below a constant's error
    assert "mm_forces_mae" in metrics["train"] and metrics["train"]["mm_forces_mae"] > 0
    typical_change = np.abs(labelled.mm_charge_changes[labelled.mm_mask]).mean()
    assert typical_change > 1e-3 and metrics["train"]["mm_charge_changes_mae"] < 0.6 * typical_change
    topology, mm_system = waters(3)
    model = tmp_path / "out" / "model.pt"
    assert mlmm.plan_embedding(topology, mm_system, [0, 1, 2], str(model), "buffer").module.charge_difference
    with pytest.raises(ValueError, match="trained for 'charge-difference'"):
        mlmm.plan_embedding(topology, mm_system, [0, 1, 2], str(model), "buffer", outer_coupling="ml-charges")
    # the network rebuilt from the file (for compiled=True, rescript) keeps what the file records
    from mlmm.training.models import eager_potential

    rebuilt = eager_potential(model)
    assert mlmm.plan_embedding(topology, mm_system, [0, 1, 2], rebuilt, "buffer").module.charge_difference
    del rebuilt.file_metadata  # a bare module gets the default coupling
    assert not mlmm.plan_embedding(topology, mm_system, [0, 1, 2], rebuilt, "buffer").module.charge_difference


def test_the_field_energy_loss_weighs_charge_errors_by_the_outer_potential(tmp_path):
    """field_energy_weight: the squared error of E + sum_a q_a phi_a, the cluster's energy in the outer field
    that the scheme reproduces, where the network's coupled charges replace the reference's: I's charges
    shifted to the total charge (a uniform charge error costs nothing) or those and the buffer atoms'
    charge changes (padding left out); coupling_energy_weight: the squared error of sum_a q_a phi_a alone,
    blind to the energy's error; buffer data without outer potentials is refused for either."""
    from mlmm.data.dataset import Dataset
    from mlmm.training.config import make_config
    from mlmm.training.metrics import loss
    from mlmm.training.trainer import train

    rng = np.random.default_rng(4)
    mask = torch.tensor([[True] * 4, [True, True, False, False]])
    batch = {"energies": torch.tensor([-10.0, -12.0], dtype=torch.float64), "charges": torch.zeros(2, 3),
             "outer_potential": torch.as_tensor(rng.normal(0.0, 100.0, (2, 3))), "mm_mask": mask,
             "mm_charge_changes": torch.zeros(2, 4),
             "mm_outer_potential": torch.as_tensor(rng.normal(0.0, 100.0, (2, 4)))}
    charge_errors, change_errors = torch.as_tensor(rng.normal(0.0, 0.01, (1, 2, 3))), torch.as_tensor(
        rng.normal(0.0, 0.01, (1, 2, 4)))
    outputs = {"energy": batch["energies"] + torch.tensor([[1.5, -0.5]], dtype=torch.float64),  # energy errors
               "charges": charge_errors, "mm_charge_changes": change_errors}
    weights = {"energy": 0.0, "force": 0.0, "dipole": 0.0, "charge": 0.0, "charge_change": 0.0, "field_energy": 2.0,
               "coupling_energy": 0.0}
    energy_errors = torch.tensor([1.5, -0.5], dtype=torch.float64)
    coupling_errors = (charge_errors[0] * batch["outer_potential"]).sum(-1) + (
        change_errors[0] * batch["mm_outer_potential"] * mask).sum(-1)
    assert float(loss(outputs, batch, weights, "charge-difference")) == pytest.approx(
        2.0 * float((energy_errors + coupling_errors).pow(2).mean()), rel=1e-12)
    coupling_only = dict(weights, field_energy=0.0, coupling_energy=3.0)
    assert float(loss(outputs, batch, coupling_only, "charge-difference")) == pytest.approx(
        3.0 * float(coupling_errors.pow(2).mean()), rel=1e-12)
    both = dict(weights, coupling_energy=3.0)
    assert float(loss(outputs, batch, both, "charge-difference")) == pytest.approx(
        float(2.0 * (energy_errors + coupling_errors).pow(2).mean() + 3.0 * coupling_errors.pow(2).mean()), rel=1e-12)
    shifted = charge_errors[0] - charge_errors[0].mean(-1, keepdim=True)
    expected = energy_errors + (shifted * batch["outer_potential"]).sum(-1)
    assert float(loss(outputs, batch, weights, "ml-charges")) == pytest.approx(
        2.0 * float(expected.pow(2).mean()), rel=1e-12)
    uniform = dict(outputs, charges=torch.full((1, 2, 3), 0.05, dtype=torch.float64))
    assert float(loss(uniform, batch, weights, "ml-charges")) == pytest.approx(2.0 * (1.5 ** 2 + 0.5 ** 2) / 2)
    with pytest.raises(ValueError, match="outer coupling"):
        loss(outputs, batch, weights, None)
    with pytest.raises(ValueError, match="outer potentials"):
        loss(outputs, {k: v for k, v in batch.items() if k != "outer_potential"}, weights, "ml-charges")

    data = _buffer_frames()  # buffer frames without charges beyond the buffer: no outer potentials
    Dataset(**{**{f: getattr(data, f) for f in ("species", "positions", "mm_positions", "mm_charges", "mm_species",
                                                  "mm_mask")}, "energies": np.zeros(24), "forces": np.zeros((24, 3, 3)),
               "charges": np.zeros((24, 3)), "provenance": {"program": "buffer-difference"}}).save(tmp_path / "b.h5")
    for weight in ("field_energy_weight", "coupling_energy_weight"):
        config = make_config({"data": {"datasets": ["b.h5"]}, "model": {"family": "physnet", "elements": ["H", "O"]},
                              "training": {weight: 1.0}, "output": {"directory": "out"}}, base=tmp_path)
        with pytest.raises(ValueError, match=f"{weight} is for buffer data labelled in a field"):
            train(config, progress=False)


def test_a_vacuum_anchored_model_adds_the_vacuum_energy_of_the_ml_region_once(network, tmp_path):
    """VacuumAnchoredBuffer(vacuum, network) in the buffer scheme: energy and forces are those of the bare
    network plus the vacuum potential of the ML atoms alone (nothing on the MM atoms), for the module and
    for its saved file; the lone ML region's energy is vacuum + network."""
    torch.manual_seed(5)
    vacuum = PhysNet(["H", "O"], n_features=8, n_basis=8, n_modules=1).double()
    with torch.no_grad():
        for parameter in vacuum.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    anchored = VacuumAnchoredBuffer(vacuum, network)
    saved = mlmm.save_potential(anchored, tmp_path / "anchored.pt")
    topology, mm_system = waters(4)
    tilt = np.array([[0.0, 0.0, 0.0], [0.0, 0.0957, 0.0], [0.0927, 0.0, 0.024]])
    positions = np.vstack([WATER] + [tilt + [0.0, 0.0, z] for z in (0.28, 0.43, 0.7)])
    options = dict(buffer_cutoff=0.5, buffer_switch_distance=0.35, cutoff=1.0, switch_distance=0.9)
    bare_energy, bare_forces = evaluate(_with_ml_group(mlmm.create_mixed_system(
        topology, mm_system, [0, 1, 2], network, embedding="buffer", **options)), positions, groups={ML_GROUP})
    x_ml = torch.tensor(WATER, requires_grad=True)
    e_vacuum = vacuum(torch.tensor([8, 1, 1]), x_ml)
    (gradient,) = torch.autograd.grad(e_vacuum, x_ml)
    e_vacuum = e_vacuum.detach()
    assert abs(float(e_vacuum)) > 1.0  # the term is not negligible
    for model in (anchored, str(saved)):
        energy, forces = evaluate(_with_ml_group(mlmm.create_mixed_system(
            topology, mm_system, [0, 1, 2], model, embedding="buffer", **options)), positions, groups={ML_GROUP})
        assert energy - bare_energy == pytest.approx(float(e_vacuum), abs=1e-8)
        np.testing.assert_allclose(forces[:3] - bare_forces[:3], -gradient.numpy(), atol=1e-6)
        np.testing.assert_allclose(forces[3:], bare_forces[3:], atol=1e-8)
    species, x = torch.tensor([8, 1, 1]), torch.tensor(WATER)
    assert float(anchored(species, x)) == pytest.approx(float(vacuum(species, x) + network(species, x)), abs=1e-8)
    report = mlmm.plan_embedding(topology, mm_system, [0, 1, 2], anchored, "buffer", **options).module.report(
        torch.tensor(positions))
    assert float(report["vacuum_energy"]) == pytest.approx(float(e_vacuum), abs=1e-8)


def test_an_anchored_buffer_network_trains_on_cluster_differences_less_the_vacuum_energy(tmp_path):
    """`mlmm train` with [data] delta_from (vacuum labels of the ML region) and [model] vacuum_model on buffer
    data: the network learns E(I u B) - E(B) - E(I) (buffer-atom forces unchanged), and model.pt is the
    VacuumAnchoredBuffer of the vacuum model and the network, which eager_potential rebuilds."""
    from mlmm.data.calculators import BufferDifference, XTBCalculator
    from mlmm.data.dataset import Dataset
    from mlmm.data.labelling import label
    from mlmm.training.config import make_config
    from mlmm.training.models import eager_potential, rebuild
    from mlmm.training.trainer import load_training_data, train

    data = _buffer_frames()
    labelled = label(data, tmp_path / "buffer.h5", BufferDifference({"program": "xtb"}), n_workers=0, progress=False)
    vacuum_labels = label(Dataset(species=[8, 1, 1], positions=data.positions[::-1]), tmp_path / "vacuum.h5",
                          XTBCalculator(), n_workers=0, progress=False)  # frames matched by geometry, not order
    recipe = {"family": "physnet", "elements": ["H", "O"], "options": {"n_features": 8, "n_basis": 8, "n_modules": 1}}
    torch.manual_seed(2)
    mlmm.save_potential(PhysNet(["H", "O"], **recipe["options"]).double(), tmp_path / "vacuum.pt",
                        extra={"model": recipe})
    raw = {"data": {"datasets": ["buffer.h5"], "split": [0.875, 0.0, 0.125]},
           "model": {**recipe, "vacuum_model": "vacuum.pt"},
           "training": {"epochs": 3, "batch_size": 6, "threads": 1}, "output": {"directory": "out"}}
    with pytest.raises(ValueError, match="vacuum_model needs \\[data\\] delta_from"):
        make_config(raw, base=tmp_path)
    raw["data"]["delta_from"] = ["vacuum.h5"]
    config = make_config(raw, base=tmp_path)
    frames = load_training_data(config)[0]
    np.testing.assert_allclose(frames.energies, labelled.energies - vacuum_labels.energies[::-1], atol=1e-9)
    np.testing.assert_allclose(frames.forces, labelled.forces - vacuum_labels.forces[::-1], atol=1e-9)
    np.testing.assert_array_equal(frames.mm_forces, labelled.mm_forces)
    train(config, progress=False)
    model = tmp_path / "out" / "model.pt"
    topology, mm_system = waters(3)
    positions = np.vstack([WATER, WATER + [0.0, 0.0, 0.3], WATER + [0.0, 0.6, 0.0]])
    energies = {name: evaluate(mlmm.create_mixed_system(topology, mm_system, [0, 1, 2], potential, "buffer"),
                               positions)[0]
                for name, potential in (("file", str(model)), ("eager", eager_potential(model)),
                                        ("network", rebuild(model)))}
    x_ml = torch.tensor(WATER)
    e_vacuum = float(mlmm.load_potential(tmp_path / "vacuum.pt")[0](torch.tensor([8, 1, 1]), x_ml))
    assert energies["eager"] == pytest.approx(energies["file"], abs=1e-6)
    assert energies["file"] - energies["network"] == pytest.approx(e_vacuum, abs=1e-6)
    with pytest.raises(ValueError, match="vacuum_model is for an electrostatic embedding network"):
        train(make_config({**raw, "data": {"datasets": ["vacuum.h5"], "delta_from": ["vacuum.h5"]},
                           "output": {"directory": "plain"}}, base=tmp_path), progress=False)


def test_lambda_zero_gives_the_force_field_and_transports_agree(network):
    topology, mm_system = waters(3)
    positions = np.vstack([WATER, WATER + [0.0, 0.0, 0.3], WATER + [0.0, 0.6, 0.0]])
    options = dict(buffer_cutoff=0.5, buffer_switch_distance=0.35, cutoff=1.0, switch_distance=0.9)
    interpolated = mlmm.create_mixed_system(topology, mm_system, [0, 1, 2], network, embedding="buffer",
                                            interpolate=True, **options)
    assert evaluate(interpolated, positions, parameters={"lambda_interpolate": 0.0})[0] == pytest.approx(
        evaluate(mm_system, positions)[0], abs=1e-8)
    energies = [evaluate(mlmm.create_mixed_system(topology, mm_system, [0, 1, 2], network, embedding="buffer",
                                                  transport=transport, **options), positions)[0]
                for transport in ("torch", "python")]
    assert energies[1] == pytest.approx(energies[0], abs=1e-8)
    assert evaluate(interpolated, positions)[0] == pytest.approx(energies[0], abs=1e-8)


@pytest.mark.parametrize("coupling", ["ml-charges", "charge-difference"])
def test_the_scheme_interaction_used_in_evaluation_matches_its_terms_and_its_forces(network, coupling):
    """mlmm.training.buffer_errors.network_interaction: E_NN(I u B) - E_NN(B) - E_NN(I) + Coulomb with O
    (of I's shifted charges, or of every cluster atom's charge change), term by term from the network,
    and forces on I equal to finite differences."""
    from mlmm.training.buffer_errors import network_interaction

    x_ml = WATER + 0.01
    x_buffer = np.vstack([WATER + [0.3, 0.0, 0.0], WATER + [0.0, 0.32, 0.05]])
    x_outer = np.vstack([WATER + [0.8, 0.1, 0.0]])
    q_outer = np.array([-0.834, 0.417, 0.417]) * 0.6
    species, buffer_species = [8, 1, 1], [8, 1, 1] * 2
    energy, forces, charges = network_interaction(network, species, buffer_species, 0.0, x_ml, x_buffer, x_outer,
                                                  q_outer, coupling)

    def terms(x):
        t = torch.as_tensor
        ones = torch.ones(9, dtype=torch.float64)
        whole, charges = network.weighted_energy_and_charges(t(species + buffer_species), t(np.vstack([x, x_buffer])),
                                                             ones, 0.0)
        buffer, buffer_charges = network.weighted_energy_and_charges(t(buffer_species), t(x_buffer), ones[3:], 0.0)
        alone = network.weighted_energy_and_charges(t(species), t(x), ones[:3], 0.0)[0]
        if coupling == "ml-charges":
            q = torch.cat([charges[:3] - charges[:3].sum() / 3, torch.zeros(6, dtype=torch.float64)])
        else:
            q = torch.cat([charges[:3], charges[3:] - buffer_charges])
        r = np.linalg.norm(np.vstack([x, x_buffer])[:, None] - x_outer[None], axis=-1)
        coulomb = COULOMB_CONSTANT * float((q.detach().numpy()[:, None] * q_outer / r).sum())
        return float((whole - buffer - alone).detach()) + coulomb, q.detach().numpy()

    assert energy == pytest.approx(terms(x_ml)[0], abs=1e-9)
    np.testing.assert_allclose(charges, terms(x_ml)[1], atol=1e-12)  # the charges the Coulomb term used
    assert abs(energy) > 0.1  # not trivially zero, so the comparison can fail
    step = 1e-5
    numeric = np.zeros_like(x_ml)
    for i in range(3):
        for d in range(3):
            shifted = x_ml.copy()
            shifted[i, d] += step
            plus = terms(shifted)[0]
            shifted[i, d] -= 2 * step
            numeric[i, d] = -(plus - terms(shifted)[0]) / (2 * step)
    np.testing.assert_allclose(forces, numeric, atol=1e-4 * np.abs(numeric).max())


def two_tip3p_waters():
    """An OpenMM system of two TIP3P waters (amber14), no cutoff: the force field of I and of one buffer water."""
    topology = app.Topology()
    chain = topology.addChain()
    for _ in range(2):
        residue = topology.addResidue("HOH", chain)
        oxygen = topology.addAtom("O", app.element.oxygen, residue)
        for name in ("H1", "H2"):
            topology.addBond(oxygen, topology.addAtom(name, app.element.hydrogen, residue))
    return app.ForceField("amber14/tip3p.xml").createSystem(topology, nonbondedMethod=app.NoCutoff)


def test_buffer_interaction_errors_against_direct_gfn2_xtb_evaluations(network):
    """mlmm.training.buffer_errors on one snapshot (charge-difference coupling): the reference, the
    scheme limit and the coupling's charge error equal their definitions evaluated with xtb directly."""
    from mlmm.data.calculators import XTBCalculator, coupled_charges
    from mlmm.data.dataset import Dataset
    from mlmm.training.buffer_errors import buffer_interaction_errors, network_interaction, other_schemes

    x_ml = WATER + 0.01
    near = np.array([[0.0, 0.0, 0.29], [0.0, 0.0, 0.1943], [0.0927, 0.0, 0.314]])
    far = near + [0.0, 0.0, 0.45]
    q_far = np.array([-0.834, 0.417, 0.417]) * 0.8
    xtb = XTBCalculator()
    snapshots = Dataset(species=[8, 1, 1], positions=[x_ml], mm_positions=[np.vstack([far, near])],
                        mm_charges=[np.concatenate([q_far, [-0.834, 0.417, 0.417]])])
    alone = xtb.compute([8, 1, 1], x_ml)
    vacuum = Dataset(species=[8, 1, 1], positions=[x_ml], energies=[alone["energy"]], forces=[alone["forces"]])
    result = buffer_interaction_errors(network, snapshots, vacuum, [0], xtb, 0.5, [8, 1, 1], "charge-difference",
                                       other_schemes(two_tip3p_waters(), [0, 1, 2], [3, 4, 5],
                                                     load_potential(WATER_MODELS["mechanical"])[0],
                                                     load_potential(WATER_MODELS["electrostatic"])[0], 0.0))

    cluster, species = np.vstack([x_ml, near]), [8, 1, 1, 8, 1, 1]
    whole, buffer = xtb.compute(species, cluster, 0, 1, far, q_far), xtb.compute([8, 1, 1], near, 0, 1, far, q_far)
    reference = whole["energy"] - buffer["energy"] - alone["energy"]
    distance = np.linalg.norm(cluster[:, None] - far[None], axis=-1)

    def coulomb(charges):
        return COULOMB_CONSTANT * float((charges[:, None] * q_far[None] / distance).sum())

    whole_vacuum, buffer_vacuum = xtb.compute(species, cluster), xtb.compute([8, 1, 1], near)
    limit = whole_vacuum["energy"] - buffer_vacuum["energy"] - alone["energy"] + coulomb(
        coupled_charges("charge-difference", whole_vacuum["charges"], buffer_vacuum["charges"], 0.0))
    energy, _, charges = network_interaction(network, [8, 1, 1], [8, 1, 1], 0.0, x_ml, near, far, q_far,
                                             "charge-difference")
    field_charges = coupled_charges("charge-difference", whole["charges"], buffer["charges"], 0.0)
    assert result["energy_mean_error"] == pytest.approx(energy - reference, abs=1e-8)
    assert result["frames"] == [0] and result["energy_errors"] == pytest.approx([energy - reference], abs=1e-8)
    assert result["scheme_limit_energy_mean_error"] == pytest.approx(limit - reference, abs=1e-8)
    assert result["coupling_charge_energy_mean_error"] == pytest.approx(coulomb(charges - field_charges), abs=1e-8)
    assert result["network_energy_error_mae"] == pytest.approx(
        abs(energy - reference - coulomb(charges - field_charges)), abs=1e-8)
    assert abs(result["scheme_limit_energy_mean_error"]) > 1e-3  # the field polarizes beyond first order
    # the mechanical scheme on the same reference: TIP3P Coulomb of I with B and O, and TIP3P's O-O
    # Lennard-Jones of I with B (amber14/tip3p.xml: sigma 0.31507524065751241 nm, epsilon 0.635968 kJ/mol)
    environment = np.vstack([far, near])
    charges_environment = np.concatenate([q_far, [-0.834, 0.417, 0.417]])
    tip3p = np.array([-0.834, 0.417, 0.417])
    coulomb_mm = COULOMB_CONSTANT * float((tip3p[:, None] * charges_environment[None]
                                           / np.linalg.norm(x_ml[:, None] - environment[None], axis=-1)).sum())
    s6 = (0.31507524065751241 / np.linalg.norm(x_ml[0] - near[0])) ** 6
    mechanical = coulomb_mm + 4 * 0.635968 * (s6 * s6 - s6)
    assert result["other_schemes"]["mechanical"]["energy_mean_error"] == pytest.approx(mechanical - reference,
                                                                                       abs=1e-8)
    assert set(result["other_schemes"]) == {"mechanical", "mechanical-ml-charges", "electrostatic"}
