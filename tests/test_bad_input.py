"""Bad input gives a clear error naming the offending value and the fix."""

import openmm
import openmm.app as app
import openmm.unit as u
import pytest

import mlmm
from mlmm.potentials import QEqCharges
from conftest import SOLUTE, ZeroPotential


class OxygenOnly(ZeroPotential):
    supported_elements = [8]


@pytest.mark.parametrize("ml_atoms,message", [
    ([], "ml_atoms is empty"),
    ("resname XYZ", "matches no atom"),
    ("resname and and", "not a valid MDTraj selection"),
    ([0, 1, 99999], "outside 0..2601"),
    ([0, 0, 1], "more than once"),
])
def test_bad_selection(ml_atoms, message, solvated, pme_system):
    with pytest.raises(ValueError, match=message):
        mlmm.create_mixed_system(solvated.topology, pme_system, ml_atoms, ZeroPotential())


def test_element_unsupported_by_the_potential(solvated, pme_system):
    with pytest.raises(ValueError, match=r"ML atom 0 has atomic number 6, which the potential does not support"):
        mlmm.create_mixed_system(solvated.topology, pme_system, SOLUTE, OxygenOnly())


def test_ml_atoms_bonded_to_mm_atoms(solvated, pme_system):
    with pytest.raises(ValueError, match=r"covalently bonded to MM atom .*link atoms are not supported"):
        mlmm.create_mixed_system(solvated.topology, pme_system, "resname ALA", ZeroPotential())


def test_cutoff_larger_than_half_the_box(solvated, pme_system, ff_potential):
    with pytest.raises(ValueError, match=r"cutoff=1.6 nm is larger than half the smallest box width \(1.5"):
        mlmm.create_mixed_system(solvated.topology, pme_system, SOLUTE, QEqCharges(ff_potential),
                                 "mechanical-ml-charges", cutoff=1.6 * u.nanometer)


def test_topology_and_system_atom_counts_differ(solvated, solute_pdb, vacuum_solute_system):
    with pytest.raises(ValueError, match="the topology has 2602 atoms but the system has 22 particles"):
        mlmm.create_mixed_system(solvated.topology, vacuum_solute_system, SOLUTE, ZeroPotential())


def test_virtual_site_in_ml_region():
    forcefield = app.ForceField("amber14/tip4pew.xml")
    pdb = app.PDBFile(str(__import__("pathlib").Path(app.__file__).parent / "data" / "tip4pew.pdb"))
    system = forcefield.createSystem(pdb.topology, nonbondedMethod=app.NoCutoff)
    with pytest.raises(ValueError, match="ML atom 3 is a virtual site"):
        mlmm.create_mixed_system(pdb.topology, system, [0, 1, 2, 3], ZeroPotential())
    with pytest.raises(ValueError, match="virtual site 3 is built from ML atoms"):
        mlmm.create_mixed_system(pdb.topology, system, [0, 1, 2], ZeroPotential())


def test_unknown_embedding_transport_and_option(solvated, pme_system, ff_potential):
    with pytest.raises(ValueError, match="embedding='electro' is not one of"):
        mlmm.create_mixed_system(solvated.topology, pme_system, SOLUTE, ZeroPotential(), "electro")
    with pytest.raises(ValueError, match="transport='cuda' is not one of"):
        mlmm.create_mixed_system(solvated.topology, pme_system, SOLUTE, ZeroPotential(), transport="cuda")
    with pytest.raises(ValueError, match=r"option\(s\) \['cutoff'\] do not apply to embedding='mechanical'"):
        mlmm.create_mixed_system(solvated.topology, pme_system, SOLUTE, ZeroPotential(), cutoff=0.8)
    with pytest.raises(ValueError, match="needs a potential that predicts charges"):
        mlmm.create_mixed_system(solvated.topology, pme_system, SOLUTE, ff_potential, "mechanical-ml-charges")
    with pytest.raises(TypeError, match="not compatible with"):
        mlmm.create_mixed_system(solvated.topology, pme_system, SOLUTE, QEqCharges(ff_potential),
                                 "mechanical-ml-charges", cutoff=1.0 * u.kilojoule_per_mole)
    with pytest.raises(ValueError, match="force_group=40 must be an integer from 0 to 31"):
        mlmm.create_mixed_system(solvated.topology, pme_system, SOLUTE, ZeroPotential(), force_group=40)


def test_unsupported_force_in_mm_system(forcefield, solvated):
    system = forcefield.createSystem(solvated.topology, nonbondedMethod=app.NoCutoff)
    system.addForce(openmm.GBSAOBCForce())
    with pytest.raises(ValueError, match="GBSAOBCForce .* is not supported"):
        mlmm.create_mixed_system(solvated.topology, system, SOLUTE, ZeroPotential())


def test_potential_that_is_not_a_module(solvated, pme_system):
    with pytest.raises(TypeError, match="potential must be a torch.nn.Module"):
        mlmm.create_mixed_system(solvated.topology, pme_system, SOLUTE, lambda s, x: x.sum())
