"""What every mlmm network potential shares: element lookup, energy scaling, committee outputs.

A model computes, for each of its M committee members, atomic energies (and, for
charge models, atomic charges). Public TorchScript entry points:

- ``forward(species, positions, cell=None) -> energy`` (kJ/mol, committee mean): the
  potential contract of :mod:`mlmm.potentials.contract`.
- ``evaluate(species, positions, cell, total_charge) -> dict`` of per-member tensors:
  ``energy`` [M], ``atomic_energies`` [M, n], and for charge models ``charges`` [M, n] (e)
  and ``dipole`` [M, 3] (e nm).
- ``energy_and_uncertainty(species, positions, cell) -> (E, sigma_E, sigma_F)``: mean
  energy, committee standard deviation of the energy and per-atom force spread (kJ/mol/nm)
  from one batched forward and one backward pass.

``species`` are atomic numbers (int64 [n]); positions are nm [n, 3]; ``cell`` is an
optional reduced triclinic box [3, 3] in nm. Inputs are cast to the model's dtype. Input
checks live on the Python side (:func:`mlmm.potentials.validation.validate_inputs`) so the
MD hot path stays free of host synchronisation.
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch

from mlmm.potentials.layers import MAX_ATOMIC_NUMBER, atomic_number
from mlmm.potentials.neighbors import neighbor_list, pair_vectors, static_shapes

#: Default capacity of the short-range neighbour list (atoms within the model cutoff).
DEFAULT_MAX_NEIGHBORS = 128


class NeuralPotential(torch.nn.Module):
    """Base class of the network potentials (not used on its own).

    Parameters
    ----------
    elements : sequence of str or int
        Elements the model is built for (symbols or atomic numbers).
    cutoff : float
        Interaction cutoff in nm.
    n_members : int
        Committee size M (1 for a single model).
    max_neighbors : int
        Capacity of the neighbour list per atom; an atom with more neighbours within the
        cutoff is an error on CPU and gives a NaN energy on GPUs (no host sync there).
    """

    family = "base"
    #: True for models whose member_outputs also take the MM environment (electrostatic embedding).
    uses_environment = False

    def __init__(self, elements: Sequence, cutoff: float, n_members: int = 1,
                 max_neighbors: int = DEFAULT_MAX_NEIGHBORS):
        super().__init__()
        numbers = sorted({atomic_number(e) for e in elements})
        if not numbers:
            raise ValueError("elements must name at least one element")
        if cutoff <= 0:
            raise ValueError(f"cutoff must be positive (nm), got {cutoff}")
        if n_members < 1:
            raise ValueError(f"n_members must be at least 1, got {n_members}")
        if max_neighbors < 1:
            raise ValueError(f"max_neighbors must be at least 1, got {max_neighbors}")
        self.supported_elements: List[int] = numbers
        self.cutoff = float(cutoff)
        self.n_members = int(n_members)
        self.max_neighbors = int(max_neighbors)
        self.default_total_charge = 0.0  # e; charge models let the user set it
        table = torch.full((MAX_ATOMIC_NUMBER + 1,), -1, dtype=torch.long)
        table[numbers] = torch.arange(len(numbers))
        self.register_buffer("element_table", table)
        # E_i = energy_scale[e] * network output + energy_shift[e]  (kJ/mol)
        self.register_buffer("energy_shift", torch.zeros(len(numbers)))
        self.register_buffer("energy_scale", torch.ones(len(numbers)))

    @property
    def n_elements(self) -> int:
        """Number of elements the model is built for."""
        return len(self.supported_elements)

    def set_energy_scaling(self, shifts: Mapping, scale: float | Mapping = 1.0) -> None:
        """Set per-element atomic reference energies and output scales (kJ/mol).

        ``shifts`` maps element (symbol or number) to its atomic energy; elements not given
        keep theirs. ``scale`` is one number for all elements or a mapping like ``shifts``.
        """
        for element, value in shifts.items():
            self.energy_shift[self._element_slot(element)] = float(value)
        scales = scale if isinstance(scale, Mapping) else {z: scale for z in self.supported_elements}
        for element, value in scales.items():
            self.energy_scale[self._element_slot(element)] = float(value)

    def _element_slot(self, element) -> int:
        z = atomic_number(element)
        if z not in self.supported_elements:
            raise ValueError(f"element {element!r} is not one of the model's elements {self.supported_elements}")
        return self.supported_elements.index(z)

    def prepare(self, species: torch.Tensor, positions: torch.Tensor, cell: Optional[torch.Tensor]
                ) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        """Element indices [n], positions and cell cast to the model dtype."""
        dtype = self.energy_shift.dtype
        element_index = self.element_table.index_select(0, species)
        return element_index, positions.to(dtype), None if cell is None else cell.to(dtype)

    @staticmethod
    def compact_lists(positions: torch.Tensor) -> bool:
        """Whether neighbour lists may follow the geometry of positions [M, n, 3] (``compact`` of
        :func:`~mlmm.potentials.neighbors.neighbor_list`): on CPU, when every member sees the same
        geometry. Frames batched along the member axis (training) need lists that do not, and so do
        fixed shapes (GPUs, compiled graphs: :func:`~mlmm.potentials.neighbors.static_shapes`)."""
        if static_shapes(positions):
            return False
        return positions.shape[0] == 1 or bool((positions == positions[0]).all())

    def short_range_pairs(self, positions: torch.Tensor, cell: Optional[torch.Tensor]
                          ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Neighbour list within the cutoff for positions [M, n, 3]: (neighbors, mask, vectors, overflow)."""
        neighbors, mask, shifts, overflow = neighbor_list(positions[0].detach(), self.cutoff, self.max_neighbors,
                                                          cell, self.compact_lists(positions))
        return neighbors, mask, pair_vectors(positions, neighbors, shifts), overflow

    def scaled_energies(self, raw: torch.Tensor, element_index: torch.Tensor) -> torch.Tensor:
        """Atomic energies [M, n] (kJ/mol) from raw network outputs [M, n]."""
        return raw * self.energy_scale.index_select(0, element_index) + self.energy_shift.index_select(
            0, element_index)

    def guard_overflow(self, energy: torch.Tensor, overflow: torch.Tensor) -> torch.Tensor:
        """Raise (CPU) or poison the energy with NaN (fixed shapes: no host sync) when the list
        overflowed."""
        if not static_shapes(energy):
            if bool(overflow):
                raise RuntimeError(f"an atom has more neighbours within a cutoff than the neighbour list holds "
                                   f"(max_neighbors={self.max_neighbors} within {self.cutoff} nm; HDNNP also has "
                                   "max_angular_neighbors); rebuild the model with a larger capacity")
            return energy
        return torch.where(overflow, torch.full_like(energy, float("nan")), energy)

    def member_outputs(self, element_index: torch.Tensor, positions: torch.Tensor,
                       cell: Optional[torch.Tensor], total_charge: float) -> Dict[str, torch.Tensor]:
        """Per-member outputs for positions [M, n, 3] (model dtype); defined by each family."""
        raise NotImplementedError

    @torch.jit.export
    def evaluate(self, species: torch.Tensor, positions: torch.Tensor, cell: Optional[torch.Tensor] = None,
                 total_charge: Optional[float] = None) -> Dict[str, torch.Tensor]:
        """Per-member outputs (see module docstring) for positions [n, 3] in nm.

        ``total_charge`` (e) defaults to the model's ``default_total_charge``.
        """
        element_index, x, box = self.prepare(species, positions, cell)
        members = x.unsqueeze(0).expand(self.n_members, x.shape[0], 3)
        charge = self.default_total_charge if total_charge is None else total_charge
        return self.member_outputs(element_index, members, box, charge)

    def forward(self, species: torch.Tensor, positions: torch.Tensor,
                cell: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.evaluate(species, positions, cell, None)["energy"].mean(0)

    @torch.jit.export
    def energy_and_uncertainty(self, species: torch.Tensor, positions: torch.Tensor,
                               cell: Optional[torch.Tensor] = None, total_charge: Optional[float] = None
                               ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Committee mean energy (kJ/mol), its spread sigma_E and the per-atom force spread sigma_F [n].

        sigma = sqrt(sum_m (x_m - mean)^2 / (M - 1)) (zero for M = 1); sigma_F of atom i
        is that of its force vector, sqrt(sum over x, y, z of the component variances).
        Each member gets its own copy of the positions, so one backward pass yields all
        members' forces.
        """
        element_index, x, box = self.prepare(species, positions, cell)
        members = x.detach().unsqueeze(0).repeat(self.n_members, 1, 1).requires_grad_(True)
        charge = self.default_total_charge if total_charge is None else total_charge
        energies = self.member_outputs(element_index, members, box, charge)["energy"]
        gradients = torch.autograd.grad([energies.sum()], [members])[0]
        assert gradients is not None
        if self.n_members == 1:
            return energies[0].detach(), torch.zeros_like(energies[0]), torch.zeros_like(x[:, 0])
        sigma_f = torch.sqrt(gradients.var(dim=0).sum(-1))
        return energies.mean().detach(), energies.detach().std(), sigma_f
