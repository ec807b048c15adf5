"""A buffer network anchored on a vacuum potential of the ML region.

The buffer embedding replaces the interaction of the ML region I with its buffer B by a
network difference E_d(I u B) - E_d(B). Trained on E(I u B) - E(B), the network must also learn
I's own energy E(I), which for a flexible solute varies far more than the interaction does
(the formic acid dimer: 22 kJ/mol against 11 kJ/mol over the solvent snapshots). Here a vacuum
potential supplies I's energy and the network learns only the rest:

    E = E_vac(I) + E_d(I u B) - E_d(B),

E_d trained on E(I u B) - E(B) - E(I) (zero for the lone ML region; ``[data] delta_from`` with
the vacuum labels of the same geometries and ``[model] vacuum_model`` in the training
configuration). The interaction energy E_d(I u B) - E_d(B) - E_d(I) keeps its form; E_vac(I)
cancels from it.
"""

from __future__ import annotations

from typing import Tuple

import torch


class VacuumAnchoredBuffer(torch.nn.Module):
    """The model of the buffer embedding when a vacuum potential supplies the ML region's own energy.

    ``forward(species, positions)`` is the energy of the lone ML region, E_vac + E_d (kJ/mol);
    ``weighted_energy_and_charges`` is the difference network's (what the buffer scheme evaluates on
    I u B and on B); the buffer scheme adds ``vacuum(species_I, positions_I)`` once per step
    (:class:`~mlmm.embedding.modules.BufferEmbeddingModule`).

    Parameters
    ----------
    vacuum : torch.nn.Module
        A potential of the ML region alone, ``forward(species, positions) -> energy`` (kJ/mol).
    network : torch.nn.Module
        The difference network, exporting ``weighted_energy_and_charges`` (e.g. a
        :class:`~mlmm.potentials.PhysNet`) and knowing the ML region's and the solvent's elements.
    """

    def __init__(self, vacuum: torch.nn.Module, network: torch.nn.Module):
        super().__init__()
        if not callable(getattr(network, "weighted_energy_and_charges", None)):
            raise TypeError("the difference network of a vacuum-anchored buffer model must export "
                            "weighted_energy_and_charges (e.g. a PhysNet)")
        self.vacuum = vacuum
        self.network = network
        # the elements the scheme checks for I and for the solvent molecules that may join the buffer
        self.supported_elements = [int(z) for z in network.supported_elements]
        self.cutoff = float(network.cutoff)

    def forward(self, species: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        energy = self.vacuum(species, positions) + self.network(species, positions)
        return energy.to(positions.dtype)

    @torch.jit.export
    def weighted_energy_and_charges(self, species: torch.Tensor, positions: torch.Tensor, weights: torch.Tensor,
                                    total_charge: float) -> Tuple[torch.Tensor, torch.Tensor]:
        """The difference network's weighted energy E_d (kJ/mol) and charges (e); see
        :meth:`mlmm.potentials.PhysNet.weighted_energy_and_charges`."""
        return self.network.weighted_energy_and_charges(species, positions, weights, total_charge)
