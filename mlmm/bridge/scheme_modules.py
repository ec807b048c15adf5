"""Build each scheme's embedding module from the topology and the MM system (used by ``plan_embedding``).

The builders read what the modules need from the force field (charges, Lennard-Jones
parameters, masses for the anchor atoms, whole molecules from the residues), apply the
defaults of their options and check them against the periodic box.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as u
import torch

from mlmm.embedding import surgery
from mlmm.embedding.modules import BufferEmbeddingModule, ElectrostaticEmbeddingModule, MLChargesEmbeddingModule
from mlmm.embedding.selection import group_anchor, molecule_roots
from mlmm.potentials.contract import PotentialInfo
from mlmm.potentials.neighbors import cell_widths
from mlmm.units import to_float, to_nm

DEFAULT_BUFFER_CUTOFF_NM = 0.5
DEFAULT_BUFFER_SWITCH_WIDTH_NM = 0.15
ENVIRONMENT_MARGIN_NM = 0.5
DEFAULT_CUTOFF_NM = 1.0
DEFAULT_SWITCH_WIDTH_NM = 0.1
DEFAULT_DIELECTRIC = 78.3


def ml_charges_module(topology: app.Topology, mm_system: openmm.System, ml: list[int], atomic_numbers: list[int],
                       potential: torch.nn.Module, periodic: bool, cutoff: Any = None, switch_distance: Any = None,
                       total_charge: Optional[float] = None, kernel: str = "reaction-field",
                       dielectric: Optional[float] = None, capacity: Optional[int] = None) -> MLChargesEmbeddingModule:
    charges = force_field_charges(mm_system)
    cutoff_nm, switch_nm = _coulomb_range(mm_system, cutoff, switch_distance, periodic)
    groups = _charged_groups(topology, mm_system, ml, charges, "mechanical-ml-charges")
    return MLChargesEmbeddingModule(
        potential, ml, atomic_numbers, molecule_roots(topology, ml), *groups,
        total_charge=_total_charge(total_charge, charges, ml), cutoff=cutoff_nm, switch_distance=switch_nm,
        kernel=kernel,
        dielectric=DEFAULT_DIELECTRIC if dielectric is None else float(dielectric),
        capacity=_capacity(capacity, mm_system, len(groups[0]), cutoff_nm, periodic))


def electrostatic_module(topology: app.Topology, mm_system: openmm.System, ml: list[int],
                          atomic_numbers: list[int], potential: torch.nn.Module, periodic: bool,
                          total_charge: Optional[float] = None, capacity: Optional[int] = None
                          ) -> ElectrostaticEmbeddingModule:
    charges = force_field_charges(mm_system)
    cutoff_nm = float(potential.environment_cutoff)
    switch_nm = float(potential.environment_switch_distance)
    groups = _charged_groups(topology, mm_system, ml, charges, "electrostatic")
    if periodic:
        _check_half_box(mm_system, cutoff_nm, f"the model's environment cutoff ({cutoff_nm} nm)",
                        "use a larger box")
    return ElectrostaticEmbeddingModule(
        potential, ml, atomic_numbers, molecule_roots(topology, ml), *groups,
        total_charge=_total_charge(total_charge, charges, ml), cutoff=cutoff_nm, switch_distance=switch_nm,
        capacity=_capacity(capacity, mm_system, len(groups[0]), cutoff_nm, periodic))


def buffer_module(topology: app.Topology, mm_system: openmm.System, ml: list[int], atomic_numbers: list[int],
                   potential: torch.nn.Module, info: PotentialInfo, periodic: bool, buffer_cutoff: Any = None,
                   buffer_switch_distance: Any = None, cutoff: Any = None, switch_distance: Any = None,
                   total_charge: Optional[float] = None, capacity: Optional[int] = None,
                   buffer_capacity: Optional[int] = None, outer_coupling: Optional[str] = None
                   ) -> BufferEmbeddingModule:
    trained = info.metadata.get("environment", {})
    recorded = info.metadata.get("extra", {}).get("buffer_outer_coupling")
    if outer_coupling is not None and recorded is not None and outer_coupling != recorded:
        raise ValueError(f"outer_coupling={outer_coupling!r}, but the model was trained for {recorded!r} (its labels "
                         "leave that Coulomb term to the scheme); leave outer_coupling out.")
    buffer_nm = to_nm(buffer_cutoff, "buffer_cutoff") if buffer_cutoff is not None else trained.get(
        "buffer_cutoff_nm", DEFAULT_BUFFER_CUTOFF_NM)
    buffer_switch_nm = (to_nm(buffer_switch_distance, "buffer_switch_distance") if buffer_switch_distance is not None
                        else trained.get("buffer_switch_distance_nm", buffer_nm - DEFAULT_BUFFER_SWITCH_WIDTH_NM))
    nonbonded = next((f for f in mm_system.getForces() if isinstance(f, openmm.NonbondedForce)), None)
    if nonbonded is None:
        raise ValueError("embedding='buffer' needs the MM system's NonbondedForce (charges and Lennard-Jones).")
    mm_cutoff = surgery.nonbonded_cutoff(mm_system)
    if not 0.0 < buffer_switch_nm < buffer_nm:
        raise ValueError(f"buffer_switch_distance={buffer_switch_nm} nm must lie between 0 and "
                         f"buffer_cutoff={buffer_nm} nm.")
    cutoff_nm, switch_nm = _coulomb_range(mm_system, cutoff, switch_distance, periodic)
    if buffer_nm >= cutoff_nm:
        raise ValueError(f"buffer_cutoff={buffer_nm} nm must be shorter than the Coulomb cutoff={cutoff_nm} nm.")
    charges = force_field_charges(mm_system)
    lj = [nonbonded.getParticleParameters(i)[1:] for i in range(mm_system.getNumParticles())]
    sigma = [p[0].value_in_unit(u.nanometer) for p in lj]
    epsilon = [p[1].value_in_unit(u.kilojoule_per_mole) for p in lj]
    masses = [mm_system.getParticleMass(i).value_in_unit(u.dalton) for i in range(mm_system.getNumParticles())]
    ml_set = set(ml)
    supported = None if info.supported_elements is None else set(info.supported_elements)
    molecules = []
    for residue in topology.residues():
        members = [a for a in residue.atoms() if a.index not in ml_set]
        if not members:
            continue
        neutral = abs(sum(charges[a.index] for a in members)) < 1e-6
        numbers = [0 if a.element is None else a.element.atomic_number for a in members]
        if neutral and 0 in numbers:
            raise ValueError(f"MM residue {residue.name}{residue.id} may join the buffer but has particles without an "
                             f"element (virtual sites, as the M site of TIP4P-type water); the buffer network runs on "
                             f"the atoms of the solvent molecules it takes in. Use a water model without virtual sites "
                             f"(TIP3P, SPC/E) or another embedding.")
        if neutral and supported is not None and not set(numbers) <= supported:
            raise ValueError(f"MM residue {residue.name}{residue.id} may join the buffer but has atoms the potential "
                             f"does not support (atomic numbers {sorted(set(numbers))}, supported "
                             f"{sorted(supported or [])}); the buffer network must know every solvent element.")
        molecules.append(([a.index for a in members], numbers, neutral,
                          group_anchor([a.index for a in members], masses)))
    width = max(len(atoms) for atoms, _, _, _ in molecules)

    def padded(values, fill):
        return list(values) + [fill] * (width - len(values))

    lj_switch = nonbonded.getSwitchingDistance().value_in_unit(u.nanometer) if nonbonded.getUseSwitchingFunction() \
        else (mm_cutoff or math.inf)
    return BufferEmbeddingModule(
        potential, ml, atomic_numbers, molecule_roots(topology, ml),
        group_atoms=[padded(atoms, anchor) for atoms, _, _, anchor in molecules],
        group_species=[padded(numbers, 0) for _, numbers, _, _ in molecules],
        group_charges=[padded([charges[i] for i in atoms], 0.0) for atoms, _, _, _ in molecules],
        group_sigma=[padded([sigma[i] for i in atoms], 1.0) for atoms, _, _, _ in molecules],
        group_epsilon=[padded([epsilon[i] for i in atoms], 0.0) for atoms, _, _, _ in molecules],
        anchor_indices=[anchor for _, _, _, anchor in molecules],
        group_neutral=[neutral for _, _, neutral, _ in molecules],
        ml_sigma=[sigma[i] for i in ml], ml_epsilon=[epsilon[i] for i in ml],
        total_charge=_total_charge(total_charge, charges, ml), buffer_cutoff=buffer_nm,
        buffer_switch_distance=buffer_switch_nm, cutoff=cutoff_nm, switch_distance=switch_nm,
        lj_cutoff=mm_cutoff or math.inf, lj_switch_distance=lj_switch,
        capacity=_capacity(capacity, mm_system, len(molecules), cutoff_nm, periodic),
        buffer_capacity=_capacity(buffer_capacity, mm_system, len(molecules), buffer_nm, periodic,
                                  "buffer_capacity"),
        outer_coupling=outer_coupling or recorded or "ml-charges")


def _coulomb_range(mm_system: openmm.System, cutoff: Any, switch_distance: Any, periodic: bool
                   ) -> tuple[float, float]:
    """Cutoff and switch distance (nm) of an ML-MM Coulomb term: as given, else the MM cutoff (1 nm
    without one) and 0.1 nm less; checked against each other and against the box."""
    cutoff_nm = to_nm(cutoff, "cutoff") if cutoff is not None else (
        surgery.nonbonded_cutoff(mm_system) or DEFAULT_CUTOFF_NM)
    switch_nm = (to_nm(switch_distance, "switch_distance") if switch_distance is not None
                 else cutoff_nm - DEFAULT_SWITCH_WIDTH_NM)
    if not 0.0 < switch_nm < cutoff_nm:
        raise ValueError(f"switch_distance={switch_nm} nm must lie between 0 and cutoff={cutoff_nm} nm.")
    if periodic:
        _check_half_box(mm_system, cutoff_nm, f"cutoff={cutoff_nm} nm", "use a smaller cutoff or a larger box")
    return cutoff_nm, switch_nm


def _total_charge(total_charge: Any, charges: list[float], ml: list[int]) -> float:
    """The ML region's total charge (e): as given, else the rounded sum of its force-field charges."""
    if total_charge is None:
        return float(round(sum(charges[i] for i in ml)))
    return to_float(total_charge, u.elementary_charge, "total_charge")


def _charged_groups(topology: app.Topology, mm_system: openmm.System, ml: list[int], charges: list[float],
                    embedding: str) -> tuple[list, list, list]:
    """Atoms, charges and anchors of the MM molecules with charged atoms; an error if there are none."""
    groups = _mm_groups(topology, mm_system, ml, charges)
    if not groups:
        raise ValueError(f"embedding={embedding!r} needs charged MM atoms outside the ML region; the system has "
                         "none (use embedding='mechanical' for an ML region in vacuum).")
    return ([atoms for atoms, _, _ in groups], [group_charges for _, group_charges, _ in groups],
            [anchor for _, _, anchor in groups])


def _capacity(capacity: Optional[int], mm_system: openmm.System, n_groups: int, cutoff_nm: float,
              periodic: bool, name: str = "capacity") -> int:
    """The number of molecules gathered per step on GPUs (option ``name``): as given, else estimated
    (all without a box)."""
    if capacity is None:
        return _environment_capacity(mm_system, n_groups, cutoff_nm) if periodic else n_groups
    if int(capacity) < 1:
        raise ValueError(f"{name}={capacity!r} must be a positive number of MM molecules (leave it out for an "
                         "estimate from the density).")
    return int(capacity)


def _environment_capacity(mm_system: openmm.System, n_groups: int, cutoff_nm: float) -> int:
    """Molecules to gather per step: those expected within cutoff + 0.5 nm of a point, plus 25 %.

    The 0.5 nm cover the extent of an ML region of a few dozen atoms; at liquid density
    the count fluctuates by a few percent, so an overflow means a much larger region.
    """
    box = np.array([v.value_in_unit(u.nanometer) for v in mm_system.getDefaultPeriodicBoxVectors()])
    density = n_groups / abs(np.linalg.det(box))
    expected = density * 4.0 / 3.0 * np.pi * (cutoff_nm + ENVIRONMENT_MARGIN_NM) ** 3
    return min(n_groups, int(np.ceil(1.25 * expected)))


def _check_half_box(mm_system: openmm.System, cutoff_nm: float, what: str, remedy: str) -> None:
    """Raise ValueError when ``cutoff_nm`` exceeds half the smallest width of the default box."""
    box = [v.value_in_unit(u.nanometer) for v in mm_system.getDefaultPeriodicBoxVectors()]
    half_width = 0.5 * min(cell_widths(box))
    if cutoff_nm > half_width:
        raise ValueError(f"{what} is larger than half the smallest box width ({half_width:.4f} nm); {remedy}.")


def _mm_groups(topology: app.Topology, mm_system: openmm.System, ml: list[int], charges: list[float]
               ) -> list[tuple[list[int], list[float], int]]:
    """The MM molecules (residues) with charged atoms: (charged atom indices, their charges, anchor atom)."""
    ml_set = set(ml)
    masses = [mm_system.getParticleMass(i).value_in_unit(u.dalton) for i in range(mm_system.getNumParticles())]
    groups = []
    for residue in topology.residues():
        members = [a.index for a in residue.atoms() if a.index not in ml_set]
        charged = [i for i in members if charges[i] != 0.0]
        if charged:
            groups.append((charged, [charges[i] for i in charged], group_anchor(members, masses)))
    return groups


def force_field_charges(system: openmm.System) -> list[float]:
    """Per-particle charges (e) from the system's NonbondedForce (zeros without one)."""
    for force in system.getForces():
        if isinstance(force, openmm.NonbondedForce):
            return [force.getParticleParameters(i)[0].value_in_unit(u.elementary_charge)
                    for i in range(force.getNumParticles())]
    return [0.0] * system.getNumParticles()
