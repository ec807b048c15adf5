"""OpenMM System surgery shared by all embedding schemes.

One place removes the force-field terms that the ML potential replaces (bonded terms
wholly inside the ML region, ML-ML nonbonded pairs, constraints) and builds, for
interpolation, forces that give back exactly the force-field energy that was removed.
"""

from __future__ import annotations

import copy
import math
import re
import xml.etree.ElementTree as ET
from typing import Iterable, Optional

import openmm
import openmm.unit as u

from mlmm.units import COULOMB_CONSTANT

#: Forces that carry no per-particle terms to edit.
GLOBAL_FORCES = (openmm.CMMotionRemover, openmm.MonteCarloBarostat, openmm.MonteCarloAnisotropicBarostat,
                 openmm.MonteCarloMembraneBarostat, openmm.MonteCarloFlexibleBarostat, openmm.AndersenThermostat)
_TERM_CONTAINERS = ("Bonds", "Angles", "Torsions")
#: Name of the force without energy that holds the ML molecules together for wrapping.
CONNECTIONS_NAME = "ML molecules (bonds without energy, for wrapping)"
_PARTICLE_ATTRIBUTE = re.compile(r"^(p|a|b)\d+$")


def clone_system(system: openmm.System) -> openmm.System:
    """A deep copy of ``system`` (the caller's system is never modified)."""
    return copy.deepcopy(system)


def is_bonded_force(force: openmm.Force) -> bool:
    """True for forces made of bonded terms (bonds, angles, torsions, CMAP, custom bonded)."""
    root = ET.fromstring(openmm.XmlSerializer.serialize(force))
    return any(root.find(name) is not None for name in _TERM_CONTAINERS) and not isinstance(
        force, (openmm.NonbondedForce, openmm.CustomNonbondedForce))


def split_bonded_force(force: openmm.Force, ml_atoms: set[int], keep_inside: bool) -> openmm.Force:
    """Return a copy of a bonded force with only the terms inside (or only those not inside) the ML set.

    A term is inside when all its particles are ML atoms. Works for every bonded force
    type through its XML form (particle attributes p1, p2, ... and a1.., b1.. for CMAP).
    """
    root = ET.fromstring(openmm.XmlSerializer.serialize(force))
    for container_name in _TERM_CONTAINERS:
        container = root.find(container_name)
        if container is None:
            continue
        for term in list(container):
            particles = [int(v) for k, v in term.attrib.items() if _PARTICLE_ATTRIBUTE.match(k)]
            inside = bool(particles) and all(p in ml_atoms for p in particles)
            if inside != keep_inside:
                container.remove(term)
    return openmm.XmlSerializer.deserialize(ET.tostring(root, encoding="unicode"))


def count_terms(force: openmm.Force) -> int:
    """Number of bonded terms in a force (for deciding whether a copy is empty)."""
    root = ET.fromstring(openmm.XmlSerializer.serialize(force))
    return sum(len(root.find(name)) for name in _TERM_CONTAINERS if root.find(name) is not None)


def remove_ml_internal_terms(system: openmm.System, ml_atoms: Iterable[int], zero_ml_charges: bool) -> None:
    """Edit ``system`` in place: drop all ML-ML force-field interactions.

    Bonded terms wholly inside the ML region are removed; every ML-ML pair becomes a
    NonbondedForce exception with zero charge product and epsilon (an exclusion in each
    CustomNonbondedForce). With ``zero_ml_charges`` the ML atoms' charges (and any
    exception charge products involving them) are set to zero, Lennard-Jones kept.
    Raises ValueError for particle-based forces mlmm cannot edit safely.
    """
    ml = set(ml_atoms)
    periodic = system.usesPeriodicBoundaryConditions()
    ordered = sorted(ml)
    for index in reversed(range(system.getNumForces())):
        force = system.getForce(index)
        if isinstance(force, GLOBAL_FORCES):
            continue
        if isinstance(force, openmm.NonbondedForce):
            _exclude_ml_pairs(force, ordered, periodic, zero_ml_charges)
        elif isinstance(force, openmm.CustomNonbondedForce):
            _exclude_custom_pairs(force, ordered)
        elif is_bonded_force(force):
            trimmed = split_bonded_force(force, ml, keep_inside=False)
            system.removeForce(index)
            system.addForce(trimmed)
        else:
            raise ValueError(f"{type(force).__name__} (force {index}) is not supported in an ML/MM system; "
                             "mlmm handles bonded forces, NonbondedForce and CustomNonbondedForce. Remove it "
                             "from the MM system or keep its atoms out of the ML region.")


def _exclude_ml_pairs(force: openmm.NonbondedForce, ml: list[int], periodic: bool, zero_charges: bool) -> None:
    ml_set = set(ml)
    for offset in range(force.getNumParticleParameterOffsets()):
        parameter, particle, *_ = force.getParticleParameterOffset(offset)
        if particle in ml_set:
            raise ValueError(f"ML atom {particle} has a NonbondedForce parameter offset ({parameter}); "
                             "mlmm cannot embed atoms whose charges depend on global parameters.")
    for a, i in enumerate(ml):
        for j in ml[:a]:
            force.addException(i, j, 0.0, 1.0, 0.0, True)
    if zero_charges:
        for i in ml:
            _, sigma, epsilon = force.getParticleParameters(i)
            force.setParticleParameters(i, 0.0, sigma, epsilon)
        for e in range(force.getNumExceptions()):
            i, j, _, sigma, epsilon = force.getExceptionParameters(e)
            if i in ml_set or j in ml_set:
                force.setExceptionParameters(e, i, j, 0.0, sigma, epsilon)
    # ML-ML exceptions of a whole molecule must see the minimum image, as the pairs did.
    force.setExceptionsUsePeriodicBoundaryConditions(periodic)


def _exclude_custom_pairs(force: openmm.CustomNonbondedForce, ml: list[int]) -> None:
    existing = {frozenset(force.getExclusionParticles(e)) for e in range(force.getNumExclusions())}
    for a, i in enumerate(ml):
        for j in ml[:a]:
            if frozenset((i, j)) not in existing:
                force.addExclusion(i, j)


def ml_connections(system: openmm.System, ml_atoms: Iterable[int], residues: Iterable[list[int]] = ()
                   ) -> list[tuple[int, int]]:
    """Pairs of ML atoms joined by a constraint or a two-atom bonded term in ``system`` (the links by which
    OpenMM keeps a molecule whole when it wraps positions into the box), and each of ``residues`` (atom
    lists) tied together from its first atom, for residues whose force field gives them no bonds."""
    ml = set(ml_atoms)
    linked = [system.getConstraintParameters(c)[:2] for c in range(system.getNumConstraints())]
    for force in system.getForces():
        if isinstance(force, (openmm.HarmonicBondForce, openmm.CustomBondForce)):
            linked += [force.getBondParameters(b)[:2] for b in range(force.getNumBonds())]
    linked += [(atoms[0], a) for atoms in residues for a in atoms[1:]]
    return sorted({(min(i, j), max(i, j)) for i, j in linked if i in ml and j in ml})


def keep_molecules_whole(system: openmm.System, connections: list[tuple[int, int]]) -> None:
    """Add the ML atoms' ``connections`` as bonds without energy, so that positions wrapped into the box
    (trajectory frames, ``enforcePeriodicBox``) keep the ML molecules whole as before their bonded terms
    and constraints were removed."""
    if not connections:
        return
    force = openmm.CustomBondForce("0")
    force.setName(CONNECTIONS_NAME)
    for i, j in connections:
        force.addBond(i, j, [])
    system.addForce(force)


def remove_ml_constraints(system: openmm.System, ml_atoms: Iterable[int]) -> int:
    """Remove constraints with both atoms in the ML region; return how many were removed."""
    ml = set(ml_atoms)
    removed = 0
    for c in reversed(range(system.getNumConstraints())):
        i, j, _ = system.getConstraintParameters(c)
        if i in ml and j in ml:
            system.removeConstraint(c)
            removed += 1
    return removed


def frozen_copy(system: openmm.System, atoms: Iterable[int]) -> openmm.System:
    """A copy of ``system`` in which ``atoms`` are massless (integrators and minimisers leave them in
    place) and the constraints among them are removed (OpenMM forbids constraints on massless atoms)."""
    atoms = list(atoms)
    copy = clone_system(system)
    remove_ml_constraints(copy, atoms)
    for i in atoms:
        for c in range(copy.getNumConstraints()):
            if i in copy.getConstraintParameters(c)[:2]:
                raise ValueError(f"atom {i} is constrained to an atom outside the frozen set; freeze whole molecules")
        copy.setParticleMass(i, 0.0)
    return copy


def ml_internal_forces(system: openmm.System, ml_atoms: Iterable[int]) -> list[openmm.Force]:
    """Forces whose energy is exactly the force-field energy that the ML region replaces.

    For a pure-MM ``system`` (unmodified), E(system) - E(mixed MM part) equals the sum of
    these forces' energies: the bonded terms inside the ML region and the ML-ML nonbonded
    pairs, computed with the same nonbonded method (cutoff, reaction field, or the
    real- plus reciprocal-space split of Ewald/PME). Used for ``lambda_interpolate``.
    """
    ml = set(ml_atoms)
    forces: list[openmm.Force] = []
    for force in system.getForces():
        if isinstance(force, openmm.NonbondedForce):
            forces.extend(_ml_pair_forces(force, sorted(ml), system.usesPeriodicBoundaryConditions()))
        elif isinstance(force, openmm.CustomNonbondedForce):
            raise ValueError("interpolate=True is not supported with a CustomNonbondedForce in the MM system; "
                             "use interpolate=False.")
        elif not isinstance(force, GLOBAL_FORCES) and is_bonded_force(force):
            inside = split_bonded_force(force, ml, keep_inside=True)
            if count_terms(inside):
                forces.append(inside)
    return forces


def _regular_pair_expression(force: openmm.NonbondedForce) -> str:
    """Energy of a non-excluded pair under the force's nonbonded method (kJ/mol, r in nm)."""
    method = force.getNonbondedMethod()
    lj = "4*epsilon*((sigma/r)^12-(sigma/r)^6)"
    if method == openmm.NonbondedForce.NoCutoff:
        return f"{COULOMB_CONSTANT}*chargeProd/r + {lj}"
    cutoff = force.getCutoffDistance().value_in_unit(u.nanometer)
    if force.getUseSwitchingFunction():
        rs = force.getSwitchingDistance().value_in_unit(u.nanometer)
        x = f"(r-{rs})/({cutoff}-{rs})"
        lj = f"{lj}*select(step(r-{rs}), 1-10*({x})^3+15*({x})^4-6*({x})^5, 1)"
    inside = f"step({cutoff}-r)"
    if method in (openmm.NonbondedForce.CutoffNonPeriodic, openmm.NonbondedForce.CutoffPeriodic):
        eps = force.getReactionFieldDielectric()
        k_rf = (eps - 1.0) / ((2.0 * eps + 1.0) * cutoff ** 3)
        c_rf = 3.0 * eps / ((2.0 * eps + 1.0) * cutoff)
        return f"{inside}*({COULOMB_CONSTANT}*chargeProd*(1/r+{k_rf}*r^2-{c_rf}) + {lj})"
    if method in (openmm.NonbondedForce.Ewald, openmm.NonbondedForce.PME):
        alpha = _ewald_alpha(force)
        # pure MM: erfc part in real space within the cutoff + erf part in reciprocal space;
        # the mixed system's exclusion subtracts the erf part, so the difference is this.
        return (f"{COULOMB_CONSTANT}*chargeProd*(erf({alpha}*r) + {inside}*erfc({alpha}*r))/r"
                f" + {inside}*{lj}")
    raise ValueError("interpolate=True is not supported with LJPME; use PME or interpolate=False.")


def _ewald_alpha(force: openmm.NonbondedForce) -> float:
    """Ewald separation parameter (nm^-1), as OpenMM chooses it when not set explicitly."""
    alpha = force.getPMEParameters()[0]
    alpha = alpha.value_in_unit(u.nanometer**-1) if u.is_quantity(alpha) else float(alpha)
    if alpha > 0:
        return alpha
    cutoff = force.getCutoffDistance().value_in_unit(u.nanometer)
    return math.sqrt(-math.log(2.0 * force.getEwaldErrorTolerance())) / cutoff


def _ml_pair_forces(force: openmm.NonbondedForce, ml: list[int], periodic: bool) -> list[openmm.CustomBondForce]:
    """ML-ML pair energies: regular pairs under the force's method, exception pairs as plain terms."""
    exceptions = {}
    for e in range(force.getNumExceptions()):
        i, j, qq, sigma, eps = force.getExceptionParameters(e)
        exceptions[frozenset((i, j))] = (qq, sigma, eps)
    regular = openmm.CustomBondForce(_regular_pair_expression(force))
    excepted = openmm.CustomBondForce(f"{COULOMB_CONSTANT}*chargeProd/r + 4*epsilon*((sigma/r)^12-(sigma/r)^6)")
    for pair_force in (regular, excepted):
        for name in ("chargeProd", "sigma", "epsilon"):
            pair_force.addPerBondParameter(name)
        pair_force.setUsesPeriodicBoundaryConditions(periodic)
    for a, i in enumerate(ml):
        for j in ml[:a]:
            if frozenset((i, j)) in exceptions:
                qq, sigma, eps = exceptions[frozenset((i, j))]
                excepted.addBond(j, i, [qq, sigma, eps])
            else:
                (qi, si, ei), (qj, sj, ej) = force.getParticleParameters(i), force.getParticleParameters(j)
                regular.addBond(j, i, [qi * qj, 0.5 * (si + sj), (ei * ej).sqrt()])
    return [regular, excepted]


def interpolated_mm_force(internal: list[openmm.Force], parameter: str) -> openmm.CustomCVForce:
    """CustomCVForce (1 - lambda) * sum(internal): the force-field share under interpolation.

    The ML share, lambda * E_ML, is applied by the ML force itself (a CustomCVForce cannot
    hold a TorchForce safely).
    """
    names = [f"mm{k}" for k in range(len(internal))]
    cv = openmm.CustomCVForce(f"(1-{parameter})*({'+'.join(names) if names else '0'})")
    cv.addGlobalParameter(parameter, 1.0)
    for name, force in zip(names, internal):
        cv.addCollectiveVariable(name, force)
    cv.setName("mlmm interpolation (force-field share)")
    return cv


def scale_ml_charges_with_lambda(system: openmm.System, ml_charges: dict[int, float], parameter: str) -> None:
    """Give zeroed ML charges back as q_FF * (1 - lambda) through parameter offsets.

    Used by the ML-charge schemes under interpolation, so that lambda = 0 recovers the
    force-field ML-MM electrostatics exactly (PME included) and lambda = 1 has none.
    """
    for force in system.getForces():
        if isinstance(force, openmm.NonbondedForce):
            force.addGlobalParameter(parameter, 1.0)
            for i, q in ml_charges.items():
                _, sigma, epsilon = force.getParticleParameters(i)
                force.setParticleParameters(i, q, sigma, epsilon)
                force.addParticleParameterOffset(parameter, i, -q, 0.0, 0.0)


def nonbonded_cutoff(system: openmm.System) -> Optional[float]:
    """Cutoff (nm) of the system's NonbondedForce, or None without one / without a cutoff."""
    for force in system.getForces():
        if isinstance(force, openmm.NonbondedForce) and force.getNonbondedMethod() != openmm.NonbondedForce.NoCutoff:
            return force.getCutoffDistance().value_in_unit(u.nanometer)
    return None
