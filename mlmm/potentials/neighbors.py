"""Minimum-image geometry and a fixed-capacity neighbour list in torch.

OpenMM box vectors are in reduced form: a = (ax, 0, 0), b = (bx, by, 0), c = (cx, cy, cz)
with ax >= 2|bx|, ax >= 2|cx|, by >= 2|cy|. Rows of ``cell`` are a, b, c in nm. The
minimum-image scheme is exact for cutoffs up to half the smallest box width, which
:func:`check_cell` enforces on the Python side.

The neighbour list is dense in the atom index and of fixed width K per atom, shaped
[n, K]: pair features cost O(n K) memory instead of O(n^2), aggregation over neighbours
is a sum over the last axis, and shapes depend only on n, so the list can be captured in
CUDA graphs. Candidate pairs are ranked on a no-grad n x n distance matrix (4 numbers per
pair); only the kept pairs enter autograd.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator, Optional, Tuple

import torch

_fixed_shape_tracing = False  # set by fixed_shape_tracing(); TorchScript reads it as the constant False


def static_shapes(tensor: torch.Tensor) -> bool:
    """Whether work on ``tensor`` must keep fixed shapes and stay free of host synchronisation: on
    GPUs (CUDA graphs), while ``torch.compile`` traces it (one graph, no breaks) and within
    :func:`fixed_shape_tracing`. On CPU otherwise, lists and selections may follow the geometry."""
    if tensor.is_cuda:
        return True
    if torch.jit.is_scripting():
        return False
    return torch.compiler.is_compiling() or _fixed_shape_tracing


@contextmanager
def fixed_shape_tracing() -> Iterator[None]:
    """Within it, :func:`static_shapes` is true on CPU too: for tracing a module into a graph that
    must hold for every geometry (:mod:`mlmm.bridge.ahead_of_time`)."""
    global _fixed_shape_tracing
    previous, _fixed_shape_tracing = _fixed_shape_tracing, True
    try:
        yield
    finally:
        _fixed_shape_tracing = previous


def lattice_shift(delta: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
    """The lattice vector that takes ``delta`` [..., 3] (nm) to its minimum image (no autograd)."""
    with torch.no_grad():
        shifted = delta - cell[2] * torch.round(delta[..., 2:3] / cell[2, 2])
        shifted = shifted - cell[1] * torch.round(shifted[..., 1:2] / cell[1, 1])
        shifted = shifted - cell[0] * torch.round(shifted[..., 0:1] / cell[0, 0])
        return shifted - delta


def minimum_image(delta: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
    """Displacements ``delta`` [..., 3] (nm) shifted to their minimum image.

    The shift is piecewise constant, so the gradient is the identity; computing it
    without autograd keeps the backward pass short.
    """
    return delta + lattice_shift(delta, cell)


def cell_widths(cell) -> list[float]:
    """Perpendicular widths (nm) of a reduced triclinic cell given as three 3-vectors."""
    return [float(cell[0][0]), float(cell[1][1]), float(cell[2][2])]


def check_cell(cell: torch.Tensor, cutoff: float) -> None:
    """Raise ValueError unless ``cell`` is a reduced triclinic cell [3, 3] (nm) wide enough for ``cutoff``."""
    if tuple(cell.shape) != (3, 3):
        raise ValueError(f"cell must have shape (3, 3) (rows a, b, c in nm), got {tuple(cell.shape)}")
    if not bool(torch.isfinite(cell).all()):
        raise ValueError("cell contains NaN or infinite values")
    a, b, c = cell.detach().double().tolist()
    if a[1] != 0 or a[2] != 0 or b[2] != 0:
        raise ValueError(f"cell must be in OpenMM's reduced form (a = (ax,0,0), b = (bx,by,0)); got {cell.tolist()}")
    if min(a[0], b[1], c[2]) <= 0 or a[0] < 2 * abs(b[0]) or a[0] < 2 * abs(c[0]) or b[1] < 2 * abs(c[1]):
        raise ValueError(f"cell is not a reduced triclinic box (see openmm.app.internal.unitcell): {cell.tolist()}")
    if cutoff > 0.5 * min(cell_widths(cell)):
        raise ValueError(f"the model cutoff {cutoff} nm exceeds half the smallest cell width "
                         f"{0.5 * min(cell_widths(cell)):.4f} nm; use a larger box")


def _all_other_atoms(n: int, device: torch.device) -> torch.Tensor:
    """[n, n - 1] indices of all atoms but i in row i: j = k + (k >= i) skips the diagonal."""
    k = torch.arange(n - 1, device=device).unsqueeze(0)
    return k + (k >= torch.arange(n, device=device).unsqueeze(1)).long()


def neighbor_list(positions: torch.Tensor, cutoff: float, max_neighbors: int,
                  cell: Optional[torch.Tensor] = None, compact: bool = False
                  ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Up to ``max_neighbors`` nearest neighbours of each atom within ``cutoff`` (nm).

    The list is chosen without autograd; :func:`pair_vectors` then builds the
    differentiable pair vectors from it. A list of width n - 1 is always every other atom in
    index order (row i: 0, ..., i - 1, i + 1, ..., n - 1).

    Parameters
    ----------
    positions : Tensor [n, 3]
        Positions in nm; need not be wrapped into the cell.
    cutoff : float
        Pair cutoff in nm (``inf`` for all pairs).
    max_neighbors : int
        Capacity K of the list; the list is [n, min(K, n - 1)] and holds all pairs when
        K >= n - 1.
    cell : Tensor [3, 3], optional
        Reduced triclinic box (rows a, b, c, nm) for minimum-image pairs.
    compact : bool
        On CPU, narrow the list to the largest number of neighbours any atom has within the
        cutoff (at most K), so that pair work follows the real neighbour count; the width then
        depends on the geometry. Where shapes are fixed (:func:`static_shapes`: GPUs, compiled
        graphs) lists keep the fixed width.

    Returns
    -------
    neighbors : Tensor [n, K] int64
        Index j of each listed neighbour of atom i.
    mask : Tensor [n, K] bool
        True where r_ij < cutoff (padding entries are False).
    shifts : Tensor [n, K, 3]
        Lattice vectors (nm) that take r_j - r_i to its minimum image (zero without a cell).
    overflow : Tensor [] bool
        True when some atom has more than K neighbours within the cutoff (pairs were lost).
    """
    n = positions.shape[0]
    width = min(max_neighbors, n - 1)
    if width == n - 1 and cell is None and math.isinf(cutoff):  # every pair, no geometry needed
        neighbors = _all_other_atoms(n, positions.device)
        mask = torch.ones(n, width, dtype=torch.bool, device=positions.device)
        shifts = torch.zeros(n, width, 3, dtype=positions.dtype, device=positions.device)
        overflow = torch.zeros((), dtype=torch.bool, device=positions.device)
    else:
        with torch.no_grad():
            delta = positions.unsqueeze(0) - positions.unsqueeze(1)  # [i, j] = r_j - r_i
            shift = lattice_shift(delta, cell) if cell is not None else None
            if shift is not None:
                delta = delta + shift
            d2 = (delta * delta).sum(-1)
            inside = d2 < cutoff * cutoff
            inside.fill_diagonal_(False)
            if compact and not static_shapes(positions):
                width = min(width, max(int(inside.sum(1).max()), 1))
            if width == n - 1:  # every other atom is listed: nothing can be lost
                neighbors = _all_other_atoms(n, positions.device)
                overflow = torch.zeros((), dtype=torch.bool, device=positions.device)
            else:
                ranked = d2.clone().fill_diagonal_(float("inf"))  # never list an atom as its own neighbour
                neighbors = torch.topk(ranked, width, dim=1, largest=False, sorted=False).indices
                overflow = inside.sum(1).max() > width
            mask = torch.gather(inside, 1, neighbors)
            if shift is None:
                shifts = torch.zeros(n, width, 3, dtype=positions.dtype, device=positions.device)
            else:
                shifts = torch.gather(shift, 1, neighbors.unsqueeze(-1).expand(n, width, 3))
    return neighbors, mask, shifts, overflow


def pair_vectors(positions: torch.Tensor, neighbors: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Differentiable pair vectors r_j - r_i + shift_ij (nm).

    ``positions`` is [..., n, 3] (a leading member axis lets every committee member get its
    own autograd leaf); ``neighbors`` [n, K] and ``shifts`` [n, K, 3] come from
    :func:`neighbor_list`. Returns [..., n, K, 3].
    """
    n, width = neighbors.shape[0], neighbors.shape[1]
    gathered = positions.index_select(-2, neighbors.reshape(-1))
    shape = list(positions.shape[:-2])
    shape.extend([n, width, 3])
    return gathered.reshape(shape) - positions.unsqueeze(-2) + shifts


def member_pairs_within(neighbors: torch.Tensor, vectors: torch.Tensor, r: torch.Tensor, cutoff: float
                        ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each member's own pairs within ``cutoff`` (nm), narrowed from a list that all members share.

    For frames batched along the member axis (training), whose geometries differ, so that one list
    for all would have to hold every pair. ``neighbors`` [n, K], the pair vectors [M, n, K, 3] and
    distances [M, n, K] (nm) become ``neighbors`` [M, n, W], vectors [M, n, W, 3] and distances
    [M, n, W]: each atom's W nearest pairs in its own member, W being the most pairs any atom of any
    member has within the cutoff, so no such pair is lost (the rest are the nearest beyond it, where
    the radial functions vanish). Returns the inputs when W > 3K/4: the narrowing would cost more
    than it saves.
    """
    if r.shape[-1] == 0:
        return neighbors, vectors, r
    distances = r.detach()
    width = max(int((distances < cutoff).sum(-1).max()), 1)
    if 4 * width > 3 * r.shape[-1]:
        return neighbors, vectors, r
    nearest = torch.topk(distances, width, dim=-1, largest=False, sorted=False).indices  # [M, n, W]
    m, n = r.shape[0], r.shape[1]
    shared = neighbors.unsqueeze(0).expand(m, n, neighbors.shape[1])
    return (shared.gather(2, nearest), vectors.gather(2, nearest.unsqueeze(-1).expand(m, n, width, 3)),
            r.gather(2, nearest))
