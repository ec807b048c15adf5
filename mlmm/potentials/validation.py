"""Python-side input checks and a convenience evaluator for the network potentials.

The TorchScript ``forward`` of a model is the MD hot path and checks nothing that would
need a host synchronisation. :func:`predict` (and the training and labelling code) call
:func:`validate_inputs` first, so bad input fails with a clear message before any
computation.
"""

from __future__ import annotations

import math
from typing import Dict, Optional

import torch

from mlmm.potentials.layers import ELEMENT_SYMBOLS
from mlmm.potentials.neighbors import check_cell, minimum_image

#: Closest approach (nm) accepted between two atoms; closer pairs are almost surely an input error.
MIN_DISTANCE = 0.01


def _symbol(z: int) -> str:
    return ELEMENT_SYMBOLS[z] if 0 < z < len(ELEMENT_SYMBOLS) else f"Z={z}"


def validate_inputs(model: torch.nn.Module, species: torch.Tensor, positions: torch.Tensor,
                    cell: Optional[torch.Tensor] = None) -> None:
    """Raise TypeError/ValueError for input ``model`` cannot evaluate meaningfully.

    Checks tensor types, shapes and dtypes; that every element is supported; that
    positions (nm) and cell are finite; that no two atoms are closer than 0.01 nm (minimum
    image when a cell is given); and that the cell is reduced and wide enough for the
    model's cutoffs.
    """
    if not isinstance(species, torch.Tensor) or not isinstance(positions, torch.Tensor):
        raise TypeError(f"species and positions must be torch tensors, got {type(species).__name__} "
                        f"and {type(positions).__name__}")
    if species.dtype != torch.long or species.dim() != 1:
        raise TypeError(f"species must be a 1-D int64 tensor of atomic numbers, got dtype {species.dtype} "
                        f"and shape {tuple(species.shape)}")
    if not positions.is_floating_point() or positions.dim() != 2 or positions.shape[1] != 3:
        raise TypeError(f"positions must be a floating-point tensor of shape (n, 3) in nm, got dtype "
                        f"{positions.dtype} and shape {tuple(positions.shape)}")
    if positions.shape[0] != species.shape[0] or species.shape[0] == 0:
        raise ValueError(f"species has {species.shape[0]} atoms but positions has {positions.shape[0]}; "
                         "they must match and be non-empty")
    supported = getattr(model, "supported_elements", None)
    if supported is not None:
        unknown = [(i, int(z)) for i, z in enumerate(species.tolist()) if int(z) not in supported]
        if unknown:
            i, z = unknown[0]
            raise ValueError(f"atom {i} is {_symbol(z)} (atomic number {z}), which the model does not support "
                             f"(supported: {' '.join(_symbol(s) for s in supported)})")
    if not bool(torch.isfinite(positions).all()):
        bad = int(torch.nonzero(~torch.isfinite(positions).all(-1))[0, 0])
        raise ValueError(f"positions of atom {bad} are not finite: {positions[bad].tolist()}")
    x = positions.detach().double()
    if cell is not None:
        cutoffs = (getattr(model, "cutoff", 0.0), getattr(model, "coulomb_cutoff", 0.0))
        if not all(math.isfinite(c) for c in cutoffs):
            raise ValueError("this model has no Coulomb cutoff, which periodic cells need; build it with "
                             "coulomb_cutoff (nm) set")
        check_cell(cell, max(cutoffs))
    if x.shape[0] > 1:
        delta = x.unsqueeze(0) - x.unsqueeze(1)
        if cell is not None:
            delta = minimum_image(delta, cell.detach().double())
        distance = torch.linalg.norm(delta, dim=-1).fill_diagonal_(math.inf)
        closest = float(distance.min())
        if closest < MIN_DISTANCE:
            i, j = divmod(int(torch.argmin(distance)), x.shape[0])
            raise ValueError(f"atoms {i} and {j} are {closest:.4g} nm apart (< {MIN_DISTANCE} nm); positions "
                             "must be in nm (not Angstrom) and atoms must not overlap")


def predict(model: torch.nn.Module, species: torch.Tensor, positions: torch.Tensor,
            cell: Optional[torch.Tensor] = None, total_charge: float = 0.0) -> Dict[str, torch.Tensor]:
    """Validate the input, then return the committee-mean outputs and uncertainties.

    Works for eager and TorchScript (loaded) models. Returns detached tensors: ``energy``
    (kJ/mol), ``forces`` [n, 3] (kJ/mol/nm), for charge models ``charges`` [n] (e) and
    ``dipole`` [3] (e nm), and ``energy_std`` and ``force_std`` [n] (committee spread,
    zeros for a single model).
    """
    validate_inputs(model, species, positions, cell)
    x = positions.detach().clone().requires_grad_(True)
    outputs = model.evaluate(species, x, cell, float(total_charge))
    energy = outputs["energy"].mean(0)
    forces = -torch.autograd.grad(energy, x)[0]
    result = {"energy": energy.detach(), "forces": forces.detach()}
    for key in ("charges", "dipole"):
        if key in outputs:
            result[key] = outputs[key].mean(0).detach()
    _, result["energy_std"], result["force_std"] = model.energy_and_uncertainty(species, positions, cell,
                                                                                   float(total_charge))
    return result
