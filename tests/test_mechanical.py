"""Mechanical embedding reproduces OpenMM's own force-field energies exactly."""

import numpy as np
import openmm
import pytest

import mlmm
from conftest import (SOLUTE, SOLUTE_SELECTION, CentroidRestraint, ZeroPotential, evaluate,
                      solute_positions_tensor)

PLATFORMS = ["Reference", "CPU"]


def _potential_energy_and_forces(potential, positions):
    x = solute_positions_tensor(positions).requires_grad_(True)
    energy = potential(None, x)
    (gradient,) = __import__("torch").autograd.grad(energy, x)
    return float(energy.detach()), -gradient.numpy()


@pytest.mark.parametrize("platform", PLATFORMS)
def test_zero_potential_equals_mm_all_minus_solute_alone(platform, cluster_system, vacuum_solute_system,
                                                         solvated, solute_pdb):
    """Non-periodic: E_mixed(E_NN = 0) = E_MM(all) - E_MM(solute alone), to 1e-6 relative."""
    mixed = mlmm.create_mixed_system(solvated.topology, cluster_system, SOLUTE, ZeroPotential())
    e_mixed, f_mixed = evaluate(mixed, solvated.positions, platform)
    e_all, f_all = evaluate(cluster_system, solvated.positions, platform)
    e_solute, f_solute = evaluate(vacuum_solute_system, solute_pdb.positions, platform)
    expected = e_all - e_solute
    assert abs(e_mixed - expected) <= 1e-6 * abs(expected)
    expected_forces = f_all.copy()
    expected_forces[SOLUTE] -= f_solute
    np.testing.assert_allclose(f_mixed, expected_forces, atol=1e-3, rtol=0)


@pytest.mark.parametrize("platform", PLATFORMS)
def test_analytic_potential_adds_its_energy_and_forces(platform, cluster_system, solvated):
    """With a nonzero analytic potential, E_mixed = E_mixed(zero) + E_potential; forces likewise."""
    potential = CentroidRestraint()
    zero = mlmm.create_mixed_system(solvated.topology, cluster_system, SOLUTE, ZeroPotential())
    mixed = mlmm.create_mixed_system(solvated.topology, cluster_system, SOLUTE_SELECTION, potential)
    e_zero, f_zero = evaluate(zero, solvated.positions, platform)
    e_mixed, f_mixed = evaluate(mixed, solvated.positions, platform)
    e_potential, f_potential = _potential_energy_and_forces(potential, solvated.positions)
    assert e_potential > 1.0
    assert abs(e_mixed - (e_zero + e_potential)) <= 1e-6 * abs(e_zero)
    expected = f_zero.copy()
    expected[SOLUTE] += f_potential
    np.testing.assert_allclose(f_mixed, expected, atol=1e-3, rtol=0)


@pytest.mark.parametrize("platform", PLATFORMS)
def test_force_field_potential_reproduces_pure_mm(platform, cluster_system, pme_flexible_system, solvated,
                                                 ff_potential):
    """The force field as the ML potential gives back the pure-MM system (NoCutoff and PME).

    The solute is flexible in both: with HBonds constraints the force field has no X-H bond
    terms, while the potential (built from the unconstrained solute) has them.
    """
    for system in (cluster_system, pme_flexible_system):
        mixed = mlmm.create_mixed_system(solvated.topology, system, SOLUTE, ff_potential)
        e_mixed, f_mixed = evaluate(mixed, solvated.positions, platform)
        e_all, f_all = evaluate(system, solvated.positions, platform)
        # CPU PME is single-precision mixed; 1e-6 relative is its resolution for ~3e4 kJ/mol.
        assert abs(e_mixed - e_all) <= 1e-6 * abs(e_all)
        np.testing.assert_allclose(f_mixed, f_all, atol=1e-3 if platform == "Reference" else 5e-2, rtol=0)


def test_periodic_pme_removes_exactly_the_in_cell_solute_energy(pme_flexible_system, vacuum_solute_system, solvated,
                                                   solute_pdb):
    """PME: E_MM(all) - E_mixed(zero) is the solute's in-cell force-field energy.

    The ML-ML pairs are exceptions, whose reciprocal-space part OpenMM subtracts exactly,
    so the removed energy equals the vacuum energy of the solute whenever all ML-ML
    distances are below the cutoff; the interactions of ML atoms with the periodic images
    of the ML region stay in the MM part with force-field charges (the documented
    self-image term), as with openmm-ml's mlLongRange=False.
    """
    mixed = mlmm.create_mixed_system(solvated.topology, pme_flexible_system, SOLUTE, ZeroPotential())
    e_mixed, _ = evaluate(mixed, solvated.positions)
    e_all, _ = evaluate(pme_flexible_system, solvated.positions)
    e_solute, _ = evaluate(vacuum_solute_system, solute_pdb.positions)
    assert abs((e_all - e_mixed) - e_solute) <= 1e-6 * abs(e_all)


def test_input_system_is_not_modified(pme_system, solvated):
    before = openmm.XmlSerializer.serialize(pme_system)
    mlmm.create_mixed_system(solvated.topology, pme_system, SOLUTE, ZeroPotential())
    assert openmm.XmlSerializer.serialize(pme_system) == before


def test_constraints_and_bonded_terms_inside_ml_region_are_removed(pme_system, solvated):
    mixed = mlmm.create_mixed_system(solvated.topology, pme_system, SOLUTE, ZeroPotential(), force_group=3)
    ml = set(SOLUTE)
    constrained = [mixed.getConstraintParameters(c)[:2] for c in range(mixed.getNumConstraints())]
    assert not [c for c in constrained if c[0] in ml and c[1] in ml]
    assert pme_system.getNumConstraints() - mixed.getNumConstraints() == 12  # the solute's X-H bonds
    kept = mlmm.create_mixed_system(solvated.topology, pme_system, SOLUTE, ZeroPotential(), remove_constraints=False)
    assert kept.getNumConstraints() == pme_system.getNumConstraints()
    for force in mixed.getForces():
        if isinstance(force, openmm.HarmonicBondForce):
            bonds = [force.getBondParameters(b)[:2] for b in range(force.getNumBonds())]
            assert not [b for b in bonds if b[0] in ml and b[1] in ml]
        if isinstance(force, openmm.PeriodicTorsionForce):
            assert force.getNumTorsions() == 0  # all torsions of the system are in the solute
    ml_forces = [f for f in mixed.getForces() if f.getName() == "mlmm mechanical"]
    assert len(ml_forces) == 1 and ml_forces[0].getForceGroup() == 3
