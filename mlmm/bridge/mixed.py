"""``create_mixed_system``: an OpenMM System with an ML region embedded in a force field."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import openmm
import openmm.app as app
import torch

from mlmm.bridge.scheme_modules import buffer_module, electrostatic_module, force_field_charges, ml_charges_module
from mlmm.bridge.transports import LAMBDA, make_force, scaled_by_lambda
from mlmm.embedding import surgery
from mlmm.embedding.modules import MechanicalEmbeddingModule
from mlmm.embedding.selection import MLAtoms, molecule_roots, resolve_ml_atoms, validate_ml_region
from mlmm.potentials.contract import PotentialInfo, charges_fitted, check_elements, describe
from mlmm.potentials.io import load_potential, read_metadata

EMBEDDINGS = ("mechanical", "mechanical-ml-charges", "electrostatic", "buffer")
#: Options each embedding accepts beyond the common ones.
_SCHEME_OPTIONS = {
    "mechanical": set(),
    "mechanical-ml-charges": {"cutoff", "switch_distance", "total_charge", "kernel", "dielectric", "capacity"},
    "electrostatic": {"total_charge", "capacity"},
    "buffer": {"buffer_cutoff", "buffer_switch_distance", "cutoff", "switch_distance", "total_charge", "capacity",
               "buffer_capacity", "outer_coupling"},
}
#: Zero the ML atoms' force-field charges: these schemes compute ML-MM electrostatics themselves.
_CHARGE_SCHEMES = ("mechanical-ml-charges", "electrostatic", "buffer")
_UNFITTED_CHARGES = ("embedding='mechanical-ml-charges' couples the potential's atomic charges to the MM charges, "
                     "but its training did not fit them to reference charges (loss weights {weights}): only the "
                     "dipole term, if any, shaped them, and they can be far from physical atomic charges (an ML "
                     "hydrogen with a negative charge can fall onto a TIP3P hydrogen, which has no Lennard-Jones "
                     "site). Check them (energy_and_charges) or train with [training] charge_weight > 0.")

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
    ml_residues : list of list of int
        The ML atoms grouped by their topology residues (each kept whole when positions are wrapped).
    """

    module: torch.nn.Module
    ml_atoms: list[int]
    periodic: bool
    embedding: str
    info: PotentialInfo
    ml_residues: list[list[int]]


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
    if info.scheme is not None and info.scheme != embedding:
        raise ValueError(f"the potential was trained for embedding={info.scheme!r} and cannot run with "
                         f"embedding={embedding!r}; use embedding={info.scheme!r}, or the vacuum model it was "
                         "built from for the other schemes.")
    if embedding == "mechanical":
        embedding_module: torch.nn.Module = MechanicalEmbeddingModule(module, ml, atomic_numbers,
                                                                      molecule_roots(topology, ml))
    elif embedding == "electrostatic":
        if not info.accepts_mm_charges:
            raise ValueError("embedding='electrostatic' needs a model trained for it, one that exports "
                             "energy_in_field (mlmm.potentials.ElectrostaticPotential, written by `mlmm train` "
                             "with an [model] family = \"electrostatic\" configuration); this potential only "
                             "knows the vacuum. Use embedding='mechanical' or 'mechanical-ml-charges'.")
        embedding_module = electrostatic_module(topology, mm_system, ml, atomic_numbers, module, periodic,
                                                 **options)
    elif embedding == "buffer":
        if not info.accepts_weights:
            raise ValueError("embedding='buffer' needs a potential that exports weighted_energy_and_charges (the "
                             "mlmm PhysNet family) and was trained on clusters of the ML region with solvent "
                             "molecules; this potential does not.")
        embedding_module = buffer_module(topology, mm_system, ml, atomic_numbers, module, info, periodic, **options)
    else:
        if not info.predicts_charges:
            raise ValueError("embedding='mechanical-ml-charges' needs a potential that predicts charges (exports "
                             "energy_and_charges); wrap an energy-only potential in mlmm.potentials.QEqCharges "
                             "or use embedding='mechanical'.")
        if charges_fitted(info.metadata) is False:
            warnings.warn(_UNFITTED_CHARGES.format(weights=info.metadata["extra"]["loss_weights"]), stacklevel=3)
        embedding_module = ml_charges_module(topology, mm_system, ml, atomic_numbers, module, periodic, **options)
    in_ml = set(ml)
    residues = [[a.index for a in residue.atoms() if a.index in in_ml] for residue in topology.residues()]
    return EmbeddingPlan(embedding_module, ml, periodic, embedding, info, [atoms for atoms in residues if atoms])


def create_mixed_system(topology: app.Topology, mm_system: openmm.System, ml_atoms: MLAtoms,
                        potential: PotentialLike, embedding: str = "mechanical", *, interpolate: bool = False,
                        remove_constraints: bool = True, force_group: int = 0, transport: str = "torch",
                        cuda_graphs: bool = False, compiled: bool = False, **options: Any) -> openmm.System:
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
    cuda_graphs : bool
        On the CUDA platform, capture the ML force in a CUDA graph (TorchForce's ``useCUDAGraphs``;
        transport "torch" only). Every scheme keeps static shapes on GPUs: the ML-charges,
        electrostatic and buffer schemes gather a fixed ``capacity`` of nearest MM molecules (the
        energy turns NaN, which OpenMM reports, if more than ``capacity`` are inside the cutoff).
    compiled : bool
        Compile the ML force's energy and gradient ahead of time with AOTInductor (transport
        "python" only): one generated C++ library with no Python, autograd engine or
        per-operation dispatch in between (the formic acid dimer's network: a fifth to a sixth of
        TorchScript's time per call on CPU, benchmarks/results/embeddings.md). The first force evaluation
        compiles (tens of seconds per term; the electrostatic model's vacuum and embedding energies
        are compiled one by one; needs a C++ compiler). Needs an eager network: a model file written
        by ``mlmm train`` (rebuilt from its recipes) or an ``nn.Module``. The graph has fixed shapes
        (a ``capacity`` of MM molecules, exact distances only for those nearest the ML region's
        bounding sphere); a step they cannot hold runs the eager module instead. Not for
        ``"buffer"``, whose fixed-shape buffer costs far more on CPU than the exact one.
    **options
        For ``"mechanical-ml-charges"``: ``cutoff`` (nm or Quantity; default the MM cutoff,
        else 1 nm), ``switch_distance`` (default cutoff - 0.1 nm), ``total_charge`` (e;
        default the rounded sum of the ML atoms' force-field charges), ``kernel``
        ("reaction-field" or "shifted-force"), ``dielectric`` (reaction field, 78.3).
        For ``"electrostatic"`` (a model trained for it, see
        :class:`mlmm.potentials.ElectrostaticPotential`; the ML atoms' force-field charges are
        zeroed, the MM molecules within the model's environment cutoff polarize it):
        ``total_charge`` (as above) and ``capacity`` (MM molecules gathered per step on GPUs;
        default from the density, all molecules without periodic boundaries).
        For ``"buffer"`` (a PhysNet trained on buffer clusters, see
        :class:`mlmm.embedding.modules.BufferEmbeddingModule`): ``buffer_cutoff`` and
        ``buffer_switch_distance`` (nm; default 0.5 and 0.35), ``cutoff`` and ``switch_distance``
        of the outer Coulomb term, ``total_charge``, ``capacity`` and ``buffer_capacity``
        (molecules gathered per step on GPUs) and ``outer_coupling`` (``"ml-charges"`` or
        ``"charge-difference"``; default the one the model file records, else ``"ml-charges"``).
    """
    if not isinstance(force_group, int) or not 0 <= force_group <= 31:
        raise ValueError(f"force_group={force_group!r} must be an integer from 0 to 31.")
    if compiled:
        potential = compilable_potential(potential, embedding)
    plan = plan_embedding(topology, mm_system, ml_atoms, potential, embedding, **options)
    system = build_mm_part(mm_system, plan, remove_constraints)
    if interpolate:
        module = scaled_by_lambda(plan.module, plan.periodic)
        force = make_force(module, plan.periodic, transport, {LAMBDA: 1.0}, cuda_graphs, compiled)
        internal = surgery.interpolated_mm_force(surgery.ml_internal_forces(mm_system, plan.ml_atoms), LAMBDA)
        internal.setForceGroup(force_group)
        system.addForce(internal)
        if plan.embedding in _CHARGE_SCHEMES:
            charges = force_field_charges(mm_system)
            surgery.scale_ml_charges_with_lambda(system, {i: charges[i] for i in plan.ml_atoms}, LAMBDA)
    else:
        force = make_force(plan.module, plan.periodic, transport, cuda_graphs=cuda_graphs, compiled=compiled)
    force.setForceGroup(force_group)
    force.setName(f"mlmm {embedding}")
    system.addForce(force)
    return system


def compilable_potential(potential: PotentialLike, embedding: str) -> torch.nn.Module:
    """The eager module ``compiled=True`` traces: a model file written by ``mlmm train`` rebuilt from
    the recipes it records (:func:`mlmm.training.models.eager_potential`), or the module given
    (TorchScript follows the geometry-dependent CPU paths, which a graph for every geometry cannot hold)."""
    if embedding == "buffer":
        raise ValueError("compiled=True is not available for embedding='buffer': the compiled graph has fixed "
                         "shapes, and the buffer's fixed shape (buffer_capacity molecules; for the formic acid dimer "
                         "146 where 18 are inside) costs about 16x the exact buffer on CPU; even a tight one does not "
                         "pay (28 molecules: 8.0 ms per energy and gradient against 7.3 with TorchScript, as the "
                         "fixed shapes keep every pair in the network's lists); use transport='torch'.")
    if isinstance(potential, torch.jit.ScriptModule):
        raise ValueError("compiled=True needs an eager module (TorchScript cannot be traced into a fixed-shape "
                         "graph); pass the model file or the torch.nn.Module.")
    if not isinstance(potential, (str, Path)):
        return potential
    extra = read_metadata(potential).get("extra", {})
    if "model" not in extra:
        raise ValueError(f"compiled=True rebuilds the network of a model file from the recipe `mlmm train` "
                         f"records; {str(potential)!r} has none; pass the eager module instead.")
    from mlmm.training.models import eager_potential

    return eager_potential(potential)


def build_mm_part(mm_system: openmm.System, plan: EmbeddingPlan, remove_constraints: bool = True) -> openmm.System:
    """A copy of ``mm_system`` with the interactions the ML force replaces removed (no ML force added)."""
    system = surgery.clone_system(mm_system)
    connections = surgery.ml_connections(system, plan.ml_atoms, plan.ml_residues)
    surgery.remove_ml_internal_terms(system, plan.ml_atoms,
                                     zero_ml_charges=plan.embedding in _CHARGE_SCHEMES)
    if remove_constraints:
        surgery.remove_ml_constraints(system, plan.ml_atoms)
    surgery.keep_molecules_whole(system, connections)
    return system
