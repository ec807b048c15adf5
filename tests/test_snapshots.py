"""Solvent snapshots (mlmm.data.snapshots) against brute-force minimum-image searches in triclinic boxes."""

from __future__ import annotations

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as u
import pytest

from mlmm.data.snapshots import _minimum_image, mm_environment, snapshots_of_frames, solvent_snapshots


@pytest.fixture(scope="module")
def water_box():
    """81 TIP3P waters in a rhombic dodecahedron (triclinic box, widths >= 1.13 nm), equilibrated briefly on CPU."""
    forcefield = app.ForceField("amber14/tip3p.xml")
    topology = app.Topology()
    residue = topology.addResidue("HOH", topology.addChain())
    oxygen = topology.addAtom("O", app.element.oxygen, residue)
    for name in ("H1", "H2"):
        topology.addBond(oxygen, topology.addAtom(name, app.element.hydrogen, residue))
    water = [[0.0, 0.0, 0.0], [0.09572, 0.0, 0.0], [-0.024, 0.0927, 0.0]] * u.nanometer
    modeller = app.Modeller(topology, water)
    modeller.addSolvent(forcefield, model="tip3p", padding=0.8 * u.nanometer, boxShape="dodecahedron")
    system = forcefield.createSystem(modeller.topology, nonbondedMethod=app.PME, nonbondedCutoff=0.55 * u.nanometer,
                                     constraints=app.HBonds, rigidWater=True)
    integrator = openmm.LangevinMiddleIntegrator(300 * u.kelvin, 5 / u.picosecond, 0.002 * u.picosecond)
    integrator.setRandomNumberSeed(11)
    simulation = app.Simulation(modeller.topology, system, integrator, openmm.Platform.getPlatformByName("CPU"),
                                {"Threads": "2"})
    simulation.context.setPositions(modeller.positions)
    simulation.minimizeEnergy(maxIterations=100)
    simulation.step(50)
    return simulation


def brute_force_distance(a, b, box):
    """Shortest distance between atom sets a [p, 3] and b [q, 3] over 125 periodic images (n = -2..2)."""
    shifts = np.array(np.meshgrid(*[np.arange(-2, 3)] * 3, indexing="ij")).reshape(3, -1).T @ box
    delta = b[None, :, None, :] + shifts[None, None] - a[:, None, None, :]
    return np.linalg.norm(delta, axis=-1).min()


def test_solvent_snapshots_hold_whole_residues_within_the_cutoff(water_box):
    simulation, cutoff = water_box, 0.5
    n_atoms = simulation.system.getNumParticles()
    assert 200 <= n_atoms <= 500
    state = simulation.context.getState(getPositions=True)
    x = state.getPositions(asNumpy=True).value_in_unit(u.nanometer)
    box = state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(u.nanometer)
    assert abs(box[2, 0]) > 0.1  # triclinic
    # the ML water: the one closest to a face of the box, so that its environment crosses the boundary
    fractional = x[::3] @ np.linalg.inv(box)
    ml_residue = int(np.argmin(np.minimum(fractional % 1, 1 - fractional % 1).min(1)))
    ml = [3 * ml_residue, 3 * ml_residue + 1, 3 * ml_residue + 2]
    result = solvent_snapshots(simulation, f"resid {ml_residue}", cutoff, n_snapshots=3, interval=10)

    s, m_max = result["mm_mask"].shape
    assert s == 3 and result["positions"].shape == (3, 3, 3) and result["mm_positions"].shape == (3, m_max, 3)
    np.testing.assert_array_equal(result["ml_atoms"], ml)
    np.testing.assert_array_equal(result["species"], [8, 1, 1])
    counts = result["mm_mask"].sum(1)
    assert counts.max() == m_max and (counts % 3 == 0).all() and counts.min() > 0
    nonbonded = next(f for f in simulation.system.getForces() if isinstance(f, openmm.NonbondedForce))
    charges = np.array([nonbonded.getParticleParameters(i)[0].value_in_unit(u.elementary_charge)
                        for i in range(n_atoms)])
    for k in range(s):
        mask = result["mm_mask"][k]
        assert mask[:counts[k]].all() and not mask[counts[k]:].any()  # real atoms first, then padding
        atoms = result["mm_atoms"][k][mask]
        np.testing.assert_array_equal(result["mm_charges"][k][mask], charges[atoms])
        assert (result["mm_atoms"][k][~mask] == -1).all()
        np.testing.assert_array_equal(result["mm_species"][k][mask], np.tile([8, 1, 1], mask.sum() // 3))
        np.testing.assert_array_equal(result["mm_anchor"][k][mask], np.repeat(np.arange(0, mask.sum(), 3), 3))
        assert (result["mm_charges"][k][~mask] == 0).all() and (result["mm_positions"][k][~mask] == 0).all()
        assert not set(atoms) & set(ml)
        # whole waters: rigid TIP3P geometry, neutral, and each within the cutoff of the returned ML water
        waters = result["mm_positions"][k][mask].reshape(-1, 3, 3)
        np.testing.assert_allclose(np.linalg.norm(waters[:, 1:] - waters[:, :1], axis=-1), 0.09572, atol=1e-5)
        np.testing.assert_allclose(np.linalg.norm(waters[:, 1] - waters[:, 2], axis=-1), 0.15139, atol=1e-4)
        np.testing.assert_allclose(result["mm_charges"][k][mask].reshape(-1, 3).sum(1), 0.0, atol=1e-6)
        ml_x = result["positions"][k]
        np.testing.assert_allclose(np.linalg.norm(ml_x[1:] - ml_x[0], axis=1), 0.09572, atol=1e-5)
        closest = np.linalg.norm(waters[:, :, None] - ml_x[None, None], axis=-1).min(axis=(1, 2))
        assert (closest <= cutoff).all()

    # the last snapshot against a brute-force minimum-image search over every water of the box
    state = simulation.context.getState(getPositions=True)
    x = state.getPositions(asNumpy=True).value_in_unit(u.nanometer)
    box = state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(u.nanometer)
    expected = [r for r in range(n_atoms // 3) if r != ml_residue
                and brute_force_distance(x[ml], x[3 * r:3 * r + 3], box) <= cutoff]
    atoms = result["mm_atoms"][-1][result["mm_mask"][-1]]
    np.testing.assert_array_equal(atoms[::3] // 3, expected)
    # returned positions are the raw ones moved by one lattice vector per water
    shift = (result["mm_positions"][-1][result["mm_mask"][-1]] - x[atoms]) @ np.linalg.inv(box)
    np.testing.assert_allclose(shift, np.round(shift), atol=1e-9)
    assert (np.abs(np.diff(np.round(shift).reshape(-1, 3, 3), axis=1)) == 0).all()
    assert np.abs(np.round(shift)).max() >= 1  # the boundary was crossed: the wrapping path was exercised
    # the same snapshot from a stored frame (as a trajectory holds it)
    stored = snapshots_of_frames(simulation.topology, simulation.system, ml, cutoff,
                                 [(x, box, result["steps"][-1], result["times"][-1])])
    n = stored["mm_mask"].shape[1]
    assert n == counts[-1] and stored["steps"][0] == result["steps"][-1]
    for key in ("positions", "mm_positions", "mm_charges", "mm_atoms", "mm_species", "mm_anchor", "box"):
        np.testing.assert_array_equal(stored[key][0], result[key][-1][:n] if key.startswith("mm") else result[key][-1])
    with pytest.raises(ValueError, match="no box"):
        snapshots_of_frames(simulation.topology, simulation.system, ml, cutoff, [(x, None, 0, 0.0)])
    with pytest.raises(ValueError, match="no frames"):
        snapshots_of_frames(simulation.topology, simulation.system, ml, cutoff, [])


def test_mm_environment_is_unchanged_when_atoms_are_wrapped_differently(water_box):
    state = water_box.context.getState(getPositions=True)
    x = state.getPositions(asNumpy=True).value_in_unit(u.nanometer)
    box = state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(u.nanometer)
    residues = [[i, i + 1, i + 2] for i in range(3, len(x), 3)]
    reference = mm_environment(x, box, [0, 1, 2], residues, 0.5, ml_bonds=[(0, 1), (0, 2)])
    rng = np.random.default_rng(8)
    scrambled = x + rng.integers(-2, 3, size=(len(x), 3)) @ box  # every atom in some other image
    ml_x, atoms, mm_x = mm_environment(scrambled, box, [0, 1, 2], residues, 0.5, ml_bonds=[(0, 1), (0, 2)])
    np.testing.assert_array_equal(atoms, reference[1])
    offset = ml_x[0] - reference[0][0]  # the whole cluster may sit in another image, nothing else changes
    np.testing.assert_allclose(offset @ np.linalg.inv(box), np.round(offset @ np.linalg.inv(box)), atol=1e-9)
    np.testing.assert_allclose(ml_x - offset, reference[0], atol=1e-9)
    np.testing.assert_allclose(mm_x - offset, reference[2], atol=1e-9)
    with pytest.raises(ValueError, match="half the smallest cell width"):
        mm_environment(x, box, [0, 1, 2], residues, 2.0)
    # without a box, plain distances decide
    plain = mm_environment(x, None, [0, 1, 2], residues, 0.5)
    near = [r for r in residues if np.linalg.norm(x[r][:, None] - x[:3][None], axis=-1).min() <= 0.5]
    np.testing.assert_array_equal(plain[1], np.concatenate(near))


def test_minimum_image_is_exact_in_a_maximally_skewed_box():
    """OpenMM's most skewed reduced box (ax = 2|bx| = 2|cx|, by = 2|cy|): images against a brute-force search."""
    box = np.array([[2.0, 0.0, 0.0], [1.0, 1.8, 0.0], [-1.0, 0.9, 1.7]])
    rng = np.random.default_rng(9)
    delta = rng.uniform(-1.5, 1.5, (20000, 3)) @ box
    shifts = np.array(np.meshgrid(*[np.arange(-4, 5)] * 3, indexing="ij")).reshape(3, -1).T @ box
    shortest = np.linalg.norm(delta[:, None] + shifts[None], axis=-1).min(1)
    image = _minimum_image(delta, box)
    np.testing.assert_allclose(np.linalg.norm(image, axis=1), shortest, atol=1e-12)
    lattice = (image - delta) @ np.linalg.inv(box)
    np.testing.assert_allclose(lattice, np.round(lattice), atol=1e-9)  # moved by lattice vectors only
    # selection of single-atom "residues" around a two-atom ML region, against brute force
    points = rng.uniform(0, 1, (400, 3)) @ box
    ml = np.array([[0.1, 0.1, 0.1], [0.05, 0.0, 0.02]])
    positions = np.concatenate([ml, points])
    _, atoms, placed = mm_environment(positions, box, [0, 1], [[i] for i in range(2, 402)], 0.6)
    expected = [i + 2 for i, p in enumerate(points) if brute_force_distance(ml, p[None], box) <= 0.6]
    np.testing.assert_array_equal(atoms, expected)
    assert (np.linalg.norm(placed[:, None] - ml[None], axis=-1).min(1) <= 0.6).all()
