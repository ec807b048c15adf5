"""mechanical-ml-charges: ML-MM Coulomb from the potential's charges, checked against numpy."""

import itertools
import warnings

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as u
import pytest
import torch

import mlmm
from mlmm.potentials import QEqCharges, save_potential
from mlmm.units import COULOMB_CONSTANT
from conftest import SOLUTE, evaluate

ML_GROUP = 1


def _charges(potential, whole_positions, numbers, total_charge=0.0):
    x = torch.tensor(whole_positions, dtype=torch.float64)
    _, charges = potential.energy_and_charges(torch.tensor(numbers), x, total_charge)
    return charges.detach().numpy(), float(potential(torch.tensor(numbers), x))


def _brute_minimum_image(delta, box):
    """Shortest image of each vector in ``delta`` [..., 3] by searching 5^3 lattice translations."""
    shifts = np.array([np.dot(n, box) for n in itertools.product(range(-2, 3), repeat=3)])
    candidates = delta[..., None, :] + shifts
    best = np.argmin((candidates ** 2).sum(-1), axis=-1)
    return np.take_along_axis(candidates, best[..., None, None], axis=-2)[..., 0, :]


def reference_coupling(positions, box, topology, system, charges_ml, cutoff, switch, dielectric=78.3):
    """Independent numpy sum: k_e sum_i q_i sum_groups w(d_i,anchor) sum_j q_j K_rf(r_ij)."""
    nonbonded = next(f for f in system.getForces() if isinstance(f, openmm.NonbondedForce))
    charge = np.array([nonbonded.getParticleParameters(i)[0].value_in_unit(u.elementary_charge)
                       for i in range(system.getNumParticles())])
    image = (lambda d: _brute_minimum_image(d, box)) if box is not None else (lambda d: d)
    x_ml = positions[SOLUTE]
    x_ml = x_ml[0] + image(x_ml - x_ml[0])
    k_rf = (dielectric - 1) / ((2 * dielectric + 1) * cutoff ** 3)
    c_rf = 1 / cutoff + k_rf * cutoff ** 2
    energy = 0.0
    for residue in topology.residues():
        members = [a.index for a in residue.atoms() if a.index not in SOLUTE]
        if not members:
            continue
        anchor = max(members, key=lambda i: (system.getParticleMass(i).value_in_unit(u.dalton), -i))
        to_anchor = image(positions[anchor] - x_ml)  # [n_ml, 3]
        d = np.linalg.norm(to_anchor, axis=-1)
        t = np.clip((d - switch) / (cutoff - switch), 0, 1)
        weight = 1 - 10 * t ** 3 + 15 * t ** 4 - 6 * t ** 5
        for j in members:
            r = np.linalg.norm(to_anchor + image(positions[j] - positions[anchor]), axis=-1)
            energy += COULOMB_CONSTANT * np.sum(charges_ml * weight * charge[j] * (1 / r + k_rf * r ** 2 - c_rf))
    return energy


def _ml_group_energy(system, positions, box=None):
    return evaluate(system, positions, box=box, groups={ML_GROUP})


def _random_configurations(positions, rng, count=3):
    for _ in range(count):
        yield positions + rng.normal(scale=0.01, size=positions.shape) + rng.uniform(-2, 2, size=3)


@pytest.mark.parametrize("geometry", ["cubic", "octahedron"])
def test_coupling_equals_numpy_pair_sum(geometry, request, solvated, pme_flexible_system, ff_potential, octahedron):
    if geometry == "cubic":
        topology, system = solvated.topology, pme_flexible_system
        positions = np.asarray(solvated.positions.value_in_unit(u.nanometer))
    else:
        topology, system, positions = octahedron
    box = np.array([v.value_in_unit(u.nanometer) for v in system.getDefaultPeriodicBoxVectors()])
    if geometry == "octahedron":
        assert box[1, 0] != 0 and box[2, 1] != 0  # really triclinic
    potential = QEqCharges(ff_potential)
    cutoff, switch = 0.8, 0.65
    mixed = mlmm.create_mixed_system(topology, system, SOLUTE, potential, "mechanical-ml-charges",
                                     cutoff=cutoff, switch_distance=switch, force_group=ML_GROUP)
    numbers = [a.element.atomic_number for a in topology.atoms()][:len(SOLUTE)]
    rng = np.random.default_rng(7)
    for configuration in _random_configurations(positions, rng):
        whole = configuration[SOLUTE][0] + _brute_minimum_image(configuration[SOLUTE] - configuration[SOLUTE][0], box)
        charges, e_potential = _charges(potential, whole, numbers)
        assert abs(charges.sum()) < 1e-10
        expected = reference_coupling(configuration, box, topology, system, charges, cutoff, switch)
        energy, _ = _ml_group_energy(mixed, configuration)
        assert abs(expected) > 1.0
        assert abs((energy - e_potential) - expected) <= 1e-6 * abs(expected)


def test_coupling_vanishes_smoothly_at_the_cutoff(forcefield, solvated, ff_potential):
    """One water moved out through the cutoff in 0.0005 nm steps: E and F go continuously to zero."""
    modeller = app.Modeller(solvated.topology, solvated.positions)
    waters = [r for r in modeller.topology.residues() if r.name == "HOH"]
    modeller.delete(waters[1:])
    system = forcefield.createSystem(modeller.topology, nonbondedMethod=app.NoCutoff, constraints=None,
                                     rigidWater=True)
    potential = QEqCharges(ff_potential)
    cutoff, switch = 0.6, 0.5
    mixed = mlmm.create_mixed_system(modeller.topology, system, SOLUTE, potential, "mechanical-ml-charges",
                                     cutoff=cutoff, switch_distance=switch, force_group=ML_GROUP)
    positions = np.asarray(modeller.positions.value_in_unit(u.nanometer))
    solute = positions[SOLUTE]
    water = slice(22, 25)
    direction = positions[22] - solute.mean(0)
    direction /= np.linalg.norm(direction)
    start = positions[water] - positions[22] + solute.mean(0) + direction * (np.max(
        np.linalg.norm(solute - solute.mean(0), axis=1)) + 0.25)
    step = 0.0005
    context = openmm.Context(mixed, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    energies, projected = [], []
    e_alone, _ = _ml_group_energy(mixed, positions[:22].tolist() + (positions[water] + 50.0).tolist())
    for k in range(1400):
        moved = positions.copy()
        moved[water] = start + direction * step * k
        context.setPositions(moved)
        state = context.getState(getEnergy=True, getForces=True, groups={ML_GROUP})
        energies.append(state.getPotentialEnergy().value_in_unit(u.kilojoule_per_mole) - e_alone)
        forces = state.getForces(asNumpy=True).value_in_unit(u.kilojoule_per_mole / u.nanometer)
        projected.append(float((forces[water] @ direction).sum()))
    energies, projected = np.array(energies), np.array(projected)
    assert np.abs(energies[:100]).max() > 0.05  # it starts inside, interacting
    assert np.abs(energies[-50:]).max() < 1e-9 and np.abs(projected[-50:]).max() < 1e-9  # and ends outside
    assert np.abs(np.diff(energies)).max() <= 0.05
    numerical = -(energies[2:] - energies[:-2]) / (2 * step)
    np.testing.assert_allclose(projected[1:-1], numerical, atol=2e-3 * max(1.0, np.abs(numerical).max()))


def test_total_charge_is_passed_to_the_potential(solvated, pme_flexible_system, ff_potential):
    """A charged ML region: the coupling sees charges summing to total_charge."""
    potential = QEqCharges(ff_potential)
    neutral = mlmm.create_mixed_system(solvated.topology, pme_flexible_system, SOLUTE, potential,
                                       "mechanical-ml-charges", force_group=ML_GROUP)
    cation = mlmm.create_mixed_system(solvated.topology, pme_flexible_system, SOLUTE, potential,
                                      "mechanical-ml-charges", total_charge=1, force_group=ML_GROUP)
    e_neutral, _ = _ml_group_energy(neutral, solvated.positions)
    e_cation, _ = _ml_group_energy(cation, solvated.positions)
    assert abs(e_cation - e_neutral) > 1.0


@pytest.mark.parametrize("charge_weight, warns", [(0.0, True), (1e3, False), (None, False)],
                         ids=["charges-not-fitted", "charges-fitted", "no-record"])
def test_charges_that_training_did_not_fit_are_flagged(tmp_path, solvated, pme_flexible_system, ff_potential,
                                                       charge_weight, warns):
    """A model file whose recorded loss weights gave the charges no weight warns with mechanical-ml-charges;
    one trained on charges, and one without a record (nothing known), do not."""
    extra = {} if charge_weight is None else {"loss_weights": {"energy": 1.0, "force": 0.01, "dipole": 1e4,
                                                                "charge": charge_weight}}
    path = save_potential(QEqCharges(ff_potential), tmp_path / "model.pt", extra=extra)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mlmm.create_mixed_system(solvated.topology, pme_flexible_system, SOLUTE, path, "mechanical-ml-charges")
    flagged = [w for w in caught if "did not fit them to reference charges" in str(w.message)]
    assert len(flagged) == (1 if warns else 0)
    if warns:
        assert "'dipole': 10000.0" in str(flagged[0].message)
        assert flagged[0].filename == __file__  # points at the caller's line
