"""The torch modules that OpenMM runs: all positions (+ box) in, embedded ML energy out.

Each module follows openmm-torch's TorchForce contract,
``forward(positions[N_total, 3] nm, boxvectors[3, 3] nm or None) -> energy kJ/mol``;
forces are minus the autograd gradient of that one scalar, MM atoms included.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch

from mlmm.embedding.environment import (anchor_vectors, molecule_offsets, molecule_weights, nearest_distances,
                                        placed_molecules, selected_molecules)
from mlmm.embedding.kernels import reaction_field, shifted_force, smooth_switch
from mlmm.embedding.pbc import make_whole
from mlmm.potentials.neighbors import static_shapes
from mlmm.units import COULOMB_CONSTANT

KERNELS = ("reaction-field", "shifted-force")


def _model_dtype(potential: torch.nn.Module) -> torch.dtype:
    """The floating dtype of the potential's first parameter or buffer (float64 if none)."""
    for tensor in list(potential.parameters()) + list(potential.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float64


class MechanicalEmbeddingModule(torch.nn.Module):
    """E = E_NN(R_I): the potential on the (made whole) ML atoms.

    Parameters
    ----------
    potential : torch.nn.Module
        The ML potential (see :mod:`mlmm.potentials.contract`).
    ml_indices : sequence of int
        Indices of the ML atoms among all particles.
    atomic_numbers : sequence of int
        Their atomic numbers.
    molecule_roots : sequence of int
        For each ML atom, the position (within ``ml_indices``) of the first ML atom of its
        molecule; used to make the region whole in periodic systems.
    """

    def __init__(self, potential: torch.nn.Module, ml_indices, atomic_numbers, molecule_roots):
        super().__init__()
        self.potential = potential
        self.register_buffer("ml_indices", torch.as_tensor(list(ml_indices), dtype=torch.long))
        roots = list(molecule_roots)
        single_molecule = all(root == 0 for root in roots)  # then make_whole needs one pass, not two
        self.register_buffer("molecule_roots", torch.as_tensor([] if single_molecule else roots, dtype=torch.long))
        self.register_buffer("species", torch.as_tensor(list(atomic_numbers), dtype=torch.long))
        # An empty tensor carrying the model's dtype (and following .to(device)).
        self.register_buffer("model_dtype_probe", torch.zeros(0, dtype=_model_dtype(potential)))

    def ml_positions(self, positions: torch.Tensor, boxvectors: Optional[torch.Tensor]) -> torch.Tensor:
        """ML atom positions in nm, made whole when a box is given."""
        x = positions.index_select(0, self.ml_indices)
        if boxvectors is not None:
            x = make_whole(x, boxvectors.to(x.dtype), self.molecule_roots)
        return x

    def forward(self, positions: torch.Tensor, boxvectors: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = self.ml_positions(positions, boxvectors).to(self.model_dtype_probe.dtype)
        return self.potential(self.species, x).to(positions.dtype)


class GroupEnvironmentModule(MechanicalEmbeddingModule):
    """Shared state of the charge-coupled schemes: whole MM groups (molecules) around the ML region.

    Parameters
    ----------
    group_atoms : sequence of sequences of int
        For each MM group, the particle indices of its charged atoms.
    group_charges : sequence of sequences of float
        Their force-field charges in e.
    anchor_indices : sequence of int
        For each group, the particle index of its anchor atom.
    total_charge : float
        Total charge of the ML region in e.
    cutoff, switch_distance : float
        The groups' switching range in nm.
    capacity : int
        Groups gathered each step where shapes are fixed (GPUs, compiled graphs:
        :func:`~mlmm.embedding.environment.selected_molecules`); the energy is NaN when more are
        inside the cutoff (:meth:`guard_capacity`).
    """

    def __init__(self, potential: torch.nn.Module, ml_indices, atomic_numbers, molecule_roots, group_atoms,
                 group_charges, anchor_indices, total_charge: float, cutoff: float, switch_distance: float,
                 capacity: int):
        super().__init__(potential, ml_indices, atomic_numbers, molecule_roots)
        atoms, charges = padded_groups(group_atoms, group_charges, anchor_indices)
        self.register_buffer("group_atoms", atoms)
        self.register_buffer("group_charges", charges)
        self.register_buffer("anchor_indices", torch.as_tensor(list(anchor_indices), dtype=torch.long))
        self.total_charge = float(total_charge)
        self.cutoff = float(cutoff)
        self.switch_distance = float(switch_distance)
        self.capacity = min(int(capacity), atoms.shape[0])
        self.coulomb_constant = COULOMB_CONSTANT

    def nearby_groups(self, x_ml: torch.Tensor, positions: torch.Tensor, boxvectors: Optional[torch.Tensor]
                      ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The one distance screen per step and the groups it selects.

        Returns ``nearest`` [G] (nm, every group's anchor to the nearest ML atom, no gradient; exact
        within the cutoff, a lower bound beyond it: :func:`~mlmm.embedding.environment.nearest_distances`),
        ``chosen`` [K] (the selected groups, :func:`~mlmm.embedding.environment.selected_molecules`),
        their ``anchors`` [K], and ``to_anchor`` [n_ml, K, 3] and ``distances`` [n_ml, K] (nm, with
        gradient; :func:`~mlmm.embedding.environment.anchor_vectors`).
        """
        nearest = nearest_distances(x_ml, positions, boxvectors, self.anchor_indices, self.cutoff, self.capacity)
        chosen = selected_molecules(nearest, self.cutoff, self.capacity)
        anchors = self.anchor_indices.index_select(0, chosen)
        to_anchor, distances = anchor_vectors(x_ml, positions, boxvectors, anchors)
        return nearest, chosen, anchors, to_anchor, distances

    def guard_capacity(self, energy: torch.Tensor, inside: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """``energy`` in the dtype of ``positions``; NaN with fixed shapes when more molecules are
        ``inside`` the cutoff than the ``capacity`` gathered."""
        if not static_shapes(positions):
            return energy.to(positions.dtype)
        return torch.where(inside > self.capacity, torch.full_like(energy, float("nan")), energy).to(positions.dtype)


class MLChargesEmbeddingModule(GroupEnvironmentModule):
    """E = E_NN(R_I) + k_e sum_i q_i(R_I) sum_m w(d_im) sum_{j in m} q_j K(r_ij).

    ``m`` runs over whole MM groups (residues); ``d_im`` is the distance from ML atom ``i``
    to the group's anchor atom and ``w`` the C2 switch from 1 at ``switch_distance`` to 0
    at ``cutoff``, so each group enters and leaves as a whole and E, F vanish smoothly at
    the cutoff. ``K`` is the reaction-field or shifted-force kernel. Charges come from
    ``potential.energy_and_charges`` and their dq/dR terms enter the forces. After the one
    distance screen over the anchors, only groups within the cutoff of an ML atom are
    evaluated (:func:`~mlmm.embedding.environment.selected_molecules`).

    Parameters
    ----------
    group_atoms, group_charges, anchor_indices, total_charge, cutoff, switch_distance, capacity
        See :class:`GroupEnvironmentModule`.
    kernel : str
        "reaction-field" or "shifted-force".
    dielectric : float
        Reaction-field dielectric constant.
    """

    def __init__(self, potential: torch.nn.Module, ml_indices, atomic_numbers, molecule_roots, group_atoms,
                 group_charges, anchor_indices, total_charge: float, cutoff: float, switch_distance: float,
                 kernel: str, dielectric: float, capacity: int):
        if kernel not in KERNELS:
            raise ValueError(f"kernel={kernel!r} is not one of {KERNELS}.")
        super().__init__(potential, ml_indices, atomic_numbers, molecule_roots, group_atoms, group_charges,
                         anchor_indices, total_charge, cutoff, switch_distance, capacity)
        self.use_reaction_field = kernel == "reaction-field"
        self.dielectric = float(dielectric)

    def interaction_energy(self, x_ml: torch.Tensor, charges: torch.Tensor, positions: torch.Tensor,
                           boxvectors: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        """ML-MM Coulomb energy in kJ/mol for ML positions ``x_ml`` and charges ``charges``, and the
        number of molecules with an anchor inside the cutoff."""
        nearest, chosen, anchors, to_anchor, distances = self.nearby_groups(x_ml, positions, boxvectors)
        weight = smooth_switch(distances, self.switch_distance, self.cutoff)  # [n_ml, K]
        in_group = molecule_offsets(positions, boxvectors, anchors, self.group_atoms.index_select(0, chosen))
        r = torch.linalg.norm(to_anchor.unsqueeze(2) + in_group.unsqueeze(0), dim=-1)
        if self.use_reaction_field:
            kernel = reaction_field(r, self.cutoff, self.dielectric)
        else:
            kernel = shifted_force(r, self.cutoff)
        mm_charges = self.group_charges.index_select(0, chosen).to(r.dtype)
        potential_at_ml = (weight.unsqueeze(-1) * kernel * mm_charges.unsqueeze(0)).sum((1, 2))
        return self.coulomb_constant * (charges.to(r.dtype) * potential_at_ml).sum(), (nearest < self.cutoff).sum()

    def forward(self, positions: torch.Tensor, boxvectors: Optional[torch.Tensor] = None) -> torch.Tensor:
        x_ml = self.ml_positions(positions, boxvectors)
        energy, charges = self.potential.energy_and_charges(
            self.species, x_ml.to(self.model_dtype_probe.dtype), self.total_charge)
        coupling, inside = self.interaction_energy(x_ml, charges, positions, boxvectors)
        return self.guard_capacity(energy.to(positions.dtype) + coupling, inside, positions)


def padded_groups(group_atoms, group_charges, anchor_indices) -> Tuple[torch.Tensor, torch.Tensor]:
    """Group tables [G, A]: atom indices (short groups padded with their anchor) and charges (padding 0 e)."""
    width = max(len(atoms) for atoms in group_atoms)
    atoms = [list(a) + [anchor] * (width - len(a)) for a, anchor in zip(group_atoms, anchor_indices)]
    charges = [list(q) + [0.0] * (width - len(q)) for q in group_charges]
    return torch.as_tensor(atoms, dtype=torch.long), torch.as_tensor(charges, dtype=torch.float64)


class ElectrostaticEmbeddingModule(GroupEnvironmentModule):
    """E = E_NN(R_I; {w_m q_j, r_j}): the ML region in the field of the MM molecules around it.

    Each MM molecule m (a residue with charged atoms) enters with the weight w_m of
    :func:`mlmm.embedding.environment.molecule_weights` (distances from the ML atoms to its
    anchor atom, minimum image), and all its atoms, placed whole next to the ML region, with
    charges w_m q_j. After the one distance screen over the anchors, only the molecules inside
    the cutoff are gathered (on GPUs the ``capacity`` nearest, a fixed shape; more molecules
    inside the cutoff than that gives a NaN energy), so the work after the screen does not grow
    with the box. The potential's ``energy_in_field`` gives the energy.

    Parameters are those of :class:`GroupEnvironmentModule`; ``cutoff`` and ``switch_distance``
    are the environment's switching range the model was trained with.
    """

    def environment(self, x_ml: torch.Tensor, positions: torch.Tensor, boxvectors: Optional[torch.Tensor]
                    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """MM positions [K*A, 3] (nm, next to the ML region), weighted charges [K*A] (e), and the
        number of molecules with an anchor inside the cutoff."""
        nearest, chosen, anchors, to_anchor, distances = self.nearby_groups(x_ml, positions, boxvectors)
        weights = molecule_weights(distances, self.switch_distance, self.cutoff)
        mm_positions = placed_molecules(x_ml, positions, boxvectors, to_anchor, distances, anchors,
                                        self.group_atoms.index_select(0, chosen)).reshape(-1, 3)
        mm_charges = (self.group_charges.index_select(0, chosen).to(positions.dtype) * weights.unsqueeze(1)).reshape(-1)
        return mm_positions, mm_charges, (nearest < self.cutoff).sum()

    @torch.jit.export
    def report(self, positions: torch.Tensor, boxvectors: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """What the embedding sees: ``molecules`` (MM molecules with a non-zero weight), the vacuum,
        static and induced energies (kJ/mol), ML ``charges`` (e), ``induced_dipoles`` and ``dipole`` (e nm)."""
        x_ml = self.ml_positions(positions, boxvectors)
        mm_positions, mm_charges, inside = self.environment(x_ml, positions, boxvectors)
        dtype = self.model_dtype_probe.dtype
        outputs = self.potential.embedding_outputs(self.species, x_ml.to(dtype), mm_positions.to(dtype),
                                                   mm_charges.to(dtype), self.total_charge)
        outputs["molecules"] = inside
        return outputs

    def forward(self, positions: torch.Tensor, boxvectors: Optional[torch.Tensor] = None) -> torch.Tensor:
        x_ml = self.ml_positions(positions, boxvectors)
        mm_positions, mm_charges, inside = self.environment(x_ml, positions, boxvectors)
        dtype = self.model_dtype_probe.dtype
        energy, _ = self.potential.energy_in_field(self.species, x_ml.to(dtype), mm_positions.to(dtype),
                                                   mm_charges.to(dtype), self.total_charge)
        return self.guard_capacity(energy, inside, positions)

    def energy_terms(self) -> List[torch.nn.Module]:
        """Modules of the same arguments whose energies sum to this one's, for compiling each alone
        (:mod:`mlmm.bridge.ahead_of_time`): the vacuum energy and the embedding energy when the
        potential is an :class:`~mlmm.potentials.ElectrostaticPotential`, else this module. Inductor
        (torch 2.12) miscompiles the gradient of the two networks in one graph, not of each alone."""
        if not (hasattr(self.potential, "vacuum") and hasattr(self.potential, "embedding")):
            return [self]
        return [ElectrostaticTerm(self, "vacuum"), ElectrostaticTerm(self, "embedding")]


class ElectrostaticTerm(torch.nn.Module):
    """One term of an :class:`ElectrostaticEmbeddingModule`'s energy (kJ/mol), same arguments:
    ``"vacuum"``, the vacuum network on the ML region, or ``"embedding"``, the embedding network's
    E_emb in the field of the MM molecules (committee mean; NaN on a capacity overflow)."""

    def __init__(self, module: ElectrostaticEmbeddingModule, term: str):
        super().__init__()
        if term not in ("vacuum", "embedding"):
            raise ValueError(f"term={term!r} is not 'vacuum' or 'embedding'")
        self.module = module
        self.term = term

    def forward(self, positions: torch.Tensor, boxvectors: Optional[torch.Tensor] = None) -> torch.Tensor:
        module = self.module
        x_ml = module.ml_positions(positions, boxvectors)
        dtype = module.model_dtype_probe.dtype
        if self.term == "vacuum":
            return module.potential.vacuum(module.species, x_ml.to(dtype)).to(positions.dtype)
        mm_positions, mm_charges, inside = module.environment(x_ml, positions, boxvectors)
        outputs = module.potential.embedding.evaluate_in_field(module.species, x_ml.to(dtype), mm_positions.to(dtype),
                                                               mm_charges.to(dtype), module.total_charge)
        return module.guard_capacity(outputs["energy"].mean(0), inside, positions)


#: How the buffer scheme couples the cluster I u B to the molecules beyond the buffer
#: (:class:`BufferEmbeddingModule`): the charges of I in I u B, or the charge change
#: q(I u B) - q(B) of every atom of the cluster.
OUTER_COUPLINGS = ("ml-charges", "charge-difference")


class NoVacuumEnergy(torch.nn.Module):
    """The vacuum term of a buffer model without one: zero (kJ/mol)."""

    def forward(self, species: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return torch.zeros((), dtype=positions.dtype, device=positions.device)


class BufferEmbeddingModule(GroupEnvironmentModule):
    """BuRNN-style buffer region with smooth membership (PHYSICS.md section 2, "buffer").

    E = E_NN(I u B; w) - E_NN(B; w) - sum_m w_m E_LJ(I, m)
        + k_e sum_a dq_a sum_{m != m(a)} c_m sum_{j in m} q_j / r_aj,   c_m = s_m (1 - w_m),

    B: the neutral MM molecules whose anchor lies within ``buffer_cutoff`` of an ML atom, each
    with weight w_m (:func:`~mlmm.embedding.environment.molecule_weights`, 1 inside
    ``buffer_switch_distance``). The network sees buffer atoms with weight w_m
    (``weighted_energy_and_charges``: a weight-0 atom contributes nothing), so the difference
    E_NN(I u B) - E_NN(B), which replaces the I-B interaction and the mutual polarization, fades
    out smoothly as a molecule leaves while the force-field Lennard-Jones I-B term (kept in the
    MM system) fades in with 1 - w_m. The ML atoms' force-field charges are zeroed in the MM system.
    The charges dq_a interact with every molecule within ``cutoff`` (weight s_m switched from
    ``switch_distance``) as far as it is not in the buffer, never with the atom's own molecule m(a);
    with ``outer_coupling`` (the coupling the network's labels left to the scheme,
    :class:`~mlmm.data.calculators.BufferDifference`):

    - ``"ml-charges"`` (BuRNN): a runs over I, dq_i the network charges of I in I u B shifted to
      sum to the ML region's total charge;
    - ``"charge-difference"``: a runs over I u B, dq_a = w_a q_a(I u B) - w_a q_a(B) (the network's
      weighted charges, q_i(B) = 0 for I), the charge the ML region moves within the cluster; the
      dq_a sum to the ML region's total charge, and a molecule leaving the buffer (w -> 0) takes its
      dq to 0 as its own charges fade into O.

    Molecules with a net charge never join the buffer. A model with a ``vacuum`` potential
    (:class:`~mlmm.potentials.VacuumAnchoredBuffer`) adds E_vac(I), the ML region's own energy, and
    its network gives only the rest.

    Parameters
    ----------
    group_atoms, group_species, group_charges, group_sigma, group_epsilon : [G, A] sequences
        Atoms of every MM molecule (all of them, padded with the anchor; padding has species 0
        and charge 0), their atomic numbers, charges (e) and Lennard-Jones sigma (nm) and
        epsilon (kJ/mol).
    anchor_indices : sequence of int
        Anchor atom of each molecule.
    group_neutral : sequence of bool
        Whether each molecule is neutral (only those may join the buffer).
    ml_sigma, ml_epsilon : sequences of float
        Lennard-Jones parameters of the ML atoms.
    total_charge : float
        ML region's total charge (e).
    buffer_cutoff, buffer_switch_distance, cutoff, switch_distance : float
        Buffer and outer-Coulomb switching ranges (nm).
    lj_cutoff, lj_switch_distance : float
        The MM system's Lennard-Jones cutoff and switch (switch = cutoff: none), to subtract
        exactly the I-B Lennard-Jones energy the MM system computes.
    capacity : int
        Molecules gathered each step for the outer Coulomb term on GPUs (on CPU: those inside
        the cutoff; see :func:`~mlmm.embedding.environment.selected_molecules`).
    buffer_capacity : int
        Molecules the network sees as the buffer each step where shapes are fixed (GPUs,
        :func:`~mlmm.potentials.neighbors.static_shapes`): the nearest ones, those beyond
        ``buffer_cutoff`` with weight 0; more inside makes the energy NaN. On CPU exactly those
        inside.
    outer_coupling : str
        ``"ml-charges"`` or ``"charge-difference"`` (above).
    """

    def __init__(self, potential: torch.nn.Module, ml_indices, atomic_numbers, molecule_roots, group_atoms,
                 group_species, group_charges, group_sigma, group_epsilon, anchor_indices, group_neutral, ml_sigma,
                 ml_epsilon, total_charge: float, buffer_cutoff: float, buffer_switch_distance: float, cutoff: float,
                 switch_distance: float, lj_cutoff: float, lj_switch_distance: float, capacity: int,
                 buffer_capacity: int, outer_coupling: str = "ml-charges"):
        super().__init__(potential, ml_indices, atomic_numbers, molecule_roots, group_atoms, group_charges,
                         anchor_indices, total_charge, cutoff, switch_distance, capacity)
        self.register_buffer("group_species", torch.as_tensor(group_species, dtype=torch.long))
        self.register_buffer("group_sigma", torch.as_tensor(group_sigma, dtype=torch.float64))
        self.register_buffer("group_epsilon", torch.as_tensor(group_epsilon, dtype=torch.float64))
        self.register_buffer("group_real", (self.group_species > 0).to(torch.float64))
        self.register_buffer("group_neutral", torch.as_tensor(list(group_neutral), dtype=torch.float64))
        self.register_buffer("ml_sigma", torch.as_tensor(list(ml_sigma), dtype=torch.float64))
        self.register_buffer("ml_epsilon", torch.as_tensor(list(ml_epsilon), dtype=torch.float64))
        # padding atoms (weight 0) are parked far apart so that no distance is zero
        width = self.group_atoms.shape[1]
        offsets = torch.zeros(width, 3, dtype=torch.float64)
        offsets[:, 0] = 10.0 + torch.arange(width, dtype=torch.float64)
        self.register_buffer("padding_offsets", offsets)
        self.buffer_cutoff = float(buffer_cutoff)
        self.buffer_switch_distance = float(buffer_switch_distance)
        self.lj_cutoff = float(lj_cutoff)
        self.lj_switch_distance = float(lj_switch_distance)
        self.buffer_capacity = min(int(buffer_capacity), int(capacity))
        if outer_coupling not in OUTER_COUPLINGS:
            raise ValueError(f"outer_coupling={outer_coupling!r} is not one of {OUTER_COUPLINGS}")
        self.charge_difference = outer_coupling == "charge-difference"
        vacuum = getattr(potential, "vacuum", None)
        self.vacuum = vacuum if isinstance(vacuum, torch.nn.Module) else NoVacuumEnergy()

    def buffer_weights(self, distances: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
        """Buffer weights w_m [K] of the ``chosen`` molecules from their anchor distances [n_ml, K] (0 if charged)."""
        return (molecule_weights(distances, self.buffer_switch_distance, self.buffer_cutoff)
                * self.group_neutral.index_select(0, chosen).to(distances.dtype))

    def lennard_jones(self, x_ml: torch.Tensor, x: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
        """Force-field Lennard-Jones energy [K] (kJ/mol) of the ML region with each chosen molecule."""
        r = torch.linalg.norm(x_ml.unsqueeze(1) - x.reshape(-1, 3).unsqueeze(0), dim=-1)  # [n, K*A]
        dtype = r.dtype
        sigma = 0.5 * (self.ml_sigma.to(dtype).unsqueeze(1)
                       + self.group_sigma.index_select(0, chosen).reshape(-1).to(dtype))
        epsilon = torch.sqrt(self.ml_epsilon.to(dtype).unsqueeze(1)
                             * self.group_epsilon.index_select(0, chosen).reshape(-1).to(dtype))
        s6 = (sigma / r) ** 6
        energy = 4.0 * epsilon * (s6 * s6 - s6)
        if self.lj_switch_distance < self.lj_cutoff:
            energy = energy * smooth_switch(r, self.lj_switch_distance, self.lj_cutoff)
        energy = torch.where(r < self.lj_cutoff, energy, torch.zeros_like(energy))
        return energy.sum(0).reshape(chosen.shape[0], self.group_atoms.shape[1]).sum(1)

    def parts(self, positions: torch.Tensor, boxvectors: Optional[torch.Tensor]) -> Dict[str, torch.Tensor]:
        """The energy terms (kJ/mol), ML charges (e) and the number of buffer molecules."""
        x_ml = self.ml_positions(positions, boxvectors)
        dtype = self.model_dtype_probe.dtype
        # the molecules within the Coulomb cutoff, placed once; the buffer is those of them within its cutoff
        nearest, chosen, anchors, to_anchor, distances = self.nearby_groups(x_ml, positions, boxvectors)
        placed = placed_molecules(x_ml, positions, boxvectors, to_anchor, distances, anchors,
                                  self.group_atoms.index_select(0, chosen))
        buffer_weights = self.buffer_weights(distances, chosen)
        chosen_nearest = nearest.index_select(0, chosen)
        if static_shapes(positions):  # the nearest buffer_capacity; those beyond buffer_cutoff have weight 0
            in_buffer = torch.topk(chosen_nearest, self.buffer_capacity, largest=False, sorted=False)[1]
        else:
            in_buffer = torch.nonzero(chosen_nearest < self.buffer_cutoff).reshape(-1)
        inside = chosen.index_select(0, in_buffer)
        weights = buffer_weights.index_select(0, in_buffer)
        members = placed.index_select(0, in_buffer)
        real = self.group_real.index_select(0, inside).to(positions.dtype)
        members = members + (1.0 - real).unsqueeze(-1) * self.padding_offsets.to(positions.dtype)
        atom_weights = (weights.unsqueeze(1) * real).reshape(-1)
        species = self.group_species.index_select(0, inside).reshape(-1)
        species = torch.where(species > 0, species, self.species[0])  # padding: any supported element
        buffer_x = members.reshape(-1, 3)
        n = x_ml.shape[0]
        e_all, charges = self.potential.weighted_energy_and_charges(
            torch.cat([self.species, species]), torch.cat([x_ml, buffer_x]).to(dtype),
            torch.cat([torch.ones(n, dtype=dtype, device=x_ml.device), atom_weights.to(dtype)]), self.total_charge)
        e_buffer = torch.zeros_like(e_all)
        q_buffer = torch.zeros_like(charges[n:])
        if inside.shape[0] > 0:  # an empty buffer has no network energy
            e_buffer, q_buffer = self.potential.weighted_energy_and_charges(species, buffer_x.to(dtype),
                                                                            atom_weights.to(dtype), 0.0)
        lennard_jones = (weights * self.lennard_jones(x_ml, members, inside)).sum()
        e_vacuum = self.vacuum(self.species, x_ml.to(dtype)).to(positions.dtype)
        q_ml = charges[:n].to(positions.dtype)
        outer = molecule_weights(distances, self.switch_distance, self.cutoff) * (1.0 - buffer_weights)
        outer_x = placed.reshape(-1, 3)
        outer_q = (self.group_charges.index_select(0, chosen).to(positions.dtype) * outer.unsqueeze(1)).reshape(-1)
        if self.charge_difference:  # I u B's charge changes; a buffer atom does not see its own molecule
            width = self.group_atoms.shape[1]
            changes = torch.cat([q_ml, (charges[n:] - q_buffer).to(positions.dtype)])
            own = torch.cat([torch.full((n,), -1, dtype=chosen.dtype, device=chosen.device),
                             inside.repeat_interleave(width)])
            other = own.unsqueeze(1) != chosen.repeat_interleave(width).unsqueeze(0)
            r = torch.linalg.norm(torch.cat([x_ml, buffer_x]).unsqueeze(1) - outer_x.unsqueeze(0), dim=-1)
            pair = torch.where(other, outer_q.unsqueeze(0) / torch.where(other, r, torch.ones_like(r)),
                               torch.zeros_like(r))
            coulomb = self.coulomb_constant * (changes.unsqueeze(1) * pair).sum()
        else:
            q_ml = q_ml - (q_ml.sum() - self.total_charge) / n
            r = torch.linalg.norm(x_ml.unsqueeze(1) - outer_x.unsqueeze(0), dim=-1)
            coulomb = self.coulomb_constant * (q_ml.unsqueeze(1) * outer_q.unsqueeze(0) / r).sum()
        return {"network_difference": (e_all - e_buffer).to(positions.dtype), "vacuum": e_vacuum,
                "buffer_lennard_jones": -lennard_jones,
                "outer_coulomb": coulomb, "charges": q_ml, "dipole": (q_ml.unsqueeze(1) * x_ml).sum(0),
                "molecules": (weights > 0).sum(),
                "overflow": ((nearest < self.cutoff).sum() > self.capacity)
                | ((nearest < self.buffer_cutoff).sum() > self.buffer_capacity)}

    @torch.jit.export
    def report(self, positions: torch.Tensor, boxvectors: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """Energy terms (kJ/mol; keys ending in ``energy``), ML charges and dipole, buffer molecules."""
        parts = self.parts(positions, boxvectors)
        return {"network_difference_energy": parts["network_difference"], "vacuum_energy": parts["vacuum"],
                "buffer_lennard_jones_energy": parts["buffer_lennard_jones"],
                "outer_coulomb_energy": parts["outer_coulomb"], "charges": parts["charges"],
                "dipole": parts["dipole"], "molecules": parts["molecules"]}

    def forward(self, positions: torch.Tensor, boxvectors: Optional[torch.Tensor] = None) -> torch.Tensor:
        parts = self.parts(positions, boxvectors)
        energy = parts["network_difference"] + parts["vacuum"] + parts["buffer_lennard_jones"] + parts["outer_coulomb"]
        if not static_shapes(positions):
            return energy
        return torch.where(parts["overflow"], torch.full_like(energy, float("nan")), energy)
