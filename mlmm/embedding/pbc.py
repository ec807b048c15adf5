"""Periodic boundary helpers in torch for OpenMM's reduced triclinic boxes.

OpenMM box vectors are in reduced form: a = (ax, 0, 0), b = (bx, by, 0), c = (cx, cy, cz)
with ax >= 2|bx|, ax >= 2|cx|, by >= 2|cy|. Rows of ``box`` are a, b, c in nm.
"""

from __future__ import annotations

import torch


def _lattice_shift(delta: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
    """The lattice vector that takes ``delta`` [..., 3] to its minimum image (no autograd).

    OpenMM's scheme for reduced boxes, exact for distances up to half the smallest box
    width, the range every cutoff in mlmm is checked against.
    """
    with torch.no_grad():
        shifted = delta - box[2] * torch.round(delta[..., 2:3] / box[2, 2])
        shifted = shifted - box[1] * torch.round(shifted[..., 1:2] / box[1, 1])
        shifted = shifted - box[0] * torch.round(shifted[..., 0:1] / box[0, 0])
        return shifted - delta


def minimum_image(delta: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
    """Displacement vectors ``delta`` [..., 3] (nm) shifted to their minimum image.

    The shift is piecewise constant, so the gradient is the identity; computing it
    without autograd keeps the backward pass of the MD hot path short.
    """
    return delta + _lattice_shift(delta, box)


def make_whole(positions: torch.Tensor, box: torch.Tensor, roots: torch.Tensor) -> torch.Tensor:
    """Make every molecule of a region whole and place the molecules next to the first atom.

    ``roots[i]`` is the index (within ``positions``) of the first atom of atom i's molecule;
    an empty ``roots`` means the region is one molecule.
    Each atom is imaged next to its root, and each molecule's root next to atom 0, so a
    region split across the box becomes a cluster. Valid for molecules spanning less than
    half the smallest box width; the shifts are lattice vectors, computed without autograd.
    """
    with torch.no_grad():
        if roots.shape[0] == 0:  # one molecule: its root is atom 0
            shift = _lattice_shift(positions - positions[:1], box)
        else:
            root_positions = positions.index_select(0, roots)
            shift = _lattice_shift(positions - root_positions, box) + _lattice_shift(
                root_positions - positions[:1], box)
    return positions + shift


def box_widths(box_vectors) -> list[float]:
    """Perpendicular widths (nm) of a reduced triclinic box given as three 3-vectors."""
    return [float(box_vectors[0][0]), float(box_vectors[1][1]), float(box_vectors[2][2])]
