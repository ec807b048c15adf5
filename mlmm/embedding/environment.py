"""Smooth membership of whole MM molecules in the environment of the ML region.

A molecule (residue) m enters the environment through the distances d_im (nm) from each ML
atom i to its anchor atom (the heaviest atom). Its weight

    w_m = 1 - prod_i (1 - S(d_im)),

with S the C2 switch from 1 at ``switch_distance`` to 0 at ``cutoff``, is 1 as soon as one
ML atom is closer than ``switch_distance``, 0 when every ML atom is beyond ``cutoff``, and
C2 in all positions in between, so the molecule's charges (all multiplied by w_m) enter and
leave smoothly and no net charge of a molecule is ever cut.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch

from mlmm.embedding.pbc import minimum_image
from mlmm.potentials.layers import smooth_switch
from mlmm.potentials.neighbors import cell_widths, static_shapes

__all__ = ["anchor_vectors", "molecule_offsets", "molecule_weights", "nearest_distances", "placed_molecules",
           "selected_molecules"]


def molecule_weights(distances: torch.Tensor, switch_distance: float, cutoff: float) -> torch.Tensor:
    """Weights w_m [G] of G molecules from their anchor distances [n_ml, G] to the ML atoms (nm)."""
    return 1.0 - product_over_rows(1.0 - smooth_switch(distances, switch_distance, cutoff))


def product_over_rows(factors: torch.Tensor) -> torch.Tensor:
    """The product [G] over the rows of ``factors`` [n, G], multiplied pairwise (log2 n steps).

    Unlike ``torch.prod``, whose backward counts the zero factors on the host (a synchronisation
    that breaks CUDA-graph capture; factors are exactly 0 for molecules within the switch
    distance), the gradient is the one of plain multiplications, exact with zeros too.
    """
    while factors.shape[0] > 1:
        if factors.shape[0] % 2 == 1:
            factors = torch.cat([factors, torch.ones_like(factors[:1])])
        factors = factors[0::2] * factors[1::2]
    return factors[0]


def anchor_vectors(x_ml: torch.Tensor, positions: torch.Tensor, boxvectors: Optional[torch.Tensor],
                   anchors: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Minimum-image vectors [n_ml, K, 3] (nm) from each ML atom to the atoms ``anchors`` [K], and their lengths."""
    to_anchor = positions.index_select(0, anchors).unsqueeze(0) - x_ml.unsqueeze(1)
    if boxvectors is not None:
        to_anchor = minimum_image(to_anchor, boxvectors.to(positions.dtype))
    return to_anchor, torch.linalg.norm(to_anchor, dim=-1)


def nearest_distances(x_ml: torch.Tensor, positions: torch.Tensor, boxvectors: Optional[torch.Tensor],
                      anchors: torch.Tensor, cutoff: float, capacity: Optional[int] = None) -> torch.Tensor:
    """Distance [G] (nm) from each of the G molecules' anchors to the nearest ML atom, without gradient.

    The one screen over all molecules per step; only the molecules it selects are then
    evaluated with gradients (:func:`anchor_vectors` on their anchors). Exact for every molecule
    closer than ``cutoff``. Molecules are first screened against the ML region's bounding sphere
    (centre c, radius r): d(anchor, c) - r is a lower bound of the distance to every ML atom, so
    the dense ML-atoms x molecules work covers only the molecules near the region, the others
    keeping their bound. On CPU those are the molecules whose bound is below ``cutoff``. In
    compiled CPU graphs (fixed shapes, :func:`~mlmm.potentials.neighbors.static_shapes`) they are
    the ``capacity`` molecules of smallest bound: exact for all inside the cutoff while at most
    ``capacity`` bounds lie below it; beyond that a molecule inside may keep its bound, still below
    the cutoff, so the ``capacity`` smallest values, which the schemes select and evaluate exactly,
    hold every molecule inside unless more than ``capacity`` values are below the cutoff, which the
    schemes report as an overflow (NaN energy; the compiled PythonForce then runs the eager
    module). So is a bound that is not one (``cutoff + r`` reaching half the box width: the minimum
    image of the centre may be wrong for a triclinic box; every distance is then 0). On GPUs every
    distance is exact (no host sync, no false overflow).
    """
    # detached inputs rather than torch.no_grad(): a no_grad block in the scripted module gave wrong
    # forces once OpenMM-Torch's graph executor had optimised it
    x = x_ml.detach()
    positions = positions.detach()
    box = None if boxvectors is None else boxvectors.detach()
    if static_shapes(positions):
        if capacity is None or positions.is_cuda or capacity >= anchors.shape[0]:
            return _exact_distances(x, positions, box, anchors)
        bound, radius = _sphere_bounds(x, positions, box, anchors)
        near = torch.topk(bound, capacity, largest=False, sorted=False)[1]
        distances = bound.index_put((near,), _exact_distances(x, positions, box, anchors.index_select(0, near)))
        if box is None:
            return distances
        return torch.where(radius + cutoff < 0.5 * torch.diagonal(box).min(), distances, torch.zeros_like(distances))
    bound, radius = _sphere_bounds(x, positions, box, anchors)
    if box is not None and cutoff + float(radius) >= 0.5 * min(cell_widths(box)):
        return _exact_distances(x, positions, box, anchors)  # the bound needs true images
    near = torch.nonzero(bound < cutoff).reshape(-1)
    return bound.index_put((near,), _exact_distances(x, positions, box, anchors.index_select(0, near)))


def _exact_distances(x: torch.Tensor, positions: torch.Tensor, box: Optional[torch.Tensor], anchors: torch.Tensor
                     ) -> torch.Tensor:
    """Distance [K] (nm) from each of the K ``anchors`` to the nearest of the ML atoms ``x``."""
    return anchor_vectors(x, positions, box, anchors)[1].min(0)[0]


def _sphere_bounds(x: torch.Tensor, positions: torch.Tensor, box: Optional[torch.Tensor], anchors: torch.Tensor
                   ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Lower bounds [K] (nm) of the distances of :func:`_exact_distances`: each anchor's distance to
    the centre of the ML atoms ``x`` less their largest distance from it, the radius (also returned)."""
    centre = x.mean(0, keepdim=True)
    radius = torch.linalg.norm(x - centre, dim=-1).max()
    return anchor_vectors(centre, positions, box, anchors)[1][0] - radius, radius


def placed_molecules(x_ml: torch.Tensor, positions: torch.Tensor, boxvectors: Optional[torch.Tensor],
                     to_anchor: torch.Tensor, distances: torch.Tensor, anchors: torch.Tensor,
                     atoms: torch.Tensor) -> torch.Tensor:
    """Positions [K, A, 3] (nm) of K molecules' atoms (``atoms`` [K, A], anchors ``anchors`` [K]), each
    whole and next to the ML region: its anchor at the minimum image seen from the nearest ML atom.
    ``to_anchor`` [n_ml, K, 3] and ``distances`` [n_ml, K] are :func:`anchor_vectors` of ``anchors``."""
    via = distances.argmin(0)
    anchor_position = x_ml.index_select(0, via) + to_anchor[via, torch.arange(anchors.shape[0], device=via.device)]
    return anchor_position.unsqueeze(1) + molecule_offsets(positions, boxvectors, anchors, atoms)


def molecule_offsets(positions: torch.Tensor, boxvectors: Optional[torch.Tensor], anchors: torch.Tensor,
                     atoms: torch.Tensor) -> torch.Tensor:
    """Minimum-image vectors [K, A, 3] (nm) from each molecule's anchor to its atoms (``atoms`` [K, A])."""
    offsets = (positions.index_select(0, atoms.reshape(-1)).reshape(atoms.shape[0], atoms.shape[1], 3)
               - positions.index_select(0, anchors).unsqueeze(1))
    if boxvectors is not None:
        offsets = minimum_image(offsets, boxvectors.to(positions.dtype))
    return offsets


def selected_molecules(nearest: torch.Tensor, cutoff: float, capacity: int) -> torch.Tensor:
    """Indices of the molecules to evaluate, from their distances [G] to the ML region (nm).

    On CPU exactly those inside ``cutoff``; where shapes are fixed (GPUs, compiled graphs) the
    ``capacity`` nearest (those beyond the cutoff get weight 0; the caller checks for overflow).
    """
    if static_shapes(nearest):
        return torch.topk(nearest.detach(), capacity, largest=False, sorted=False)[1]
    return torch.nonzero(nearest < cutoff).reshape(-1)
