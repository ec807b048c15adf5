"""Unwrapped coordinates: a solute split across the box and a triclinic box give the same physics."""

import numpy as np
import openmm.unit as u
import pytest

import mlmm
from mlmm.potentials import QEqCharges
from conftest import SOLUTE, evaluate


def _split_solute(positions, box):
    """Translate the solute so it straddles the box corner, then wrap each solute atom into the box."""
    moved = positions.copy()
    moved[SOLUTE] += -moved[SOLUTE].mean(0) + box[0] + box[1] + box[2]
    fractional = np.linalg.solve(box.T, moved[SOLUTE].T).T
    moved[SOLUTE] -= np.floor(fractional) @ box
    return moved


@pytest.mark.parametrize("embedding", ["mechanical", "mechanical-ml-charges"])
def test_solute_split_across_the_box_boundary(embedding, solvated, pme_flexible_system, ff_potential):
    box = np.array([v.value_in_unit(u.nanometer) for v in pme_flexible_system.getDefaultPeriodicBoxVectors()])
    whole = np.asarray(solvated.positions.value_in_unit(u.nanometer))
    whole_shifted = whole.copy()
    whole_shifted[SOLUTE] += -whole[SOLUTE].mean(0) + box[0] + box[1] + box[2]
    split = _split_solute(whole, box)
    extent = np.ptp(split[SOLUTE], axis=0)
    assert (extent > 0.5 * np.diag(box)).sum() >= 2  # really split along at least two axes
    potential = QEqCharges(ff_potential) if embedding == "mechanical-ml-charges" else ff_potential
    mixed = mlmm.create_mixed_system(solvated.topology, pme_flexible_system, SOLUTE, potential, embedding)
    e_whole, f_whole = evaluate(mixed, whole_shifted)
    e_split, f_split = evaluate(mixed, split)
    assert abs(e_split - e_whole) <= 1e-6 * abs(e_whole)
    np.testing.assert_allclose(f_split, f_whole, atol=1e-3, rtol=0)
    # and the force field as the ML potential still equals pure MM on the whole molecule
    if embedding == "mechanical":
        e_mm, _ = evaluate(pme_flexible_system, whole_shifted)
        assert abs(e_split - e_mm) <= 1e-6 * abs(e_mm)


def test_triclinic_truncated_octahedron(octahedron, ff_potential):
    """Force field as ML potential in a truncated octahedron: split solute, mixed == pure MM."""
    topology, system, positions = octahedron
    box = np.array([v.value_in_unit(u.nanometer) for v in system.getDefaultPeriodicBoxVectors()])
    assert box[1, 0] != 0 and box[2, 1] != 0
    mixed = mlmm.create_mixed_system(topology, system, SOLUTE, ff_potential)
    whole = positions.copy()
    whole[SOLUTE] += -whole[SOLUTE].mean(0) + box[0] + box[1] + box[2]
    split = _split_solute(positions, box)
    assert (np.ptp(split[SOLUTE], axis=0) > 1.0).any()
    e_mm, f_mm = evaluate(system, whole)
    e_split, f_split = evaluate(mixed, split)
    assert abs(e_split - e_mm) <= 1e-6 * abs(e_mm)
    np.testing.assert_allclose(f_split, f_mm, atol=1e-3, rtol=0)
