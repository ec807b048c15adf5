"""The force-field energy of a set of atoms as a torch potential.

:class:`ForceFieldPotential` evaluates, in torch, the intramolecular force-field energy of
the atoms it was built for: harmonic bonds and angles, periodic torsions, and Coulomb +
Lennard-Jones between all pairs (exceptions included, no cutoff). Used as the ML potential
of a mechanically embedded system it reproduces the pure force field exactly, which makes
it the reference for validating an ML/MM set-up, and a stand-in when no trained model is at
hand.
"""

from __future__ import annotations

from typing import Sequence

import openmm
import openmm.unit as u
import torch

from mlmm.units import COULOMB_CONSTANT

_BONDED_TYPES = (openmm.HarmonicBondForce, openmm.HarmonicAngleForce, openmm.PeriodicTorsionForce)
_IGNORED_TYPES = (openmm.CMMotionRemover, openmm.MonteCarloBarostat)


def _angle(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Angle a-b-c in radians (atan2 form: finite gradient at 0 and pi)."""
    u1 = a - b
    u2 = c - b
    return torch.atan2(torch.linalg.norm(torch.cross(u1, u2, dim=-1), dim=-1), (u1 * u2).sum(-1))


def _dihedral(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """Dihedral a-b-c-d in radians, in OpenMM's sign convention."""
    b1 = b - a
    b2 = c - b
    b3 = d - c
    n1 = torch.cross(b1, b2, dim=-1)
    n2 = torch.cross(b2, b3, dim=-1)
    m = torch.cross(n1, b2 / torch.linalg.norm(b2, dim=-1, keepdim=True), dim=-1)
    return torch.atan2((m * n2).sum(-1), (n1 * n2).sum(-1))


class ForceFieldPotential(torch.nn.Module):
    """Intramolecular force-field energy (kJ/mol) of a fixed set of atoms.

    Build it with :meth:`from_system`. ``forward(species, positions)`` takes the atoms in
    the order given there; ``species`` is only checked for its length.
    """

    def __init__(self, atomic_numbers: Sequence[int], bonds: torch.Tensor, bond_params: torch.Tensor,
                 angles: torch.Tensor, angle_params: torch.Tensor, torsions: torch.Tensor,
                 torsion_params: torch.Tensor, pairs: torch.Tensor, pair_params: torch.Tensor):
        super().__init__()
        self.supported_elements = sorted(set(int(z) for z in atomic_numbers))
        self.num_atoms = len(atomic_numbers)
        self.coulomb_constant = COULOMB_CONSTANT
        self.register_buffer("bonds", bonds.long().reshape(-1, 2))
        self.register_buffer("bond_params", bond_params.double().reshape(-1, 2))  # r0 [nm], k [kJ/mol/nm^2]
        self.register_buffer("angles", angles.long().reshape(-1, 3))
        self.register_buffer("angle_params", angle_params.double().reshape(-1, 2))  # theta0 [rad], k [kJ/mol/rad^2]
        self.register_buffer("torsions", torsions.long().reshape(-1, 4))
        self.register_buffer("torsion_params", torsion_params.double().reshape(-1, 3))  # n, phase [rad], k [kJ/mol]
        self.register_buffer("pairs", pairs.long().reshape(-1, 2))
        # q_i q_j [e^2], sigma [nm], epsilon [kJ/mol]
        self.register_buffer("pair_params", pair_params.double().reshape(-1, 3))

    def forward(self, species: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        x = positions.to(self.bond_params.dtype)
        rb = torch.linalg.norm(x[self.bonds[:, 0]] - x[self.bonds[:, 1]], dim=-1)
        energy = (0.5 * self.bond_params[:, 1] * (rb - self.bond_params[:, 0]) ** 2).sum()
        theta = _angle(x[self.angles[:, 0]], x[self.angles[:, 1]], x[self.angles[:, 2]])
        energy = energy + (0.5 * self.angle_params[:, 1] * (theta - self.angle_params[:, 0]) ** 2).sum()
        phi = _dihedral(x[self.torsions[:, 0]], x[self.torsions[:, 1]], x[self.torsions[:, 2]], x[self.torsions[:, 3]])
        n, phase, k = self.torsion_params[:, 0], self.torsion_params[:, 1], self.torsion_params[:, 2]
        energy = energy + (k * (1.0 + torch.cos(n * phi - phase))).sum()
        r = torch.linalg.norm(x[self.pairs[:, 0]] - x[self.pairs[:, 1]], dim=-1)
        charge_prod, sigma, epsilon = self.pair_params[:, 0], self.pair_params[:, 1], self.pair_params[:, 2]
        s6 = (sigma / r) ** 6
        energy = energy + (self.coulomb_constant * charge_prod / r + 4.0 * epsilon * (s6 * s6 - s6)).sum()
        return energy

    @classmethod
    def from_system(cls, system: openmm.System, atoms: Sequence[int],
                    atomic_numbers: Sequence[int]) -> "ForceFieldPotential":
        """Extract the terms of ``system`` acting only within ``atoms``.

        Parameters
        ----------
        system : openmm.System
            A force-field system (HarmonicBond/Angle, PeriodicTorsion and NonbondedForce).
        atoms : sequence of int
            Indices of the atoms the potential is for; positions are passed in this order.
        atomic_numbers : sequence of int
            Their atomic numbers (recorded as ``supported_elements``).

        Raises ValueError if another force type has terms inside ``atoms``.
        """
        local = {int(a): i for i, a in enumerate(atoms)}
        terms: dict[str, list] = {"bonds": [], "bond_params": [], "angles": [], "angle_params": [],
                                  "torsions": [], "torsion_params": [], "pairs": [], "pair_params": []}
        for force in system.getForces():
            if isinstance(force, openmm.HarmonicBondForce):
                for b in range(force.getNumBonds()):
                    i, j, r0, k = force.getBondParameters(b)
                    if i in local and j in local:
                        terms["bonds"].append([local[i], local[j]])
                        terms["bond_params"].append([r0.value_in_unit(u.nanometer),
                                                     k.value_in_unit(u.kilojoule_per_mole / u.nanometer**2)])
            elif isinstance(force, openmm.HarmonicAngleForce):
                for a in range(force.getNumAngles()):
                    i, j, k_, theta0, k = force.getAngleParameters(a)
                    if i in local and j in local and k_ in local:
                        terms["angles"].append([local[i], local[j], local[k_]])
                        terms["angle_params"].append([theta0.value_in_unit(u.radian),
                                                      k.value_in_unit(u.kilojoule_per_mole / u.radian**2)])
            elif isinstance(force, openmm.PeriodicTorsionForce):
                for t in range(force.getNumTorsions()):
                    i, j, k_, l, n, phase, k = force.getTorsionParameters(t)
                    if all(p in local for p in (i, j, k_, l)):
                        terms["torsions"].append([local[i], local[j], local[k_], local[l]])
                        terms["torsion_params"].append([n, phase.value_in_unit(u.radian),
                                                        k.value_in_unit(u.kilojoule_per_mole)])
            elif isinstance(force, openmm.NonbondedForce):
                cls._collect_pairs(force, local, terms)
            elif not isinstance(force, _IGNORED_TYPES):
                raise ValueError(f"ForceFieldPotential cannot represent {type(force).__name__}; it supports "
                                 "HarmonicBondForce, HarmonicAngleForce, PeriodicTorsionForce and NonbondedForce.")
        tensors = {key: torch.tensor(value, dtype=torch.float64) for key, value in terms.items()}
        return cls(atomic_numbers, **tensors)

    @staticmethod
    def _collect_pairs(force: openmm.NonbondedForce, local: dict[int, int], terms: dict[str, list]) -> None:
        """Add every pair within ``local`` with its charge product, sigma and epsilon."""
        exceptions = {}
        for e in range(force.getNumExceptions()):
            i, j, qq, sigma, eps = force.getExceptionParameters(e)
            if i in local and j in local:
                exceptions[frozenset((i, j))] = (qq.value_in_unit(u.elementary_charge**2),
                                                 sigma.value_in_unit(u.nanometer),
                                                 eps.value_in_unit(u.kilojoule_per_mole))
        params = {i: force.getParticleParameters(i) for i in local}
        atoms = sorted(local)
        for a, i in enumerate(atoms):
            for j in atoms[a + 1:]:
                if frozenset((i, j)) in exceptions:
                    qq, sigma, eps = exceptions[frozenset((i, j))]
                else:
                    (qi, si, ei), (qj, sj, ej) = params[i], params[j]
                    qq = (qi * qj).value_in_unit(u.elementary_charge**2)
                    sigma = 0.5 * (si + sj).value_in_unit(u.nanometer)
                    eps = (ei * ej).sqrt().value_in_unit(u.kilojoule_per_mole)
                if qq != 0.0 or eps != 0.0:
                    terms["pairs"].append([local[i], local[j]])
                    terms["pair_params"].append([qq, sigma if sigma > 0 else 1.0, eps])
