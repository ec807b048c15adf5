"""lambda_interpolate: 0 gives the pure force field, 1 the ML/MM system; forces are -dE/dx."""

import numpy as np
import pytest

import mlmm
from mlmm.potentials import QEqCharges
from conftest import SOLUTE, CentroidRestraint, evaluate

CASES = [("mechanical", "cluster_system"), ("mechanical", "pme_system"),
         ("mechanical-ml-charges", "cluster_system"), ("mechanical-ml-charges", "pme_system")]


def _potential(embedding, ff_potential):
    return QEqCharges(ff_potential) if embedding == "mechanical-ml-charges" else CentroidRestraint()


@pytest.mark.parametrize("embedding,system_name", CASES)
def test_endpoints(embedding, system_name, request, solvated, ff_potential):
    system = request.getfixturevalue(system_name)
    potential = _potential(embedding, ff_potential)
    options = {"cutoff": 0.9} if embedding == "mechanical-ml-charges" else {}
    interpolated = mlmm.create_mixed_system(solvated.topology, system, SOLUTE, potential, embedding,
                                            interpolate=True, **options)
    mixed = mlmm.create_mixed_system(solvated.topology, system, SOLUTE, potential, embedding, **options)
    e_mm, f_mm = evaluate(system, solvated.positions)
    e_mixed, f_mixed = evaluate(mixed, solvated.positions)
    e0, f0 = evaluate(interpolated, solvated.positions, parameters={"lambda_interpolate": 0.0})
    e1, f1 = evaluate(interpolated, solvated.positions, parameters={"lambda_interpolate": 1.0})
    assert abs(e0 - e_mm) <= 1e-6 * abs(e_mm)
    assert abs(e1 - e_mixed) <= 1e-6 * abs(e_mixed)
    assert abs(e_mixed - e_mm) > 0.1  # the endpoints are really different systems
    np.testing.assert_allclose(f0, f_mm, atol=1e-3, rtol=0)
    np.testing.assert_allclose(f1, f_mixed, atol=1e-3, rtol=0)


@pytest.mark.parametrize("transport", ["torch", "python"])
@pytest.mark.parametrize("embedding", ["mechanical", "mechanical-ml-charges"])
def test_forces_match_finite_differences_at_half_lambda(embedding, transport, cluster_system, solvated,
                                                        ff_potential):
    system = mlmm.create_mixed_system(solvated.topology, cluster_system, SOLUTE,
                                      _potential(embedding, ff_potential), embedding, interpolate=True,
                                      transport=transport)
    positions = np.asarray(solvated.positions.value_in_unit(__import__("openmm.unit").unit.nanometer))
    _, forces = evaluate(system, positions, parameters={"lambda_interpolate": 0.5})
    step = 1e-5
    for atom in (0, 8, 21, 22, 40):  # solute atoms and nearby water atoms
        for axis in range(3):
            plus, minus = positions.copy(), positions.copy()
            plus[atom, axis] += step
            minus[atom, axis] -= step
            e_plus, _ = evaluate(system, plus, parameters={"lambda_interpolate": 0.5})
            e_minus, _ = evaluate(system, minus, parameters={"lambda_interpolate": 0.5})
            numerical = -(e_plus - e_minus) / (2 * step)
            assert abs(forces[atom, axis] - numerical) <= 1e-3 * max(1.0, abs(numerical)), (atom, axis)
