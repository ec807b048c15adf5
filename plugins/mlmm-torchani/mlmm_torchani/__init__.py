"""TorchANI models behind mlmm's potential contract.

    import torchani, mlmm
    from mlmm_torchani import ANIPotential
    potential = ANIPotential(torchani.models.ANI2x())  # or any model built with periodic_table_index=True
    system = mlmm.create_mixed_system(topology, mm_system, "resname LIG", potential)

``mlmm adapt torchani MODEL.pt OUTPUT.pt`` turns a ``torch.save``-d TorchANI model into an mlmm
model file that any mlmm tool (and the ``openmmml-mlmm`` plugin) loads without this package.
TorchANI works in Angstrom and Hartree; the adapter converts to nm and kJ/mol. The energy
includes the model's self (atomic reference) energies, as TorchANI's own calculator reports it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Union

import openmm.app as app
import torch

from mlmm.potentials.adapters import load_pickled_module
from mlmm.units import ANGSTROM_TO_NM, HARTREE_TO_KJ_PER_MOL

__all__ = ["ANIPotential", "ani2x_architecture", "from_file"]


class ANIPotential(torch.nn.Module):
    """A TorchANI model (single network or ensemble) as an mlmm potential.

    Parameters
    ----------
    model : torch.nn.Module
        A TorchANI model taking ``(species, coordinates_angstrom)`` with atomic numbers as species
        (``periodic_table_index=True``, TorchANI's default for its built-in models) and returning
        energies in Hartree.

    Attributes
    ----------
    supported_elements : list of int
        Atomic numbers of the model's element networks.
    cutoff : float
        The AEV's radial cutoff in nm.
    """

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        if not getattr(model, "periodic_table_index", True):
            raise ValueError("the TorchANI model takes internal species indices (periodic_table_index=False); build "
                             "it with periodic_table_index=True so that it takes atomic numbers.")
        symbols = getattr(model, "symbols", None)
        if not symbols:
            raise TypeError(f"expected a TorchANI model (with .symbols and an AEV computer); got "
                            f"{type(model).__name__}.")
        self.model = model
        self.supported_elements = [app.Element.getBySymbol(symbol).atomic_number for symbol in symbols]
        self.cutoff = float(model.aev_computer.radial.cutoff) * ANGSTROM_TO_NM
        self.angstrom_per_nm = 1.0 / ANGSTROM_TO_NM
        self.kj_per_mol_per_hartree = HARTREE_TO_KJ_PER_MOL
        self.register_buffer("dtype_probe", torch.zeros(0, dtype=next(model.parameters()).dtype))

    def forward(self, species: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Energy in kJ/mol of atoms ``species`` (atomic numbers [n]) at ``positions`` [n, 3] in nm."""
        coordinates = (positions * self.angstrom_per_nm).to(self.dtype_probe.dtype).unsqueeze(0)
        energies = self.model((species.unsqueeze(0), coordinates)).energies
        return energies.sum() * self.kj_per_mol_per_hartree


def from_file(path: Union[str, Path]) -> ANIPotential:
    """The mlmm potential of a TorchANI model saved whole with ``torch.save(model, path)``."""
    return ANIPotential(load_pickled_module(path, "TorchANI"))


def ani2x_architecture(ensemble_size: int = 8, seed: int = 0) -> torch.nn.Module:
    """ANI-2x's architecture (AEV, element networks, GSAE self energies) with random weights.

    For tests and benchmarks: the trained weights are a download, which these need not rely on.
    """
    from torchani.models import SYMBOLS_2X, Assembler

    torch.manual_seed(seed)
    assembler = Assembler(periodic_table_index=True)
    assembler.set_symbols(SYMBOLS_2X)
    assembler.set_global_cutoff_fn("cosine")
    assembler.set_aev_computer(radial="ani2x", angular="ani2x", strategy="pyaev")
    assembler.set_atomic_networks(ctor="ani2x")
    assembler.set_neighborlist("all_pairs")
    assembler.set_gsaes_as_self_energies("wb97x-631gd")
    return assembler.assemble(ensemble_size)
