"""Resolve and validate the ML region: indices or an MDTraj selection, checked against the system."""

from __future__ import annotations

from typing import Sequence, Union

import numpy as np
import openmm
import openmm.app as app

MLAtoms = Union[str, Sequence[int], np.ndarray]


def resolve_ml_atoms(topology: app.Topology, ml_atoms: MLAtoms) -> list[int]:
    """Return sorted ML atom indices from indices or an MDTraj selection string.

    Raises ValueError for an empty or invalid selection, out-of-range or repeated indices.
    """
    n_atoms = topology.getNumAtoms()
    if isinstance(ml_atoms, str):
        import mdtraj

        try:
            selected = mdtraj.Topology.from_openmm(topology).select(ml_atoms)
        except Exception as error:  # mdtraj raises several types for a bad expression
            raise ValueError(f"ml_atoms selection {ml_atoms!r} is not a valid MDTraj selection: {error}. "
                             "Examples: 'resname ALA', 'resid 0 to 2', 'index 0 to 21'.") from None
        if len(selected) == 0:
            raise ValueError(f"ml_atoms selection {ml_atoms!r} matches no atom of the topology "
                             f"({n_atoms} atoms); check residue names with topology.residues().")
        return [int(i) for i in selected]
    try:
        indices = [int(i) for i in ml_atoms]
    except (TypeError, ValueError):
        raise TypeError(f"ml_atoms must be atom indices or an MDTraj selection string, got {ml_atoms!r}.") from None
    if not indices:
        raise ValueError("ml_atoms is empty; give the indices of at least one atom or a selection string.")
    bad = [i for i in indices if not 0 <= i < n_atoms]
    if bad:
        raise ValueError(f"ml_atoms contains indices {bad[:5]} outside 0..{n_atoms - 1} (the topology has "
                         f"{n_atoms} atoms).")
    if len(set(indices)) != len(indices):
        repeated = sorted({i for i in indices if indices.count(i) > 1})
        raise ValueError(f"ml_atoms lists atoms {repeated[:5]} more than once; give each atom once.")
    return sorted(indices)


def validate_ml_region(topology: app.Topology, system: openmm.System, ml: Sequence[int]) -> list[int]:
    """Check the ML region against topology and system; return the atomic numbers of the ML atoms.

    Raises ValueError for an atom-count mismatch, virtual sites or atoms without element in
    the ML region, and covalent bonds between ML and MM atoms (link atoms are not supported).
    """
    if topology.getNumAtoms() != system.getNumParticles():
        raise ValueError(f"the topology has {topology.getNumAtoms()} atoms but the system has "
                         f"{system.getNumParticles()} particles; create both from the same structure "
                         "(e.g. forcefield.createSystem(modeller.topology)).")
    ml_set = set(ml)
    for i in ml:
        if system.isVirtualSite(i):
            raise ValueError(f"ML atom {i} is a virtual site; virtual sites (e.g. TIP4P's M) cannot be in the ML "
                             "region. Select only real atoms, or use a water model without virtual sites.")
    for i in range(system.getNumParticles()):
        if system.isVirtualSite(i) and i not in ml_set:
            site = system.getVirtualSite(i)
            parents = {site.getParticle(k) for k in range(site.getNumParticles())}
            if parents & ml_set:
                raise ValueError(f"virtual site {i} is built from ML atoms {sorted(parents & ml_set)}; "
                                 "include its whole molecule in or out of the ML region consistently.")
    for bond in topology.bonds():
        a, b = bond[0].index, bond[1].index
        if (a in ml_set) != (b in ml_set):
            inner, outer = (a, b) if a in ml_set else (b, a)
            raise ValueError(f"ML atom {inner} ({_describe(bond[0] if a == inner else bond[1])}) is covalently "
                             f"bonded to MM atom {outer} ({_describe(bond[1] if a == inner else bond[0])}); "
                             "link atoms are not supported yet. Choose an ML region made of whole molecules.")
    atoms = list(topology.atoms())
    numbers = []
    for i in ml:
        element = atoms[i].element
        if element is None:
            raise ValueError(f"ML atom {i} ({_describe(atoms[i])}) has no element; ML atoms must be real atoms.")
        numbers.append(element.atomic_number)
    return numbers


def molecule_roots(topology: app.Topology, ml: Sequence[int]) -> list[int]:
    """For each ML atom, the position in ``ml`` of the first ML atom of its molecule (bonded component)."""
    position = {atom: k for k, atom in enumerate(ml)}
    parent = list(range(len(ml)))

    def find(k: int) -> int:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for bond in topology.bonds():
        a, b = position.get(bond[0].index), position.get(bond[1].index)
        if a is not None and b is not None:
            ra, rb = find(a), find(b)
            parent[max(ra, rb)] = min(ra, rb)
    return [find(k) for k in range(len(ml))]


def group_anchor(indices: Sequence[int], masses: Sequence[float]) -> int:
    """The anchor atom of a group (molecule): the heaviest of ``indices``, the first among equals.

    ``masses`` are indexed by atom index (any mass unit).
    """
    return max(indices, key=lambda i: (masses[i], -i))


def _describe(atom: app.topology.Atom) -> str:
    return f"{atom.residue.name}{atom.residue.id}:{atom.name}"
