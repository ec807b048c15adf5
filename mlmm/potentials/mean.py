"""The mean of trained potentials of different architectures, as one potential.

A committee of one architecture is one batched network (:mod:`mlmm.potentials.committee`).
Networks of different families (a PhysNet and a PaiNN) share no parameter shapes, so their mean
is a module that evaluates each member and averages what it returns:

    E = sum_k w_k E_k,    q_i = sum_k w_k q_i,k,    sum_k w_k = 1,

with equal weights w_k = 1/K unless given, the charges keeping the total charge every member's sum to.
The buffer embedding's interaction energy, E(I u B) - E(B) plus the Coulomb term of I's charges with
the outer molecules, is linear in both, so the mean's is the mean of the members'; its error is
smaller than the members' when their errors are weakly correlated (for the water buffer: a PhysNet and
a PaiNN, 0.16 on the test frames). Members of different quality can be weighted: :func:`error_weights`
gives the weights that minimize the mean squared error of the mean on frames where the members' errors
are known (validation frames, never test frames).
The members' spread is the mean's uncertainty (``energy_and_uncertainty``, as for a committee).

:func:`average_potentials` builds the mean of in-memory modules (eager or TorchScript),
:func:`save_mean` writes the mean of saved model files with the metadata the schemes read.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from mlmm.potentials.anchored_buffer import VacuumAnchoredBuffer
from mlmm.potentials.contract import CHARGES_METHOD, WEIGHTED_METHOD
from mlmm.potentials.io import content_hash, load_potential, save_potential


class PotentialMean(torch.nn.Module):
    """The (weighted) mean energy of ``members`` (kJ/mol): ``forward(species, positions)``.

    Parameters
    ----------
    members : sequence of torch.nn.Module
        Two or more potentials (:mod:`mlmm.potentials.contract`) that know the elements the mean is
        used for. The mean supports the elements all members support and reaches as far as the
        longest member cutoff (nm).
    weights : sequence of float, optional
        One positive weight per member, normalized to sum to 1 (default: equal weights).
    """

    def __init__(self, members: Sequence[torch.nn.Module], weights: Optional[Sequence[float]] = None):
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"a mean needs at least two members, got {len(members)}")
        self.register_buffer("weights", _normalized(weights, len(members)))
        element_sets = [set(int(z) for z in getattr(m, "supported_elements", [])) for m in members]
        for i, elements in enumerate(element_sets):
            if not elements:
                raise ValueError(f"member {i} ({type(members[i]).__name__}) declares no supported_elements; give "
                                 "it that attribute (a list of atomic numbers), as mlmm networks and model files have")
        shared = set.intersection(*element_sets)
        if not shared:
            raise ValueError(f"the members share no element (their elements: {[sorted(s) for s in element_sets]}); "
                             "average models made for the same elements")
        self.members = torch.nn.ModuleList(members)
        self.supported_elements: List[int] = sorted(shared)
        self.cutoff = max(float(getattr(m, "cutoff", 0.0)) for m in members)

    def forward(self, species: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        energy = torch.zeros((), dtype=positions.dtype, device=positions.device)
        weights = self.weights.to(positions.dtype)
        for k, member in enumerate(self.members):
            energy = energy + weights[k] * member(species, positions).to(positions.dtype)
        return energy

    @torch.jit.export
    def energy_and_uncertainty(self, species: torch.Tensor, positions: torch.Tensor
                               ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mean energy (kJ/mol, weighted as ``forward``), the members' spread sigma_E and the per-atom force
        spread sigma_F [n] (kJ/mol/nm; unweighted sample standard deviations), as for a committee
        (:meth:`mlmm.potentials.NeuralPotential.energy_and_uncertainty`), the members being the models (a
        committee member counts with its committee-mean energy)."""
        energies: List[torch.Tensor] = []
        gradients: List[torch.Tensor] = []
        for member in self.members:
            x = positions.detach().clone().requires_grad_(True)
            energy = member(species, x).to(positions.dtype)
            gradient = torch.autograd.grad([energy], [x])[0]
            assert gradient is not None
            energies.append(energy.detach())
            gradients.append(gradient)
        energy_stack, gradient_stack = torch.stack(energies), torch.stack(gradients)
        mean = (self.weights.to(positions.dtype) * energy_stack).sum()
        return mean, energy_stack.std(), torch.sqrt(gradient_stack.var(dim=0).sum(-1))


class ChargePotentialMean(PotentialMean):
    """A :class:`PotentialMean` of charge models: also the mean energy and charges of ``energy_and_charges``."""

    @torch.jit.export
    def energy_and_charges(self, species: torch.Tensor, positions: torch.Tensor,
                           total_charge: float) -> Tuple[torch.Tensor, torch.Tensor]:
        """Mean energy (kJ/mol) and mean charges (e, summing to ``total_charge``)."""
        energy = torch.zeros((), dtype=positions.dtype, device=positions.device)
        charges = torch.zeros_like(positions[:, 0])
        weights = self.weights.to(positions.dtype)
        for k, member in enumerate(self.members):
            e, q = member.energy_and_charges(species, positions, total_charge)
            energy = energy + weights[k] * e.to(positions.dtype)
            charges = charges + weights[k] * q.to(positions.dtype)
        return energy, charges


class BufferPotentialMean(ChargePotentialMean):
    """A :class:`ChargePotentialMean` of buffer networks: also the mean of ``weighted_energy_and_charges``."""

    @torch.jit.export
    def weighted_energy_and_charges(self, species: torch.Tensor, positions: torch.Tensor, weights: torch.Tensor,
                                    total_charge: float) -> Tuple[torch.Tensor, torch.Tensor]:
        """Mean weighted energy (kJ/mol) and mean weighted charges (e); see
        :meth:`mlmm.potentials.PhysNet.weighted_energy_and_charges`."""
        energy = torch.zeros((), dtype=positions.dtype, device=positions.device)
        charges = torch.zeros_like(positions[:, 0])
        member_weights = self.weights.to(positions.dtype)
        for k, member in enumerate(self.members):
            e, q = member.weighted_energy_and_charges(species, positions, weights, total_charge)
            energy = energy + member_weights[k] * e.to(positions.dtype)
            charges = charges + member_weights[k] * q.to(positions.dtype)
        return energy, charges


def _normalized(weights: Optional[Sequence[float]], n_members: int) -> torch.Tensor:
    """``weights`` (default: equal) as a float64 tensor summing to 1; positive and one per member."""
    if weights is None:
        return torch.full((n_members,), 1.0 / n_members, dtype=torch.float64)
    values = torch.as_tensor([float(w) for w in weights], dtype=torch.float64)
    if values.numel() != n_members or not bool(torch.isfinite(values).all()) or bool((values <= 0).any()):
        raise ValueError(f"a mean of {n_members} members needs {n_members} positive finite weights, got "
                         f"{[float(w) for w in weights]}")
    return values / values.sum()


def error_weights(member_errors) -> np.ndarray:
    """The weights (summing to 1) whose mean has the least mean squared error on frames where each member's
    error is known: ``member_errors`` [members, frames] (e.g. kJ/mol on validation frames, never test frames).

    Minimizes w^T M w subject to sum_k w_k = 1, M_kl = mean over frames of e_k e_l (bias included):
    w = M^-1 1 / (1^T M^-1 1). Raises ValueError where a member would get a weight <= 0 (its errors follow
    a better member's so closely that it only adds noise): leave it out of the mean."""
    errors = np.asarray(member_errors, dtype=np.float64)
    if errors.ndim != 2 or errors.shape[0] < 2 or errors.shape[1] < errors.shape[0]:
        raise ValueError(f"error_weights needs the errors of two or more members on at least as many frames "
                         f"([members, frames]), got shape {errors.shape}")
    if np.linalg.matrix_rank(errors) < len(errors):
        raise ValueError("the members' errors are linearly dependent (the same model twice?); leave the "
                         "duplicate out")
    moments = errors @ errors.T / errors.shape[1]
    solved = np.linalg.solve(moments, np.ones(len(errors)))
    weights = solved / solved.sum()
    if (weights <= 0).any():
        raise ValueError(f"the least-squares weights {weights.round(3).tolist()} give a member no positive "
                         "weight; leave that member out")
    return weights


def _exports(member: torch.nn.Module, method: str) -> bool:
    return callable(getattr(member, method, None))


def average_potentials(members: Sequence[torch.nn.Module], weights: Optional[Sequence[float]] = None
                       ) -> torch.nn.Module:
    """The mean of ``members`` (weighted by ``weights``, default equal; :class:`PotentialMean`) with every
    method all of them export (energy; charges; weighted buffer energies). Members anchored on a vacuum
    potential (:class:`~mlmm.potentials.VacuumAnchoredBuffer`) must share it (same parameters); their mean is
    the vacuum potential anchoring the mean of their networks."""
    if any(getattr(m, "embedding_scheme", None) is not None for m in members):
        raise ValueError("electrostatic embedding models cannot be averaged (their field terms are not "
                         "members' means); average vacuum, charge or buffer models")
    anchored = [hasattr(m, "vacuum") and hasattr(m, "network") for m in members]
    if any(anchored):
        if not all(anchored):
            raise ValueError("either all or none of the members of a mean may be anchored on a vacuum potential")
        vacuum_hashes = {content_hash(m.vacuum) for m in members}
        if len(vacuum_hashes) > 1:
            raise ValueError("the members are anchored on different vacuum potentials; a mean needs one "
                             "(rescript them with the same vacuum model: `mlmm rescript --vacuum`)")
        return VacuumAnchoredBuffer(members[0].vacuum, average_potentials([m.network for m in members], weights))
    if all(_exports(m, WEIGHTED_METHOD) and _exports(m, CHARGES_METHOD) for m in members):
        return BufferPotentialMean(members, weights)
    if all(_exports(m, CHARGES_METHOD) for m in members):
        return ChargePotentialMean(members, weights)
    return PotentialMean(members, weights)


def save_mean(paths: Sequence, output, weights: Optional[Sequence[float]] = None) -> Path:
    """Write the mean of the mlmm model files ``paths`` to ``output`` (:func:`average_potentials`, weighted
    by ``weights``, default equal).

    The file records each member's file, name, architecture, content hash and weight (``extra["members"]``)
    and, for buffer networks, the outer coupling their labels were made for (all members must share
    it). Creates the directory of ``output`` if needed; returns the path written.
    """
    loaded = [load_potential(path) for path in paths]
    couplings = {metadata.get("extra", {}).get("buffer_outer_coupling") for _, metadata in loaded}
    if len(couplings) > 1:
        raise ValueError(f"the members were trained for different outer couplings of the buffer scheme "
                         f"({sorted(str(c) for c in couplings)}); a mean needs one")
    mean = average_potentials([module for module, _ in loaded], weights)
    normalized = _normalized(weights, len(loaded)).tolist()
    extra = {"members": [{"file": str(path), "name": metadata.get("name"),
                          "architecture": metadata.get("architecture"), "content_hash": metadata["content_hash"],
                          "weight": weight}
                         for path, (_, metadata), weight in zip(paths, loaded, normalized)]}
    coupling = couplings.pop()
    if coupling is not None:
        extra["buffer_outer_coupling"] = coupling
    names = " + ".join(str(metadata.get("name")) for _, metadata in loaded)
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    return save_potential(mean, output, name=f"mean of {names}", extra=extra)
