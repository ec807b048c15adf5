"""Periodic boundary helpers in torch for OpenMM's reduced triclinic boxes.

OpenMM box vectors are in reduced form: a = (ax, 0, 0), b = (bx, by, 0), c = (cx, cy, cz)
with ax >= 2|bx|, ax >= 2|cx|, by >= 2|cy|. Rows of ``box`` are a, b, c in nm.
"""

from __future__ import annotations

import torch

from mlmm.potentials.neighbors import lattice_shift, minimum_image

__all__ = ["make_whole", "minimum_image"]


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
            shift = lattice_shift(positions - positions[:1], box)
        else:
            root_positions = positions.index_select(0, roots)
            shift = lattice_shift(positions - root_positions, box) + lattice_shift(
                root_positions - positions[:1], box)
    return positions + shift
