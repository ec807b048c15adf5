"""A MACE model as an mlmm potential: OpenMM energies equal MACE's own calculator and openmm-ml's MACE force."""


import numpy as np
import openmm
import openmm.unit as u
import pytest
import torch

import mlmm
from conftest import check_adapted_model_file, check_qeq_charges_scheme, ml_force_energy
from mlmm.units import EV_TO_KJ_PER_MOL

pytest.importorskip("mace")
from mlmm_mace import MACEPotential  # noqa: E402


@pytest.fixture(scope="module")
def model():
    """A small float64 ScaleShiftMACE for H, C, O (2 interactions, L = 2, r_max 5 A) with random weights."""
    from e3nn import o3
    from mace import modules

    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(3)
    block = modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
    try:
        return modules.ScaleShiftMACE(
            r_max=5.0, num_bessel=8, num_polynomial_cutoff=5, max_ell=2, interaction_cls=block,
            interaction_cls_first=block, num_interactions=2, num_elements=3, hidden_irreps=o3.Irreps("16x0e+16x1o"),
            MLP_irreps=o3.Irreps("16x0e"), atomic_energies=np.array([-13.6, -1029.0, -2041.0]),
            avg_num_neighbors=8.0, atomic_numbers=[1, 6, 8], correlation=2, gate=torch.nn.functional.silu,
            atomic_inter_scale=0.5, atomic_inter_shift=0.1)
    finally:
        torch.set_default_dtype(default)


@pytest.fixture(scope="module")
def model_file(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("mace") / "small.model"
    torch.save(model, path)
    return path


@pytest.fixture
def trusted_pickles(monkeypatch):
    """MACE's calculator and openmm-ml's MACE loader call torch.load without weights_only=False (importing mace
    sets this process-wide already; the fixture says that these tests rely on it)."""
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")


@pytest.mark.parametrize("transport", ["torch", "python"])
def test_mechanical_embedding_in_openmm_equals_maces_calculator(model, model_file, dimer_in_water, trusted_pickles,
                                                                 transport):
    from ase import Atoms
    from mace.calculators import MACECalculator

    pdb, mm_system, ml_atoms = dimer_in_water
    system = mlmm.create_mixed_system(pdb.topology, mm_system, ml_atoms, MACEPotential(model), transport=transport)
    energy, forces = ml_force_energy(system, pdb.positions)
    atoms = Atoms(numbers=[a.element.atomic_number for a in pdb.topology.atoms() if a.index in set(ml_atoms)],
                  positions=10.0 * np.asarray(pdb.positions.value_in_unit(u.nanometer))[ml_atoms])
    atoms.calc = MACECalculator(model_paths=str(model_file), device="cpu", default_dtype="float64")
    assert energy == pytest.approx(atoms.get_potential_energy() * EV_TO_KJ_PER_MOL, rel=1e-10)
    expected_forces = atoms.get_forces() * EV_TO_KJ_PER_MOL * 10.0
    np.testing.assert_allclose(forces[ml_atoms], expected_forces, rtol=1e-7, atol=1e-7 * np.abs(expected_forces).max())


def test_same_mixed_system_as_openmmmls_mace_potential(model, model_file, dimer_in_water,
                                                       trusted_pickles):
    """openmm-ml's MACE force (PythonForce, matscipy neighbour list) converts eV with 96.4853 kJ/mol, ours with
    the CODATA value 96.485332...; the MACE energies agree once that 3.3e-7 relative difference is undone."""
    openmmml = pytest.importorskip("openmmml")
    pdb, mm_system, ml_atoms = dimer_in_water
    peer = openmmml.MLPotential("mace", modelPath=str(model_file)).createMixedSystem(
        pdb.topology, mm_system, ml_atoms, returnEnergyType="energy", mlLongRange=False)
    peer_force = next(f for f in peer.getForces() if isinstance(f, openmm.PythonForce))
    peer_force.setName("mlmm-compare openmm-ml MACE")  # the fixture evaluates forces named mlmm*
    ours = mlmm.create_mixed_system(pdb.topology, mm_system, ml_atoms, MACEPotential(model))
    e_peer, f_peer = ml_force_energy(peer, pdb.positions)
    e_ours, f_ours = ml_force_energy(ours, pdb.positions)
    peer_scale = 96.4853 / EV_TO_KJ_PER_MOL
    assert e_peer == pytest.approx(e_ours * peer_scale, rel=1e-10)
    np.testing.assert_allclose(f_peer, f_ours * peer_scale, rtol=1e-7, atol=1e-7 * np.abs(f_ours).max())
    assert e_peer != pytest.approx(e_ours, rel=1e-8)  # the constants do differ: the comparison is sharp


def test_an_adapted_model_file_runs_without_the_adapter(model, model_file, dimer_in_water, tmp_path, capsys):
    check_adapted_model_file("mace", model_file, MACEPotential(model), dimer_in_water, tmp_path / "mlmm-mace.pt")
    assert "elements [1, 6, 8], cutoff 0.5 nm" in capsys.readouterr().out


def test_ml_charges_scheme_with_qeq_charges(model, dimer_in_water):
    check_qeq_charges_scheme(MACEPotential(model), dimer_in_water)


def test_unsupported_elements_and_other_modules_are_refused(model, dimer_in_water):
    pdb, mm_system, _ = dimer_in_water
    with pytest.raises(TypeError, match="expected a MACE model"):
        MACEPotential(torch.nn.Linear(3, 1))
    with pytest.raises(ValueError, match="atomic number 8, which the potential does not support"):
        only_hydrogen = MACEPotential(model)
        only_hydrogen.supported_elements = [1, 6]
        mlmm.create_mixed_system(pdb.topology, mm_system, "resname FMA", only_hydrogen)
