"""Dipole moments from periodic trajectories, free of the jumps that wrapping atoms into the box causes.

Units: positions nm, box vectors nm (rows a, b, c as OpenMM gives them), charges e, dipoles e nm.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from mlmm.potentials.neighbors import lattice_shift

__all__ = ["unwrap_positions", "dipole_moments"]


def unwrap_positions(positions, boxes, molecules: Optional[Sequence[Sequence[int]]] = None) -> np.ndarray:
    """Continuous atom trajectories [frames, atoms, 3] (nm) from wrapped ones.

    Every frame-to-frame displacement is reduced to its minimum image, so atoms never jump across the box; ``molecules`` (lists of atom indices) are first made whole in
    frame 0 around their first atom. Assumes no atom moves half a box width between saved frames.

    Parameters
    ----------
    positions : array [frames, atoms, 3]
        nm.
    boxes : array [3, 3] or [frames, 3, 3]
        Periodic box vectors (rows, nm): one box for all frames or one per frame (NPT).
    molecules : list of lists of int, optional
        Atoms that form a molecule; default: the atoms are taken to be whole already in frame 0.
    """
    positions = np.array(positions, dtype=np.float64)
    if positions.ndim != 3 or positions.shape[2] != 3:
        raise ValueError(f"positions must have shape [frames, atoms, 3] in nm, got {positions.shape}")
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.shape == (3, 3):
        boxes = np.broadcast_to(boxes, (positions.shape[0], 3, 3))
    if boxes.shape != (positions.shape[0], 3, 3):
        raise ValueError(f"boxes must be one [3, 3] box or one per frame [{positions.shape[0]}, 3, 3] (nm), "
                         f"got {boxes.shape}")
    if not np.all(np.abs(np.linalg.det(boxes)) > 0):
        raise ValueError("every box must have three independent vectors (non-zero volume)")
    for atoms in molecules or ():
        atoms = np.asarray(atoms, dtype=np.int64)
        offsets = positions[0, atoms] - positions[0, atoms[0]]
        positions[0, atoms] += lattice_shift_nm(offsets, boxes[0])
    steps = np.diff(positions, axis=0)
    for n in range(steps.shape[0]):
        steps[n] += lattice_shift_nm(steps[n], boxes[n + 1])
    return np.concatenate([positions[:1], positions[:1] + np.cumsum(steps, axis=0)])


def dipole_moments(positions, charges, boxes=None, molecules: Optional[Sequence[Sequence[int]]] = None) -> np.ndarray:
    """Dipole moments M(t) = sum_i q_i r_i(t) [frames, 3] (e nm) of the given atoms.

    Positions are unwrapped first when ``boxes`` are given (see :func:`unwrap_positions`), so an atom
    wrapped into the box does not make the dipole jump by q times a box vector. For a charged set of
    atoms the dipole depends on the origin; its drift shows up at low wavenumbers only.

    Parameters
    ----------
    positions : array [frames, atoms, 3]
        nm; only the atoms whose charges are given.
    charges : array [atoms]
        e; fixed, or per frame [frames, atoms] (e.g. ML charges).
    boxes : array [3, 3] or [frames, 3, 3], optional
        Periodic box vectors (nm); None for a non-periodic trajectory.
    molecules : list of lists of int, optional
        Atoms of each molecule, made whole in the first frame.
    """
    positions = np.asarray(positions, dtype=np.float64)
    if boxes is not None:
        positions = unwrap_positions(positions, boxes, molecules)
    charges = np.asarray(charges, dtype=np.float64)
    if positions.ndim != 3 or charges.shape not in ((positions.shape[1],), positions.shape[:2]):
        raise ValueError(f"charges of shape {charges.shape} do not match positions of shape {positions.shape}: give "
                         "one charge per atom [atoms] or per frame and atom [frames, atoms]")
    weights = charges if charges.ndim == 2 else np.broadcast_to(charges, positions.shape[:2])
    return np.einsum("fa,fax->fx", weights, positions)



def lattice_shift_nm(vectors: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The lattice vectors [n, 3] (nm) that take ``vectors`` [n, 3] to their minimum image in a reduced
    box (rows a, b, c): :func:`mlmm.potentials.neighbors.lattice_shift` on numpy arrays."""
    return lattice_shift(torch.tensor(vectors, dtype=torch.float64), torch.tensor(box, dtype=torch.float64)).numpy()
