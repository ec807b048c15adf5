"""TorchANI's ANI-2x architecture as an mlmm potential: OpenMM energies equal TorchANI's own calculator."""

import numpy as np
import openmm.unit as u
import pytest
import torch

import mlmm
from conftest import check_adapted_model_file, check_qeq_charges_scheme, ml_force_energy
from mlmm.units import HARTREE_TO_KJ_PER_MOL

torchani = pytest.importorskip("torchani")
ase_units = pytest.importorskip("ase.units")
from mlmm_torchani import ANIPotential, ani2x_architecture  # noqa: E402

#: TorchANI's calculator reports eV via ase.units.Hartree; undo exactly that to compare in kJ/mol.
KJ_PER_MOL_PER_EV = HARTREE_TO_KJ_PER_MOL / ase_units.Hartree


@pytest.fixture(scope="module")
def model():
    """A two-network ANI-2x-architecture ensemble with random weights, float64."""
    return ani2x_architecture(ensemble_size=2, seed=7).double()


def calculator_energy_and_forces(model, numbers, positions_nm) -> tuple[float, np.ndarray]:
    """TorchANI's ASE calculator, converted to kJ/mol and kJ/mol/nm."""
    from ase import Atoms

    atoms = Atoms(numbers=numbers, positions=10.0 * positions_nm)
    atoms.calc = model.ase()
    return (atoms.get_potential_energy() * KJ_PER_MOL_PER_EV, atoms.get_forces() * KJ_PER_MOL_PER_EV * 10.0)


@pytest.mark.parametrize("transport", ["torch", "python"])
def test_mechanical_embedding_in_openmm_equals_torchanis_calculator(model, dimer_in_water,
                                                                     transport):
    pdb, mm_system, ml_atoms = dimer_in_water
    system = mlmm.create_mixed_system(pdb.topology, mm_system, ml_atoms, ANIPotential(model), transport=transport)
    energy, forces = ml_force_energy(system, pdb.positions)
    positions = np.asarray(pdb.positions.value_in_unit(u.nanometer))[ml_atoms]
    numbers = [a.element.atomic_number for a in pdb.topology.atoms() if a.index in set(ml_atoms)]
    expected_energy, expected_forces = calculator_energy_and_forces(model, numbers, positions)
    assert energy == pytest.approx(expected_energy, rel=1e-10)
    np.testing.assert_allclose(forces[ml_atoms], expected_forces, rtol=1e-7, atol=1e-7 * np.abs(expected_forces).max())
    assert np.abs(np.delete(forces, ml_atoms, axis=0)).max() == 0.0


def test_an_adapted_model_file_runs_without_the_adapter(model, dimer_in_water, tmp_path, capsys):
    torch.save(model, tmp_path / "ani.pt")
    check_adapted_model_file("torchani", tmp_path / "ani.pt", ANIPotential(model), dimer_in_water,
                             tmp_path / "mlmm-torchani.pt")
    assert "elements [1, 6, 7, 8, 9, 16, 17], cutoff 0.51 nm" in capsys.readouterr().out


def test_ml_charges_scheme_with_qeq_charges(model, dimer_in_water):
    check_qeq_charges_scheme(ANIPotential(model), dimer_in_water)


def test_bad_input_is_named(tmp_path):
    with pytest.raises(TypeError, match="expected a TorchANI model"):
        ANIPotential(torch.nn.Linear(3, 1))
    torch.save(torch.nn.Linear(3, 1), tmp_path / "linear.pt")
    with pytest.raises(TypeError, match="expected a TorchANI model"):
        mlmm.potentials.adapters.adapt("torchani", tmp_path / "linear.pt")
    with pytest.raises(ValueError, match="no mlmm adapter for 'schnetpack' is installed \\(installed: .*torchani"):
        mlmm.potentials.adapters.adapt("schnetpack", tmp_path / "linear.pt")
