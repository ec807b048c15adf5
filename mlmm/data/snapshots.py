"""Solvent snapshots for embedding data: the ML region and the whole MM residues around it, from MD.

Positions in nm, charges in e. Periodic boxes are OpenMM's (reduced, possibly triclinic)
box vectors as rows [3, 3]; coordinates need not be wrapped.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence, Tuple

import numpy as np
import torch

from mlmm.data.calculators import outer_potential
from mlmm.data.dataset import Dataset
from mlmm.potentials.neighbors import check_cell

__all__ = ["buffer_clusters", "empty_buffer_frames", "mm_environment", "snapshots_of_frames", "solvent_snapshots",
           "switched_charges", "weighted_environment", "without_outer_charges"]

# the 27 lattice translations n_a a + n_b b + n_c c with n in {-1, 0, 1}, as coefficients
_NEIGHBOURS = np.array(np.meshgrid([-1, 0, 1], [-1, 0, 1], [-1, 0, 1], indexing="ij")).reshape(3, -1).T.astype(float)


def _check_box(box, cutoff: float) -> np.ndarray:
    """The box [3, 3] (rows a, b, c; nm) after :func:`mlmm.potentials.neighbors.check_cell`."""
    box = np.asarray(box, dtype=np.float64)
    check_cell(torch.as_tensor(box), cutoff)
    return box


def _minimum_image(delta: np.ndarray, box: Optional[np.ndarray]) -> np.ndarray:
    """Displacements [..., 3] (nm) shifted to their shortest periodic image, for any length.

    Unlike :func:`mlmm.potentials.neighbors.minimum_image` (exact for the short pair vectors
    of a model cutoff), this also images vectors of arbitrary length exactly, as a snapshot's
    distance screen over whole residues needs: fractional coordinates are rounded to the
    nearest lattice point, then the 27 neighbouring lattice translations are tried.
    """
    if box is None:
        return delta
    fractional = delta @ np.linalg.inv(box)
    reduced = (fractional - np.round(fractional)) @ box
    candidates = reduced[..., None, :] + _NEIGHBOURS @ box  # [..., 27, 3]
    best = np.argmin((candidates ** 2).sum(-1), axis=-1)
    return np.take_along_axis(candidates, best[..., None, None], axis=-2)[..., 0, :]


def _whole(positions: np.ndarray, box: Optional[np.ndarray], bonds: Sequence[Tuple[int, int]]) -> np.ndarray:
    """Make a group whole: walk its bonds, imaging each atom next to the atom it is bonded to.

    Atoms not reached through bonds from atom 0 (another molecule of the group) are imaged,
    with their own bonded partners, next to atom 0. ``bonds`` index into ``positions``.
    """
    if box is None:
        return positions.copy()
    n = len(positions)
    neighbours: list = [[] for _ in range(n)]
    for i, j in bonds:
        neighbours[i].append(j)
        neighbours[j].append(i)
    out = positions.copy()
    placed = np.zeros(n, dtype=bool)
    for root in range(n):
        if placed[root]:
            continue
        if root:
            out[root] = out[0] + _minimum_image(positions[root] - out[0], box)
        placed[root] = True
        stack = [root]
        while stack:
            i = stack.pop()
            for j in neighbours[i]:
                if not placed[j]:
                    out[j] = out[i] + _minimum_image(positions[j] - positions[i], box)
                    placed[j] = True
                    stack.append(j)
    return out


def mm_environment(positions: np.ndarray, box: Optional[np.ndarray], ml_atoms: Sequence[int],
                   residues: Sequence[Sequence[int]], cutoff: float,
                   ml_bonds: Sequence[Tuple[int, int]] = ()) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ML region made whole and the whole MM residues within ``cutoff`` of it, imaged next to it.

    A residue is selected when any of its atoms lies within ``cutoff`` of any ML atom by
    minimum image. It is returned whole and shifted by one lattice vector so that its atom
    closest to the ML region sits at that minimum-image position, the others imaged next to
    that atom (residues must span less than half the box).

    Parameters
    ----------
    positions : ndarray [N, 3]
        All atoms (nm), wrapped or not.
    box : ndarray [3, 3] or None
        Periodic box vectors as rows (nm); None for a non-periodic system.
    ml_atoms : sequence of int
        Indices of the ML atoms.
    residues : sequence of sequences of int
        Atom indices of every MM residue (molecule) to consider; none may contain ML atoms.
    cutoff : float
        Selection cutoff (nm), at most half the smallest box width.
    ml_bonds : sequence of (int, int)
        Bonds within the ML region as pairs of system atom indices, used to make it whole
        (without them every ML atom is imaged next to the first one).

    Returns
    -------
    ml_positions : ndarray [n_ml, 3]
        The whole ML region (nm), in the order of ``ml_atoms``.
    mm_atoms : ndarray of int64 [m]
        System indices of the selected MM atoms, residue by residue in the order of ``residues``.
    mm_positions : ndarray [m, 3]
        Their positions (nm) next to the ML region.
    """
    x = np.asarray(positions, dtype=np.float64)
    ml = np.asarray(ml_atoms, dtype=np.int64)
    if not (np.isfinite(cutoff) and cutoff > 0):
        raise ValueError(f"cutoff must be a positive distance in nm, got {cutoff}")
    box = None if box is None else _check_box(box, cutoff)
    local = {int(a): k for k, a in enumerate(ml)}
    try:
        bonds = [(local[int(i)], local[int(j)]) for i, j in ml_bonds]
    except KeyError:
        raise ValueError("ml_bonds must join ML atoms only") from None
    ml_x = _whole(x[ml], box, bonds)
    if not len(residues):
        return ml_x, np.zeros(0, dtype=np.int64), np.zeros((0, 3))
    members = np.concatenate([np.asarray(r, dtype=np.int64) for r in residues])
    owner = np.repeat(np.arange(len(residues)), [len(r) for r in residues])
    # prefilter by the distance to the ML centroid: an atom farther than cutoff + radius is out
    centre = ml_x.mean(0)
    radius = np.linalg.norm(ml_x - centre, axis=1).max()
    to_centre = np.linalg.norm(_minimum_image(x[members] - centre, box), axis=1)
    candidates = np.flatnonzero(to_centre <= cutoff + radius + 1e-9)
    best_distance = np.full(len(candidates), np.inf)
    best_position = np.zeros((len(candidates), 3))
    chunk = max(64, 400_000 // len(ml))  # bounded memory: [n_ml, chunk, 27, 3] doubles
    for start in range(0, len(candidates), chunk):
        part = candidates[start:start + chunk]
        images = ml_x[:, None, :] + _minimum_image(x[members[part]][None, :, :] - ml_x[:, None, :], box)
        distance = np.linalg.norm(images - ml_x[:, None, :], axis=-1)  # [n_ml, c]
        closest = distance.argmin(0)
        best_distance[start:start + len(part)] = distance[closest, np.arange(len(part))]
        best_position[start:start + len(part)] = images[closest, np.arange(len(part))]
    inside = best_distance <= cutoff
    selected = np.unique(owner[candidates[inside]])
    atoms, placed = [], []
    for r in selected:
        mine = np.flatnonzero(owner[candidates] == r)
        anchor = mine[best_distance[mine].argmin()]
        anchor_atom, anchor_position = members[candidates[anchor]], best_position[anchor]
        residue = np.asarray(residues[r], dtype=np.int64)
        atoms.append(residue)
        placed.append(anchor_position + _minimum_image(x[residue] - x[anchor_atom], box))
    return ml_x, np.concatenate(atoms), np.concatenate(placed).reshape(-1, 3)


def solvent_snapshots(simulation, ml_atoms, cutoff: float, n_snapshots: int, interval: int) -> dict:
    """Snapshots of the ML region and its MM environment from MM MD (data for embedding schemes).

    Runs ``interval`` steps of ``simulation`` before each of ``n_snapshots`` snapshots; each is
    taken as by :func:`snapshots_of_frames` (which see for ``ml_atoms``, ``cutoff`` and the
    returned arrays). ``simulation`` (an equilibrated ``openmm.app.Simulation``) is advanced in place.
    """
    import openmm.unit as u

    if int(n_snapshots) < 1 or int(interval) < 1:
        raise ValueError(f"n_snapshots and interval must be at least 1, got {n_snapshots} and {interval}")
    periodic = simulation.system.usesPeriodicBoundaryConditions()

    def frames():
        for _ in range(int(n_snapshots)):
            simulation.step(int(interval))
            state = simulation.context.getState(getPositions=True)
            box = state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(u.nanometer) if periodic else None
            yield (state.getPositions(asNumpy=True).value_in_unit(u.nanometer), box, simulation.currentStep,
                   state.getTime().value_in_unit(u.picosecond))

    return snapshots_of_frames(simulation.topology, simulation.system, ml_atoms, cutoff, frames())


def snapshots_of_frames(topology, system, ml_atoms, cutoff: float, frames) -> dict:
    """Snapshots of the ML region and its MM environment in given frames (of MM or ML/MM MD).

    The MM environment of a frame is every residue (for solvent: every molecule) with any atom
    within ``cutoff`` of any ML atom by minimum image for the (possibly triclinic) box, taken
    whole and imaged next to the whole ML region (see :func:`mm_environment`), so no net charge
    is cut. Charges are those of the system's NonbondedForce (parameter offsets are not applied).

    Parameters
    ----------
    topology : openmm.app.Topology
    system : openmm.System
        The force-field System of the frames' atoms (for the MM charges and masses).
    ml_atoms : sequence of int or str
        ML atom indices or an MDTraj selection string; whole residues only.
    cutoff : float or openmm.unit.Quantity
        Selection cutoff (nm).
    frames : iterable of (positions [N, 3] nm, box [3, 3] nm or None, step, time ps)
        E.g. the frames of a trajectory (box None for a non-periodic system).

    Returns
    -------
    dict
        ``positions`` [S, n_ml, 3] nm (ML region, whole), ``species`` [n_ml] atomic numbers,
        ``ml_atoms`` [n_ml] system indices, ``mm_positions`` [S, m_max, 3] nm, ``mm_charges``
        [S, m_max] e, ``mm_mask`` [S, m_max] bool (True for real MM atoms; padding has zero
        positions and charges), ``mm_atoms`` [S, m_max] int64 system indices (-1 for padding),
        ``mm_species`` [S, m_max] int64 atomic numbers (0 for padding and atoms without element),
        ``mm_anchor`` [S, m_max] int64: for each MM atom, the position within the frame of its
        residue's anchor atom (the heaviest, see :func:`mlmm.embedding.selection.group_anchor`;
        -1 for padding), ``box`` [S, 3, 3] nm (None if not periodic), ``steps`` [S], ``times`` [S] ps.
    """
    import openmm
    import openmm.unit as u

    from mlmm.embedding.selection import group_anchor, resolve_ml_atoms
    from mlmm.units import to_nm

    cutoff = to_nm(cutoff, "cutoff")
    ml = resolve_ml_atoms(topology, ml_atoms)
    nonbonded = [f for f in system.getForces() if isinstance(f, openmm.NonbondedForce)]
    if len(nonbonded) != 1:
        raise ValueError(f"the system has {len(nonbonded)} NonbondedForces; the snapshots take the MM "
                         "charges from exactly one")
    charges = np.array([nonbonded[0].getParticleParameters(i)[0].value_in_unit(u.elementary_charge)
                        for i in range(system.getNumParticles())])
    ml_set = set(ml)
    residues = []
    for residue in topology.residues():
        indices = [atom.index for atom in residue.atoms()]
        inside = [i in ml_set for i in indices]
        if any(inside) and not all(inside):
            raise ValueError(f"residue {residue.name} {residue.id} is split between the ML region and MM "
                             f"(atoms {indices}); the ML region must consist of whole residues")
        if not any(inside):
            residues.append(indices)
    masses = [system.getParticleMass(i).value_in_unit(u.dalton) for i in range(system.getNumParticles())]
    anchor_of = {i: group_anchor(indices, masses) for indices in residues for i in indices}
    ml_bonds = [(a.index, b.index) for a, b in topology.bonds() if a.index in ml_set and b.index in ml_set]
    numbers = np.array([0 if atom.element is None else atom.element.atomic_number for atom in topology.atoms()],
                       dtype=np.int64)
    species = numbers[ml]
    periodic = system.usesPeriodicBoundaryConditions()
    ml_frames, mm_atoms, mm_frames, boxes, steps, times = [], [], [], [], [], []
    for x, box, step, time in frames:
        x = np.asarray(x, dtype=np.float64)
        if x.shape != (len(numbers), 3):
            raise ValueError(f"a frame has positions of shape {x.shape}; the topology has {len(numbers)} atoms")
        if periodic and box is None:
            raise ValueError("the system is periodic but a frame has no box")
        box = np.asarray(box, dtype=np.float64) if periodic else None
        ml_x, atoms, mm_x = mm_environment(x, box, ml, residues, cutoff, ml_bonds)
        ml_frames.append(ml_x)
        mm_atoms.append(atoms)
        mm_frames.append(mm_x)
        boxes.append(box)
        steps.append(step)
        times.append(time)
    if not ml_frames:
        raise ValueError("no frames given")
    m_max = max(len(a) for a in mm_atoms)
    s = len(mm_atoms)
    result = {"positions": np.array(ml_frames), "species": species, "ml_atoms": np.array(ml, dtype=np.int64),
              "mm_positions": np.zeros((s, m_max, 3)), "mm_charges": np.zeros((s, m_max)),
              "mm_mask": np.zeros((s, m_max), dtype=bool), "mm_atoms": np.full((s, m_max), -1, dtype=np.int64),
              "mm_anchor": np.full((s, m_max), -1, dtype=np.int64), "mm_species": np.zeros((s, m_max), np.int64),
              "box": np.array(boxes) if periodic else None, "steps": np.array(steps), "times": np.array(times)}
    for k, (atoms, mm_x) in enumerate(zip(mm_atoms, mm_frames)):
        result["mm_positions"][k, :len(atoms)] = mm_x
        result["mm_charges"][k, :len(atoms)] = charges[atoms]
        result["mm_mask"][k, :len(atoms)] = True
        result["mm_atoms"][k, :len(atoms)] = atoms
        result["mm_species"][k, :len(atoms)] = numbers[atoms]
        position = {int(a): j for j, a in enumerate(atoms)}
        result["mm_anchor"][k, :len(atoms)] = [position[anchor_of[int(a)]] for a in atoms]
    return result


def switched_charges(ml_positions: np.ndarray, mm_positions: np.ndarray, mm_charges: np.ndarray,
                     mm_anchor: np.ndarray, switch_distance: float, cutoff: float) -> np.ndarray:
    """MM charges (e) times their molecule's weight in the ML environment, for one snapshot.

    The weight w_m (:func:`mlmm.embedding.environment.molecule_weights`) depends on the
    distances from the ML atoms to the molecule's anchor atom, so a reference calculation
    with these charges sees the environment exactly as the electrostatic embedding does.

    Parameters
    ----------
    ml_positions : ndarray [n, 3]
        The whole ML region (nm).
    mm_positions, mm_charges : ndarray [m, 3] (nm), [m] (e)
        MM atoms imaged next to the ML region (as :func:`mm_environment` returns them).
    mm_anchor : ndarray of int [m]
        For each MM atom, the index (into the MM arrays) of its molecule's anchor atom.
    switch_distance, cutoff : float
        Switching range in nm.
    """
    from mlmm.embedding.environment import molecule_weights

    anchors = np.asarray(mm_positions)[np.asarray(mm_anchor)]
    distances = np.linalg.norm(anchors[None, :, :] - np.asarray(ml_positions)[:, None, :], axis=-1)
    weights = molecule_weights(torch.as_tensor(distances), float(switch_distance), float(cutoff)).numpy()
    return np.asarray(mm_charges) * weights


def weighted_environment(snapshots: dict, switch_distance: float, cutoff: float
                         ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The MM environment of every snapshot as an electrostatic embedding sees it.

    Charges are multiplied by their molecule's weight (:func:`switched_charges`, with the ML
    positions in ``snapshots["positions"]``); molecules of weight 0 are dropped.

    Returns
    -------
    mm_positions [S, m, 3] (nm), mm_charges [S, m] (e), mm_mask [S, m] bool, padded to the
    largest environment.
    """
    kept = []
    for k in range(len(snapshots["positions"])):
        real = snapshots["mm_mask"][k]
        charges = switched_charges(snapshots["positions"][k], snapshots["mm_positions"][k][real],
                                   snapshots["mm_charges"][k][real], snapshots["mm_anchor"][k][real],
                                   switch_distance, cutoff)
        inside = charges != 0.0
        kept.append((snapshots["mm_positions"][k][real][inside], charges[inside]))
    n, m = len(kept), max(len(q) for _, q in kept)
    positions, charges, mask = np.zeros((n, m, 3)), np.zeros((n, m)), np.zeros((n, m), dtype=bool)
    for k, (x, q) in enumerate(kept):
        positions[k, :len(q)], charges[k, :len(q)], mask[k, :len(q)] = x, q, True
    return positions, charges, mask


def buffer_clusters(frames: Dataset, buffer_cutoff: float, molecule_species: Sequence[int],
                    molecule_charges: Sequence[float], source: str, provenance: dict,
                    outer_charges: bool = False) -> Dataset:
    """The frames with their MM environment cut down to a buffer region (data for the buffer embedding).

    The environment must be one neutral solvent whose molecules are stored whole and in the same
    atom order (``molecule_species``, the first atom the anchor, as
    :class:`~mlmm.embedding.modules.BufferEmbeddingModule` takes it). Kept: every molecule whose
    anchor lies within ``buffer_cutoff`` (nm) of an ML atom, nearest first, at the full
    force-field charges ``molecule_charges`` (e) and with its atomic numbers in ``mm_species``,
    i.e. every molecule the buffer gives a non-zero weight, entered whole.

    With ``outer_charges`` the other molecules of the environment follow the buffer as point
    charges (their stored charges, ``mm_species`` 0), so that
    :class:`~mlmm.data.calculators.BufferDifference` computes both clusters in their field;
    :func:`without_outer_charges` removes them again after labelling.
    """
    size = len(molecule_species)
    species_row = np.asarray(molecule_species, dtype=np.int64)
    kept = []
    for k in range(frames.n_frames):
        real = frames.mm_mask[k]
        molecules = frames.mm_positions[k][real].reshape(-1, size, 3)
        stored_charges = frames.mm_charges[k][real].reshape(-1, size)
        nearest = np.linalg.norm(molecules[:, None, 0] - frames.positions[k][None], axis=-1).min(1)
        order = np.argsort(nearest)
        inside, outside = order[nearest[order] < buffer_cutoff], order[nearest[order] >= buffer_cutoff]
        if not outer_charges:
            outside = outside[:0]
        kept.append({"mm_positions": np.concatenate([molecules[inside], molecules[outside]]).reshape(-1, 3),
                     "mm_charges": np.concatenate([np.tile(np.asarray(molecule_charges, dtype=np.float64),
                                                           len(inside)), stored_charges[outside].reshape(-1)]),
                     "mm_species": np.concatenate([np.tile(species_row, len(inside)),
                                                   np.zeros(len(outside) * size, np.int64)])})
    return Dataset(species=frames.species, positions=frames.positions, **_padded_environment(kept),
                   frame_source=[source] * frames.n_frames, total_charge=frames.total_charge,
                   multiplicity=frames.multiplicity, provenance=dict(provenance))


def without_outer_charges(dataset: Dataset) -> Dataset:
    """Buffer data with the point charges beyond the buffer (``mm_species`` 0, see :func:`buffer_clusters`)
    removed from the environment, for training; everything else is kept. Where there were such charges,
    their potential at the ML atoms and at the buffer atoms is kept as ``outer_potential`` and
    ``mm_outer_potential`` (kJ/mol/e), with which training can weigh the scheme's outer coupling."""
    names = [name for name in ("mm_positions", "mm_charges", "mm_species", "mm_forces", "mm_charge_changes")
             if getattr(dataset, name) is not None]
    in_field = bool(np.any(dataset.mm_mask & (dataset.mm_species == 0)))
    kept, potentials = [], []
    for k in range(dataset.n_frames):
        buffer = dataset.mm_mask[k] & (dataset.mm_species[k] > 0)
        outer = dataset.mm_mask[k] & (dataset.mm_species[k] == 0)
        kept.append({name: getattr(dataset, name)[k][buffer] for name in names})
        if in_field:
            cluster = np.concatenate([dataset.positions[k], dataset.mm_positions[k][buffer]])
            potential = outer_potential(cluster, dataset.mm_positions[k][outer], dataset.mm_charges[k][outer]).numpy()
            potentials.append(potential[:dataset.n_atoms])
            kept[-1]["mm_outer_potential"] = potential[dataset.n_atoms:]
    stripped = dataclasses.replace(dataset, **_padded_environment(kept))
    return dataclasses.replace(stripped, outer_potential=np.array(potentials)) if in_field else stripped


def _padded_environment(environments) -> dict:
    """Per-frame MM environments, dicts of per-atom arrays (``mm_positions`` [m, 3], ``mm_charges`` [m],
    ``mm_species`` [m] and optional labels such as ``mm_forces`` [m, 3]), as the dataset's arrays padded
    to the longest environment, with ``mm_mask``."""
    frames, width = len(environments), max(len(environment["mm_positions"]) for environment in environments)
    arrays = {name: np.zeros((frames, width) + np.shape(values)[1:], dtype=np.asarray(values).dtype)
              for name, values in environments[0].items()}
    arrays["mm_mask"] = np.zeros((frames, width), dtype=bool)
    for k, environment in enumerate(environments):
        n = len(environment["mm_positions"])
        arrays["mm_mask"][k, :n] = True
        for name, values in environment.items():
            arrays[name][k, :n] = values
    return arrays


def empty_buffer_frames(vacuum: Dataset, width: int, source: str, charge_changes: bool = False,
                        outer_potentials: bool = False) -> Dataset:
    """Labelled gas-phase frames as buffer frames with an empty buffer (``width`` padding atoms), so
    that a buffer network also learns the lone ML region E_NN(I); with ``charge_changes`` they carry
    the (empty) ``mm_charge_changes`` label of buffer data labelled for the charge-difference coupling,
    with ``outer_potentials`` the (zero) outer potentials of buffer data labelled in a field."""
    f = vacuum.n_frames
    return Dataset(species=vacuum.species, positions=vacuum.positions, energies=vacuum.energies,
                   forces=vacuum.forces, charges=vacuum.charges, dipoles=vacuum.dipoles,
                   mm_positions=np.zeros((f, width, 3)), mm_charges=np.zeros((f, width)),
                   mm_species=np.zeros((f, width), dtype=np.int64), mm_mask=np.zeros((f, width), dtype=bool),
                   mm_forces=np.zeros((f, width, 3)),
                   mm_charge_changes=np.zeros((f, width)) if charge_changes else None,
                   outer_potential=np.zeros((f, vacuum.n_atoms)) if outer_potentials else None,
                   mm_outer_potential=np.zeros((f, width)) if outer_potentials else None,
                   frame_source=[source] * f, status=vacuum.status,
                   total_charge=vacuum.total_charge, multiplicity=vacuum.multiplicity, provenance=vacuum.provenance)
