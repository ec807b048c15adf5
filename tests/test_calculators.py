"""Reference calculators: xTB point-charge response, forces and MM forces against finite differences."""

from __future__ import annotations

import numpy as np
import pytest

from mlmm.data.calculators import CalculationFailed, PySCFCalculator, XTBCalculator, make_calculator
from mlmm.units import COULOMB_CONSTANT

SPECIES = np.array([8, 1, 1])
# No bond along a Cartesian axis: xtb-python 22.1 returns a wrong gradient for an O-H bond
# exactly parallel to x (off by 570 kJ/mol/nm; the energy is right), a case MD never meets.
WATER = np.array([[0.0, 0.0, 0.0], [0.0956, 0.0050, 0.0], [-0.0240, 0.0926, 0.0]])
MM_POSITIONS = np.array([[0.30, 0.10, 0.05], [-0.20, 0.25, 0.10]])
MM_CHARGES = np.array([0.6, -0.4])


def central_difference(energy, x: np.ndarray, h: float) -> np.ndarray:
    """-dE/dx of every component of x by central differences."""
    forces = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        plus, minus = x.copy(), x.copy()
        plus[index] += h
        minus[index] -= h
        forces[index] = -(energy(plus) - energy(minus)) / (2 * h)
    return forces


@pytest.mark.parametrize("direction", [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])
def test_xtb_energy_responds_to_a_distant_charge_as_coulomb_law_with_its_own_charges(direction):
    calculator = XTBCalculator()
    gas = calculator.compute(SPECIES, WATER)
    site = 3.0 * np.array(direction)  # nm; far enough that polarisation is second order and tiny
    shift = {q: calculator.compute(SPECIES, WATER, mm_positions=[site], mm_charges=[q])["energy"] - gas["energy"]
             for q in (0.01, -0.01, 0.02)}
    first_order = 0.5 * (shift[0.01] - shift[-0.01])
    coulomb = 0.01 * COULOMB_CONSTANT * (gas["charges"] / np.linalg.norm(WATER - site, axis=1)).sum()
    # GFN2 couples point charges to its atomic charges through a damped kernel
    # 1/sqrt(r^2 + eta^-2) = 1/r - eta^-2 / (2 r^3) + ..., so at 3 nm the first-order energy
    # differs from bare Coulomb by a few per cent (measured 1-4 %).
    assert first_order == pytest.approx(coulomb, rel=0.05)
    assert shift[0.02] == pytest.approx(2 * shift[0.01], rel=1e-3)  # linear: polarisation is negligible here
    assert np.sign(shift[0.01]) == -np.sign(shift[-0.01])


def test_xtb_dipole_follows_the_field_of_a_point_charge():
    calculator = XTBCalculator()
    gas = calculator.compute(SPECIES, WATER)["dipole"]
    # GFN2 couples point charges to atomic charges only, so a field polarises the molecule by
    # moving charge between atoms: put the charge in the molecular plane, on the +x side.
    site = np.array([0.5, 0.0, 0.0])
    polarised = calculator.compute(SPECIES, WATER, mm_positions=[site], mm_charges=[1.0])["dipole"]
    # electrons are pulled towards +x, so the dipole (pointing to the positive end) decreases along x
    assert polarised[0] - gas[0] < -1e-3
    assert abs(polarised[2]) < 1e-12  # and stays in the plane


@pytest.mark.parametrize("with_charges", [False, True])
def test_xtb_forces_are_minus_the_gradient(with_charges):
    calculator = XTBCalculator(accuracy=0.01)
    extra = {"mm_positions": MM_POSITIONS, "mm_charges": MM_CHARGES} if with_charges else {}
    forces = calculator.compute(SPECIES, WATER, **extra)["forces"]
    numeric = central_difference(lambda x: calculator.compute(SPECIES, x, **extra)["energy"], WATER, 1e-5)
    np.testing.assert_allclose(forces, numeric, atol=0.05)  # of forces up to ~500 kJ/mol/nm


def test_pyscf_forces_on_qm_atoms_and_mm_charges_match_finite_differences():
    calculator = PySCFCalculator("hf", "sto-3g", conv_tol=1e-11)
    result = calculator.compute(SPECIES, WATER, mm_positions=MM_POSITIONS, mm_charges=MM_CHARGES)
    numeric_mm = central_difference(lambda m: calculator.compute(SPECIES, WATER, mm_positions=m,
                                                                 mm_charges=MM_CHARGES)["energy"], MM_POSITIONS, 1e-5)
    np.testing.assert_allclose(result["mm_forces"], numeric_mm, atol=2e-3)
    numeric_qm = central_difference(lambda x: calculator.compute(SPECIES, x, mm_positions=MM_POSITIONS,
                                                                 mm_charges=MM_CHARGES)["energy"], WATER, 1e-5)
    np.testing.assert_allclose(result["forces"], numeric_qm, atol=2e-3)
    assert np.abs(result["mm_forces"]).max() > 10.0  # the charges are close enough to feel real forces


def test_pyscf_zero_charges_give_the_gas_phase_energy():
    calculator = PySCFCalculator("hf", "sto-3g")
    gas = calculator.compute(SPECIES, WATER)
    zero = calculator.compute(SPECIES, WATER, mm_positions=MM_POSITIONS, mm_charges=np.zeros(2))
    assert zero["energy"] == pytest.approx(gas["energy"], abs=1e-6)
    np.testing.assert_allclose(zero["mm_forces"], 0.0, atol=1e-8)


def test_failures_and_bad_input_are_clear():
    with pytest.raises(CalculationFailed, match="not converged"):
        PySCFCalculator("hf", "sto-3g", max_cycle=1).compute(SPECIES, WATER)
    calculator = XTBCalculator()
    with pytest.raises(ValueError, match="positions must be"):
        calculator.compute(SPECIES, WATER[:2])
    with pytest.raises(ValueError, match="both mm_positions and mm_charges"):
        calculator.compute(SPECIES, WATER, mm_positions=MM_POSITIONS)
    with pytest.raises(ValueError, match="multiplicity 1 is impossible with 9 electrons"):
        calculator.compute(SPECIES, WATER, total_charge=1)
    with pytest.raises(ValueError, match="unknown reference program"):
        make_calculator({"program": "gaussian"})


def test_settings_round_trip_through_make_calculator():
    for calculator in (XTBCalculator(accuracy=0.5), PySCFCalculator("pbe", "def2-svp")):
        again = make_calculator({"program": calculator.program, **calculator.settings()})
        assert again.settings() == calculator.settings() and again.level_of_theory == calculator.level_of_theory
