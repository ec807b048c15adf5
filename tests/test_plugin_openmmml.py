"""openmm-ml's MLPotential with the "mlmm" potential and mlmm's embeddings: the same System as mlmm's API."""


import numpy as np
import openmm
import openmm.app as app
import openmm.unit as u
import pytest
import torch

import mlmm
from conftest import WATER_DIR, WATER_MODELS, evaluate
from mlmm.potentials import load_potential

openmmml = pytest.importorskip("openmmml")
MLPotential = openmmml.MLPotential

ML_ATOMS = [0, 1, 2]


@pytest.fixture(scope="module")
def water_box():
    """One water (ML) in TIP3P, PME 0.9 nm, rigid MM waters: constraints between ML atoms exist."""
    pdb = app.PDBFile(str(WATER_DIR / "water-tip3p.pdb"))
    system = app.ForceField("amber14/tip3p.xml").createSystem(pdb.topology, nonbondedMethod=app.PME,
                                                              nonbondedCutoff=0.9 * u.nanometer)
    return pdb, system


def constraints(system: openmm.System) -> list[tuple[int, int]]:
    return sorted(tuple(system.getConstraintParameters(i)[:2]) for i in range(system.getNumConstraints()))


@pytest.mark.parametrize("embedding", list(WATER_MODELS))
def test_openmmml_builds_the_same_mixed_system_as_mlmm(water_box, embedding):
    """"mechanical" is openmm-ml's own System surgery around the mlmm force; the others are mlmm's schemes."""
    pdb, mm_system = water_box
    peer = MLPotential("mlmm", model=WATER_MODELS[embedding]).createMixedSystem(pdb.topology, mm_system, ML_ATOMS,
                                                                         embedding=embedding)
    ours = mlmm.create_mixed_system(pdb.topology, mm_system, ML_ATOMS, WATER_MODELS[embedding], embedding=embedding)
    assert constraints(peer) == constraints(ours) and len(constraints(ours)) == len(constraints(mm_system)) - 3
    e_peer, f_peer = evaluate(peer, pdb.positions)
    e_ours, f_ours = evaluate(ours, pdb.positions)
    e_mm, _ = evaluate(mm_system, pdb.positions)
    assert abs(e_peer - e_mm) > 1.0  # the ML force is there
    assert e_peer == pytest.approx(e_ours, rel=1e-9, abs=1e-6)
    np.testing.assert_allclose(f_peer, f_ours, rtol=1e-7, atol=1e-6 * np.abs(f_ours).max())


def test_interpolation_reaches_the_force_field_at_lambda_zero(water_box):
    pdb, mm_system = water_box
    peer = MLPotential("mlmm", model=WATER_MODELS["electrostatic"]).createMixedSystem(
        pdb.topology, mm_system, ML_ATOMS, embedding="electrostatic", interpolate=True)
    e_mm, f_mm = evaluate(mm_system, pdb.positions)
    e_zero, f_zero = evaluate(peer, pdb.positions, parameters={"lambda_interpolate": 0.0})
    e_one, _ = evaluate(peer, pdb.positions, parameters={"lambda_interpolate": 1.0})
    e_mixed, _ = evaluate(mlmm.create_mixed_system(pdb.topology, mm_system, ML_ATOMS,
                                                             WATER_MODELS["electrostatic"], embedding="electrostatic"),
                                   pdb.positions)
    assert e_zero == pytest.approx(e_mm, rel=1e-9)
    np.testing.assert_allclose(f_zero, f_mm, atol=1e-6 * np.abs(f_mm).max())
    assert e_one == pytest.approx(e_mixed, rel=1e-9)


def test_create_system_is_the_model_alone():
    pdb = app.PDBFile(str(WATER_DIR / "water.pdb"))
    system = MLPotential("mlmm", model=WATER_MODELS["mechanical"]).createSystem(pdb.topology)
    energy, forces = evaluate(system, pdb.positions)
    model, _ = load_potential(WATER_MODELS["mechanical"])
    positions = torch.tensor(pdb.positions.value_in_unit(u.nanometer), dtype=torch.float64, requires_grad=True)
    expected = model(torch.tensor([8, 1, 1]), positions)  # a float64 model
    expected.backward()
    assert energy == pytest.approx(float(expected.detach()), rel=1e-9)
    np.testing.assert_allclose(forces, -positions.grad.numpy(), rtol=1e-7, atol=1e-9)


def test_the_mlmm_embeddings_are_listed_and_need_an_mlmm_model(water_box):
    pdb, mm_system = water_box
    listed = MLPotential("mlmm", model=WATER_MODELS["mechanical"]).getSupportedEmbeddings()
    assert {"mechanical", "mechanical-ml-charges", "electrostatic", "buffer"} <= set(listed)

    class OtherImpl(openmmml.mlpotential.MLPotentialImpl):
        pass

    class OtherFactory(openmmml.mlpotential.MLPotentialImplFactory):
        def createImpl(self, name, **args):
            return OtherImpl()

    MLPotential.registerImplFactory("not-mlmm", OtherFactory())
    with pytest.raises(ValueError, match="needs an mlmm model: MLPotential\\('mlmm', model=...\\); this potential "
                                         "is a OtherImpl"):
        MLPotential("not-mlmm").createMixedSystem(pdb.topology, mm_system, ML_ATOMS, embedding="electrostatic")
    with pytest.raises(ValueError, match="needs model="):
        MLPotential("mlmm")
    with pytest.raises(ValueError, match="trained for embedding='electrostatic'"):
        MLPotential("mlmm", model=WATER_MODELS["electrostatic"]).createMixedSystem(pdb.topology, mm_system, ML_ATOMS)
    with pytest.raises(ValueError, match="unknown argument"):
        MLPotential("mlmm", model=WATER_MODELS["mechanical"]).createMixedSystem(pdb.topology, mm_system, ML_ATOMS,
                                                                          cutoff=1.0)
