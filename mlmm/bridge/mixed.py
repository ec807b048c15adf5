"""``create_mixed_system``: an OpenMM System with an ML region embedded in a force field."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import openmm
import openmm.app as app
import openmm.unit as u
import torch

from mlmm.embedding import surgery
from mlmm.embedding.modules import MechanicalEmbeddingModule, MLChargesEmbeddingModule
from mlmm.embedding.selection import MLAtoms, molecule_roots, resolve_ml_atoms, validate_ml_region
from mlmm.potentials.contract import PotentialInfo, check_elements, describe
from mlmm.potentials.io import load_potential
from mlmm.potentials.neighbors import cell_widths
from mlmm.bridge.transports import LAMBDA, make_force, scaled_by_lambda
from mlmm.units import to_float, to_nm

EMBEDDINGS = ("mechanical", "mechanical-ml-charges")
#: Options each embedding accepts beyond the common ones.
_SCHEME_OPTIONS = {
    "mechanical": set(),
    "mechanical-ml-charges": {"cutoff", "switch_distance", "total_charge", "kernel", "dielectric"},
}
DEFAULT_CUTOFF_NM = 1.0
DEFAULT_SWITCH_WIDTH_NM = 0.1
DEFAULT_DIELECTRIC = 78.3

PotentialLike = Union[str, Path, torch.nn.Module]


@dataclass
class EmbeddingPlan:
    """Everything decided about an ML/MM set-up before the System is edited.

    Attributes
    ----------
    module : torch.nn.Module
        The embedding module (positions [+ box] -> energy) the ML force runs.
    ml_atoms : list of int
        Sorted ML atom indices.
    periodic : bool
        Whether the MM system is periodic.
    embedding : str
        The scheme name.
    info : PotentialInfo
        What is known about the potential.
    """

    module: torch.nn.Module
    ml_atoms: list[int]
    periodic: bool
    embedding: str
    info: PotentialInfo


def resolve_potential(potential: PotentialLike) -> tuple[torch.nn.Module, PotentialInfo]:
    """Accept a model file path or a module; return the module and its :class:`PotentialInfo`."""
    if isinstance(potential, (str, Path)):
        module, metadata = load_potential(potential)
        return module, describe(module, metadata)
    return potential, describe(potential)


def plan_embedding(topology: app.Topology, mm_system: openmm.System, ml_atoms: MLAtoms,
                   potential: PotentialLike, embedding: str = "mechanical", **options: Any) -> EmbeddingPlan:
    """Validate inputs and build the embedding module (no System is modified).

    See :func:`create_mixed_system` for the arguments.
    """
    if embedding not in EMBEDDINGS:
        raise ValueError(f"embedding={embedding!r} is not one of {EMBEDDINGS}.")
    unknown = set(options) - _SCHEME_OPTIONS[embedding]
    if unknown:
        raise ValueError(f"option(s) {sorted(unknown)} do not apply to embedding={embedding!r}; it accepts "
                         f"{sorted(_SCHEME_OPTIONS[embedding]) or 'no scheme options'}.")
    module, info = resolve_potential(potential)
    ml = resolve_ml_atoms(topology, ml_atoms)
    atomic_numbers = validate_ml_region(topology, mm_system, ml)
    check_elements(info, atomic_numbers, ml)
    periodic = mm_system.usesPeriodicBoundaryConditions()
    if embedding == "mechanical":
        embedding_module: torch.nn.Module = MechanicalEmbeddingModule(module, ml, atomic_numbers,
                                                                      molecule_roots(topology, ml))
    else:
        if not info.predicts_charges:
            raise ValueError("embedding='mechanical-ml-charges' needs a potential that predicts charges (exports "
                             "energy_and_charges); wrap an energy-only potential in mlmm.potentials.QEqCharges "
                             "or use embedding='mechanical'.")
        embedding_module = _ml_charges_module(topology, mm_system, ml, atomic_numbers, module, periodic, **options)
    return EmbeddingPlan(embedding_module, ml, periodic, embedding, info)


def _ml_charges_module(topology: app.Topology, mm_system: openmm.System, ml: list[int], atomic_numbers: list[int],
                       potential: torch.nn.Module, periodic: bool, cutoff: Any = None, switch_distance: Any = None,
                       total_charge: Optional[float] = None, kernel: str = "reaction-field",
                       dielectric: Optional[float] = None) -> MLChargesEmbeddingModule:
    charges = _force_field_charges(mm_system)
    if cutoff is not None:
        cutoff_nm = to_nm(cutoff, "cutoff")
    else:
        cutoff_nm = surgery.nonbonded_cutoff(mm_system) or DEFAULT_CUTOFF_NM
    switch_nm = (to_nm(switch_distance, "switch_distance") if switch_distance is not None
                 else cutoff_nm - DEFAULT_SWITCH_WIDTH_NM)
    if not 0.0 < switch_nm < cutoff_nm:
        raise ValueError(f"switch_distance={switch_nm} nm must lie between 0 and cutoff={cutoff_nm} nm.")
    if periodic:
        box = [v.value_in_unit(u.nanometer) for v in mm_system.getDefaultPeriodicBoxVectors()]
        half_width = 0.5 * min(cell_widths(box))
        if cutoff_nm > half_width:
            raise ValueError(f"cutoff={cutoff_nm} nm is larger than half the smallest box width ({half_width:.4f} nm); "
                             "use a smaller cutoff or a larger box.")
    if total_charge is None:
        total_charge = round(sum(charges[i] for i in ml))
    ml_set = set(ml)
    groups: list[int] = []
    mm_indices, mm_charges, mm_group = [], [], []
    masses = [mm_system.getParticleMass(i).value_in_unit(u.dalton) for i in range(mm_system.getNumParticles())]
    for residue in topology.residues():
        members = [a.index for a in residue.atoms() if a.index not in ml_set]
        charged = [i for i in members if charges[i] != 0.0]
        if not charged:
            continue
        anchor = max(members, key=lambda i: (masses[i], -i))  # heaviest atom, first among equals
        for i in charged:
            mm_indices.append(i)
            mm_charges.append(charges[i])
            mm_group.append(len(groups))
        groups.append(anchor)
    return MLChargesEmbeddingModule(
        potential, ml, atomic_numbers, molecule_roots(topology, ml), mm_indices, mm_charges, mm_group, groups,
        total_charge=to_float(total_charge, u.elementary_charge, "total_charge"), cutoff=cutoff_nm,
        switch_distance=switch_nm, kernel=kernel,
        dielectric=DEFAULT_DIELECTRIC if dielectric is None else float(dielectric))


def _force_field_charges(system: openmm.System) -> list[float]:
    """Per-particle charges (e) from the system's NonbondedForce (zeros without one)."""
    for force in system.getForces():
        if isinstance(force, openmm.NonbondedForce):
            return [force.getParticleParameters(i)[0].value_in_unit(u.elementary_charge)
                    for i in range(force.getNumParticles())]
    return [0.0] * system.getNumParticles()


def create_mixed_system(topology: app.Topology, mm_system: openmm.System, ml_atoms: MLAtoms,
                        potential: PotentialLike, embedding: str = "mechanical", *, interpolate: bool = False,
                        remove_constraints: bool = True, force_group: int = 0, transport: str = "torch",
                        **options: Any) -> openmm.System:
    """Return a new System: the ML region by ``potential``, the rest by the force field.

    Parameters
    ----------
    topology : openmm.app.Topology
        Topology of the whole system.
    mm_system : openmm.System
        The pure force-field System for ``topology``; it is not modified.
    ml_atoms : sequence of int or str
        ML atom indices or an MDTraj selection string (e.g. ``"resname ALA"``).
    potential : str, Path or torch.nn.Module
        An mlmm model file or a module with ``forward(species, positions_nm) -> energy_kJ_per_mol``.
    embedding : str
        ``"mechanical"`` (force-field charges for ML-MM Coulomb) or ``"mechanical-ml-charges"``
        (charges from the potential, computed in the ML force; the ML atoms' force-field
        charges are zeroed, Lennard-Jones kept).
    interpolate : bool
        Add the global parameter ``lambda_interpolate``: 0 gives the pure force field, 1 the
        ML/MM system.
    remove_constraints : bool
        Remove constraints between pairs of ML atoms (default True).
    force_group : int
        Force group (0-31) of the ML force.
    transport : str
        ``"torch"`` (openmmtorch.TorchForce, TorchScript; default) or ``"python"``
        (openmm.PythonForce with the eager module); both give the same results.
    **options
        For ``"mechanical-ml-charges"``: ``cutoff`` (nm or Quantity; default the MM cutoff,
        else 1 nm), ``switch_distance`` (default cutoff - 0.1 nm), ``total_charge`` (e;
        default the rounded sum of the ML atoms' force-field charges), ``kernel``
        ("reaction-field" or "shifted-force"), ``dielectric`` (reaction field, 78.3).
    """
    if not isinstance(force_group, int) or not 0 <= force_group <= 31:
        raise ValueError(f"force_group={force_group!r} must be an integer from 0 to 31.")
    plan = plan_embedding(topology, mm_system, ml_atoms, potential, embedding, **options)
    system = build_mm_part(mm_system, plan, remove_constraints)
    if interpolate:
        module = scaled_by_lambda(plan.module, plan.periodic)
        force = make_force(module, plan.periodic, transport, {LAMBDA: 1.0})
        internal = surgery.interpolated_mm_force(surgery.ml_internal_forces(mm_system, plan.ml_atoms), LAMBDA)
        internal.setForceGroup(force_group)
        system.addForce(internal)
        if plan.embedding == "mechanical-ml-charges":
            charges = _force_field_charges(mm_system)
            surgery.scale_ml_charges_with_lambda(system, {i: charges[i] for i in plan.ml_atoms}, LAMBDA)
    else:
        force = make_force(plan.module, plan.periodic, transport)
    force.setForceGroup(force_group)
    force.setName(f"mlmm {embedding}")
    system.addForce(force)
    return system


def build_mm_part(mm_system: openmm.System, plan: EmbeddingPlan, remove_constraints: bool = True) -> openmm.System:
    """A copy of ``mm_system`` with the interactions the ML force replaces removed (no ML force added)."""
    system = surgery.clone_system(mm_system)
    surgery.remove_ml_internal_terms(system, plan.ml_atoms,
                                     zero_ml_charges=plan.embedding == "mechanical-ml-charges")
    if remove_constraints:
        surgery.remove_ml_constraints(system, plan.ml_atoms)
    return system
