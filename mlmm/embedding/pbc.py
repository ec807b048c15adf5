"""Periodic boundary helpers in torch for OpenMM's reduced triclinic boxes.

OpenMM box vectors are in reduced form: a = (ax, 0, 0), b = (bx, by, 0), c = (cx, cy, cz)
with ax >= 2|bx|, ax >= 2|cx|, by >= 2|cy|. Rows of ``box`` are a, b, c in nm.
"""

from __future__ import annotations

import torch


def minimum_image(delta: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
    """Shift displacement vectors ``delta`` [..., 3] (nm) to their minimum image.

    Exact for distances up to half the smallest box width, the range every cutoff in
    mlmm is checked against.
    """
    delta = delta - box[2] * torch.round(delta[..., 2:3] / box[2, 2])
    delta = delta - box[1] * torch.round(delta[..., 1:2] / box[1, 1])
    delta = delta - box[0] * torch.round(delta[..., 0:1] / box[0, 0])
    return delta


def make_whole(positions: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
    """Image every atom next to the first one, so a region split across the box is whole.

    Valid for regions that span less than half the smallest box width.
    """
    reference = positions[:1]
    return reference + minimum_image(positions - reference, box)


def box_widths(box_vectors) -> list[float]:
    """Perpendicular widths (nm) of a reduced triclinic box given as three 3-vectors."""
    return [float(box_vectors[0][0]), float(box_vectors[1][1]), float(box_vectors[2][2])]
