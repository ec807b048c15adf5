"""MACE models behind mlmm's potential contract.

    import torch, mlmm
    from mlmm_mace import MACEPotential
    potential = MACEPotential(torch.load("my.model", weights_only=False))
    system = mlmm.create_mixed_system(topology, mm_system, "resname LIG", potential)

``mlmm adapt mace MY.model OUTPUT.pt`` turns a MACE model file (the whole module saved with
``torch.save``, as MACE's training writes it) into an mlmm model file that any mlmm tool loads
without this package. MACE works in Angstrom and eV; the adapter converts to nm and kJ/mol.
The energy includes the atomic reference energies E0, as MACE's own calculator reports it.

The ML region is a molecule or cluster without periodic images of its own (mlmm makes it whole
and hands it over alone), so the graph is all pairs within the model's ``r_max``, built inside
the TorchScript module; its size follows the pair count, so CUDA graphs do not apply.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Union

import torch

from mlmm.potentials.adapters import load_pickled_module
from mlmm.units import ANGSTROM_TO_NM, EV_TO_KJ_PER_MOL

__all__ = ["MACEPotential", "from_file"]


class MACEPotential(torch.nn.Module):
    """A MACE model as an mlmm potential.

    Parameters
    ----------
    model : torch.nn.Module
        A ``mace.modules.MACE`` (or ``ScaleShiftMACE``) model; it is compiled with
        ``e3nn.util.jit.compile`` so that mlmm can run it through TorchForce.

    Attributes
    ----------
    supported_elements : list of int
        The model's atomic numbers.
    cutoff : float
        The model's ``r_max`` in nm.
    """

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        if not hasattr(model, "atomic_numbers") or not hasattr(model, "r_max"):
            raise TypeError(f"expected a MACE model (with atomic_numbers and r_max); got {type(model).__name__}.")
        from e3nn.util import jit

        numbers = [int(z) for z in model.atomic_numbers]
        self.supported_elements = numbers
        self.r_max_angstrom = float(model.r_max)
        self.cutoff = self.r_max_angstrom * ANGSTROM_TO_NM
        self.n_elements = len(numbers)
        self.angstrom_per_nm = 1.0 / ANGSTROM_TO_NM
        self.kj_per_mol_per_ev = EV_TO_KJ_PER_MOL
        element_index = torch.full((max(numbers) + 1,), -1, dtype=torch.long)
        element_index[torch.tensor(numbers)] = torch.arange(len(numbers))
        self.register_buffer("element_index", element_index)
        self.register_buffer("dtype_probe", torch.zeros(0, dtype=next(model.parameters()).dtype))
        self.model = model if isinstance(model, torch.jit.ScriptModule) else jit.compile(model)

    def graph(self, species: torch.Tensor, positions: torch.Tensor) -> Dict[str, torch.Tensor]:
        """MACE's input for one molecule: ``positions`` in Angstrom, all pairs within r_max as edges."""
        n = positions.shape[0]
        # detached positions rather than torch.no_grad(), which scripted modules can mis-optimise (see
        # mlmm.embedding.environment.nearest_distances)
        x = positions.detach()
        delta = x.unsqueeze(0) - x.unsqueeze(1)
        within = (delta * delta).sum(-1) < self.r_max_angstrom ** 2
        within.fill_diagonal_(False)
        edges = torch.nonzero(within).t().contiguous()
        zeros = torch.zeros(edges.shape[1], 3, dtype=positions.dtype, device=positions.device)
        one_hot = torch.nn.functional.one_hot(self.element_index[species], self.n_elements).to(positions.dtype)
        return {
            "positions": positions,
            "node_attrs": one_hot,
            "edge_index": edges,
            "shifts": zeros,
            "unit_shifts": zeros,
            "cell": torch.zeros(3, 3, dtype=positions.dtype, device=positions.device),
            "batch": torch.zeros(n, dtype=torch.long, device=positions.device),
            "ptr": torch.tensor([0, n], dtype=torch.long, device=positions.device),
        }

    def forward(self, species: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Energy in kJ/mol of atoms ``species`` (atomic numbers [n]) at ``positions`` [n, 3] in nm."""
        x = (positions * self.angstrom_per_nm).to(self.dtype_probe.dtype)
        energy = self.model(self.graph(species, x), compute_force=False)["energy"]
        if energy is None:
            raise RuntimeError("the MACE model returned no energy")
        return energy.sum() * self.kj_per_mol_per_ev


def from_file(path: Union[str, Path]) -> MACEPotential:
    """The mlmm potential of a MACE model file (the module saved whole with ``torch.save``, as MACE's training
    writes it)."""
    return MACEPotential(load_pickled_module(path, "MACE"))
