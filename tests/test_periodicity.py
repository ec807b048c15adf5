"""Unwrapped coordinates: a solute split across the box and a triclinic box give the same physics."""

import numpy as np
import openmm.app as app
import openmm.unit as u
import pytest

import mlmm
from mlmm.potentials import QEqCharges
from conftest import DIMER_DIR, SOLUTE, evaluate


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


def test_ml_region_of_separate_molecules_split_across_the_box(forcefield, solvated):
    """Each ML molecule is made whole on its own: wrapping atoms one by one changes nothing."""
    from mlmm.potentials import ForceFieldPotential

    system = forcefield.createSystem(solvated.topology, nonbondedMethod=app.PME, nonbondedCutoff=0.9 * u.nanometer,
                                     constraints=None, rigidWater=False)
    ml = list(range(22, 31))  # three waters up to 2.7 nm apart in the 3 nm box
    numbers = [a.element.atomic_number for a in solvated.topology.atoms()]
    potential = ForceFieldPotential.from_system(system, ml, [numbers[i] for i in ml])
    mixed = mlmm.create_mixed_system(solvated.topology, system, ml, potential)
    box = np.array([v.value_in_unit(u.nanometer) for v in system.getDefaultPeriodicBoxVectors()])
    whole = np.asarray(solvated.positions.value_in_unit(u.nanometer))
    whole = whole + np.diag(box) - whole[22] - 0.02  # the first ML oxygen 0.02 nm inside the box corner
    wrapped = whole.copy()  # only ML atoms: MM bonded forces need whole MM molecules (no PBC)
    wrapped[ml] -= np.floor(whole[ml] / np.diag(box)) * np.diag(box)
    moved = [i for i in ml if not np.allclose(wrapped[i], whole[i])]
    assert moved and len(moved) < len(ml)  # some ML atoms wrapped apart from their molecule
    e_whole, f_whole = evaluate(mixed, whole)
    e_wrapped, f_wrapped = evaluate(mixed, wrapped)
    assert np.isfinite(e_whole) and abs(e_wrapped - e_whole) <= 1e-6 * abs(e_whole)
    np.testing.assert_allclose(f_wrapped, f_whole, atol=1e-3, rtol=0)


@pytest.mark.parametrize("triclinic", [False, True])
def test_make_whole_keeps_molecules_intact_at_half_a_box_from_the_first_atom(triclinic):
    """A molecule straddling the half-box distance from atom 0 is not torn apart."""
    import torch

    from mlmm.embedding.pbc import make_whole

    d = 3.0
    box = np.array([[d, 0, 0], [d / 3, 2 * np.sqrt(2) * d / 3, 0], [-d / 3, np.sqrt(2) * d / 3, np.sqrt(6) * d / 3]]
                   ) if triclinic else np.diag([d, d, d])
    # molecule A: atoms 0-1; molecule B: atoms 2-4 (a bent triatomic) centred half a box away along a
    a = np.array([[0.1, 0.1, 0.1], [0.2, 0.1, 0.1]])
    centre = a[0] + 0.5 * box[0]
    b = centre + np.array([[0.0, 0.0, 0.0], [-0.09, 0.03, 0.0], [0.09, 0.03, 0.0]])
    positions = np.vstack([a, b])
    positions[3] += box[1]  # unwrapped input: an atom of B one box vector away
    roots = torch.tensor([0, 0, 2, 2, 2])
    whole = make_whole(torch.tensor(positions), torch.tensor(box), roots).numpy()
    bonds = [(0, 1), (2, 3), (2, 4)]
    for i, j in bonds:
        assert np.linalg.norm(whole[i] - whole[j]) < 0.2
    assert np.linalg.norm(whole[2] - whole[0]) <= 0.5 * d + 1e-9


@pytest.mark.parametrize("cutoff", [0.6, 1.0, 1.6])
def test_environment_screen_is_exact_within_the_cutoff_in_a_triclinic_box(cutoff):
    """The bounding-sphere screen against brute force over all 27 neighbouring images: distances inside the
    cutoff exact, the others never below it. At 1.6 nm the cutoff plus the cluster's radius exceed half the
    smallest box width (1.75 nm), where the sphere's bound would need true images: the dense screen runs.
    With fixed shapes (as compiled graphs trace it) only the ``capacity`` smallest bounds get exact
    distances: every molecule inside must then be below the cutoff and, unless more than ``capacity``
    are (the schemes' overflow check), among the ``capacity`` smallest values, which the schemes select
    and evaluate exactly; a capacity below the number inside, and the 1.6 nm case, must overflow, a
    capacity of 1000 (a third of the box) must not below 1.6 nm and gives every distance inside exactly."""
    import torch

    from mlmm.embedding.environment import nearest_distances
    from mlmm.potentials.neighbors import fixed_shape_tracing

    rng = np.random.default_rng(5)
    box = np.array([[4.0, 0.0, 0.0], [1.3, 3.8, 0.0], [-1.1, 1.2, 3.5]])  # OpenMM reduced form
    ml = np.array([0.05, 0.1, 0.02]) + rng.normal(scale=0.25, size=(12, 3))  # a cluster at a corner
    molecules = rng.uniform(0, 1, size=(3000, 3)) @ box
    positions = torch.tensor(np.vstack([ml, molecules]))
    anchors = torch.arange(12, 3012)
    shifts = np.array([[i, j, k] for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)]) @ box
    brute = np.linalg.norm(molecules[:, None, None] - ml[None, :, None] - shifts[None, None], axis=-1).min((1, 2))
    for screen in (nearest_distances, torch.jit.script(nearest_distances)):
        nearest = screen(positions[:12], positions, torch.tensor(box), anchors, cutoff).numpy()
        inside = brute < cutoff
        assert 50 < inside.sum() < 3000
        np.testing.assert_allclose(nearest[inside], brute[inside], rtol=1e-12)
        assert (nearest[~inside] >= cutoff).all()
        assert np.array_equal(nearest < cutoff, inside)
    for capacity in (int(inside.sum()) - 1, int(inside.sum()) + 10, 1000):
        with fixed_shape_tracing():
            bounded = nearest_distances(positions[:12], positions, torch.tensor(box), anchors, cutoff, capacity).numpy()
        assert (bounded[inside] <= brute[inside] + 1e-12).all() and (bounded[inside] < cutoff).all()  # or a bound
        overflow = (bounded < cutoff).sum() > capacity  # what the schemes turn into NaN (then run eagerly)
        if not overflow:  # then the capacity smallest (what the schemes select) hold every molecule inside
            assert set(np.flatnonzero(inside)) <= set(np.argsort(bounded)[:capacity])
        if capacity < inside.sum():
            assert overflow
        elif capacity == 1000:  # more than the bounds below the cutoff: all inside exact
            assert overflow == (cutoff == 1.6)
            if cutoff < 1.6:
                np.testing.assert_allclose(bounded[inside], brute[inside], rtol=1e-12)
    if cutoff == 1.6:  # no valid bound: every distance 0
        assert (bounded == 0.0).all()


def remove_connections(system) -> None:
    """Remove the mixed system's bonds without energy that hold its ML molecules together."""
    from mlmm.embedding.surgery import CONNECTIONS_NAME

    system.removeForce(next(k for k, f in enumerate(system.getForces()) if f.getName() == CONNECTIONS_NAME))


def test_wrapped_positions_keep_the_ml_molecules_whole(solvated, pme_system, ff_potential):
    """The ML region's bonds and constraints are gone from the mixed system, but OpenMM still wraps its
    molecules whole (bonds without energy): frames of a run show the solute intact across the boundary.
    Without those bonds its atoms are wrapped one by one."""
    import openmm

    box = np.array([v.value_in_unit(u.nanometer) for v in pme_system.getDefaultPeriodicBoxVectors()])
    straddling = np.asarray(solvated.positions.value_in_unit(u.nanometer))
    straddling[SOLUTE] += -straddling[SOLUTE].mean(0) + box[0] + box[1] + box[2]  # whole, across the corner
    mixed = mlmm.create_mixed_system(solvated.topology, pme_system, SOLUTE, ff_potential)
    without = mlmm.create_mixed_system(solvated.topology, pme_system, SOLUTE, ff_potential)
    remove_connections(without)
    bonds = [(b.atom1.index, b.atom2.index) for b in solvated.topology.bonds() if b.atom1.index in SOLUTE]
    for system, whole in ((pme_system, True), (mixed, True), (without, False)):
        context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
        context.setPositions(straddling)
        state = context.getState(getPositions=True, enforcePeriodicBox=True)
        wrapped = state.getPositions(asNumpy=True).value_in_unit(u.nanometer)
        assert (max(np.linalg.norm(wrapped[i] - wrapped[j]) for i, j in bonds) < 0.2) == whole
    assert evaluate(without, straddling)[0] == pytest.approx(evaluate(mixed, straddling)[0], abs=1e-9)  # no energy


def test_ml_residues_without_bonds_are_wrapped_whole(dimer_in_water):
    """formic-acid.xml gives the dimer no bonds or constraints, so OpenMM alone wraps its atoms one by one;
    the mixed system ties each ML residue together."""
    import openmm

    from mlmm.embedding.surgery import CONNECTIONS_NAME

    pdb, system, fma = dimer_in_water
    box = np.array([v.value_in_unit(u.nanometer) for v in system.getDefaultPeriodicBoxVectors()])
    straddling = np.asarray(pdb.positions.value_in_unit(u.nanometer))
    straddling[fma] += -straddling[fma].mean(0) + box[0] + box[1] + box[2]
    mixed = mlmm.create_mixed_system(pdb.topology, system, fma, str(DIMER_DIR / "model" / "model.pt"))
    assert sum(f.getName() == CONNECTIONS_NAME for f in mixed.getForces()) == 1
    for tested, whole in ((system, False), (mixed, True)):
        context = openmm.Context(tested, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
        context.setPositions(straddling)
        wrapped = context.getState(getPositions=True, enforcePeriodicBox=True).getPositions(asNumpy=True)
        wrapped = wrapped.value_in_unit(u.nanometer)
        spans = [np.linalg.norm(wrapped[atoms] - wrapped[atoms[0]], axis=1).max() for atoms in (fma[:5], fma[5:])]
        assert (max(spans) < 0.3) == whole


def test_a_barostat_moves_the_ml_molecules_whole(dimer_in_water):
    """MonteCarloBarostat scales the centres of OpenMM's molecules, which the bonds without energy make of
    each ML residue: an accepted volume change leaves the formic acid molecules' shapes as they were, while
    without those bonds every atom's position is scaled on its own."""
    import openmm

    pdb, system, fma = dimer_in_water
    mixed = mlmm.create_mixed_system(pdb.topology, system, fma, str(DIMER_DIR / "model" / "model.pt"))
    loose = mlmm.create_mixed_system(pdb.topology, system, fma, str(DIMER_DIR / "model" / "model.pt"))
    remove_connections(loose)
    changes = {}
    for name, tested in (("whole", mixed), ("loose", loose)):
        barostat = openmm.MonteCarloBarostat(1000.0 * u.bar, 300 * u.kelvin, 1)
        barostat.setRandomNumberSeed(7)
        tested.addForce(barostat)
        integrator = openmm.VerletIntegrator(1e-7)  # no motion to speak of: only the barostat moves atoms
        context = openmm.Context(tested, integrator, openmm.Platform.getPlatformByName("CPU"))
        context.setPositions(pdb.positions)
        width = pdb.topology.getPeriodicBoxVectors()[0][0].value_in_unit(u.nanometer)
        for _ in range(40):  # until a volume change is accepted
            before = context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(u.nanometer)
            integrator.step(1)
            state = context.getState(getPositions=True)
            if state.getPeriodicBoxVectors()[0][0].value_in_unit(u.nanometer) != width:
                break
        scale = state.getPeriodicBoxVectors()[0][0].value_in_unit(u.nanometer) / width
        assert abs(scale - 1.0) > 1e-4  # a move was accepted
        after = state.getPositions(asNumpy=True).value_in_unit(u.nanometer)
        shape = [np.linalg.norm(x[fma[:5]] - x[fma[0]], axis=1) for x in (before, after)]
        # distances within a molecule change by (scale - 1) times their length when its atoms move alone
        changes[name] = np.abs(shape[1] - shape[0]).max() / (abs(scale - 1.0) * shape[0].max())
    assert changes["whole"] < 1e-6 and changes["loose"] > 0.5
