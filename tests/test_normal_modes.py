"""Normal-mode analysis against a charged harmonic diatomic (exact frequency and IR intensity) and a trained model."""

from typing import Dict

import numpy as np
import pytest
import scipy.constants
import torch

from conftest import SYSTEM_DIR
from mlmm.analysis.normal_modes import KM_PER_MOL_PER_E2_PER_AMU, harmonic_analysis
from mlmm.potentials.io import load_potential
from mlmm.units import SPEED_OF_LIGHT_CM_PER_PS


class ChargedSpring(torch.nn.Module):
    """Two point charges +-q joined by a harmonic bond k (kJ/mol/nm^2) of rest length r0 (nm)."""

    def __init__(self, k: float, r0: float, q: float):
        super().__init__()
        self.k, self.r0, self.q = k, r0, q

    def forward(self, species: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return self.evaluate(species, positions)["energy"][0]

    def evaluate(self, species: torch.Tensor, positions: torch.Tensor) -> Dict[str, torch.Tensor]:
        bond = positions[1] - positions[0]
        energy = 0.5 * self.k * (torch.linalg.norm(bond) - self.r0) ** 2
        return {"energy": energy[None], "dipole": (self.q * bond)[None]}


def test_a_charged_spring_has_its_analytic_frequency_and_intensity():
    k, r0, q, masses = 4.0e5, 0.1, 0.35, [16.0, 1.0]
    start = np.array([[0.0, 0.0, 0.0], [0.104, 0.01, -0.02]])  # stretched: the optimiser has work to do
    analysis = harmonic_analysis(ChargedSpring(k, r0, q), [8, 1], start, masses)
    reduced = masses[0] * masses[1] / sum(masses)
    assert analysis.wavenumbers.shape == (1,)  # 3N - 5 for a linear molecule
    assert analysis.wavenumbers[0] == pytest.approx(np.sqrt(k / reduced) / (2 * np.pi * SPEED_OF_LIGHT_CM_PER_PS),
                                                    rel=1e-6)
    # |d mu / d Q|^2 = q^2 / mu_reduced for charges +-q
    assert analysis.ir_intensities[0] == pytest.approx(KM_PER_MOL_PER_E2_PER_AMU * q ** 2 / reduced, rel=1e-6)
    assert np.linalg.norm(analysis.positions[1] - analysis.positions[0]) == pytest.approx(r0, abs=1e-7)


def test_the_conversion_to_km_per_mol_is_the_textbook_one():
    # 1 D^2 / (A^2 amu) = 42.2561 km/mol (e.g. the Gaussian and ORCA manuals)
    debye_per_angstrom = 1e-21 / scipy.constants.c / 1e-10  # C m per m = C
    e_per_nm = scipy.constants.e  # 1 e nm / nm
    assert KM_PER_MOL_PER_E2_PER_AMU * (debye_per_angstrom / e_per_nm) ** 2 == pytest.approx(42.2561, rel=1e-4)


def test_water_model_hessians_by_autograd_and_finite_differences_agree():
    model, _ = load_potential(SYSTEM_DIR.parent / "water" / "model" / "model.pt")
    positions = np.array([[0.0016, 0.0023, 0.0006], [0.0975, 0.0015, 0.0004], [-0.026, 0.0941, -0.0007]])
    masses = [15.999, 1.008, 1.008]
    exact = harmonic_analysis(model, [8, 1, 1], positions, masses)
    numeric = harmonic_analysis(model, [8, 1, 1], exact.positions, masses, optimize_first=False,
                                method="finite-differences")
    assert exact.wavenumbers.shape == (3,) and np.all(exact.wavenumbers > 1000)
    np.testing.assert_allclose(exact.wavenumbers, numeric.wavenumbers, atol=0.05)
    # same dipole Jacobian; the modes differ by the finite-difference Hessian's error (steps of 1e-4 nm)
    np.testing.assert_allclose(exact.ir_intensities, numeric.ir_intensities, rtol=1e-5)
    with pytest.raises(ValueError, match="stationary point"):
        harmonic_analysis(model, [8, 1, 1], positions + [[0.0, 0.0, 0.0], [0.01, 0.0, 0.0], [0.0] * 3], masses,
                          optimize_first=False)
    with pytest.raises(ValueError, match="method"):
        harmonic_analysis(model, [8, 1, 1], positions, masses, method="bfgs")


def test_mlmm_nma_prints_and_writes_the_modes(tmp_path, capsys):
    from mlmm.cli import main

    water = SYSTEM_DIR.parent / "water"
    output = tmp_path / "modes.csv"
    assert main(["nma", str(water / "model" / "model.pt"), str(water / "water.pdb"), "--output", str(output)]) == 0
    printed = capsys.readouterr().out
    table = np.loadtxt(output, delimiter=",", skiprows=1)
    assert table.shape == (3, 3) and "3 atoms" in printed and f"{table[0, 0]:.2f}" in printed
    assert main(["nma", str(water / "model" / "model.pt"), str(water / "water.pdb"), "--atoms", "resname XYZ"]) == 1
