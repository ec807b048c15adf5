"""``minimize_environment``: local energy minimisation of a mixed system with the ML region held in place."""

from __future__ import annotations

from typing import Any, Optional

import openmm
import openmm.app as app
import openmm.unit as u

from mlmm.embedding.selection import MLAtoms, resolve_ml_atoms


def minimize_environment(context: openmm.Context, ml_atoms: MLAtoms, topology: Optional[app.Topology] = None,
                         tolerance: Any = 10.0, max_iterations: int = 0) -> None:
    """Minimise the energy of ``context`` over everything but the ML atoms, which keep their positions.

    A new solvent box (OpenMM's ``Modeller.addSolvent``) starts with clashes. Minimising the
    whole mixed system lets the minimiser carry the ML atoms through them into geometries the
    network never saw, where its energy can lie far below its minimum. The formic acid dimer in
    a fresh 3 nm TIP3P box, minimised free to OpenMM's default tolerance: its atoms moved by up to
    0.24 nm, the electrostatic model's energy reached -87 355 kJ/mol against -59 323 with the
    dimer held (the mechanical model's -76 523), and MD failed within 100 steps; minimised with
    the dimer held, the box ran 1000 steps with the network energy within 25 kJ/mol of its start.
    ``mlmm run`` minimises this way unless ``[md] minimize_ml_region = true``.

    The ML atoms are held by giving them zero mass for the minimisation (OpenMM's minimiser does
    not move massless particles); their masses are restored afterwards, and the context
    reinitialised each time with its state preserved.

    Parameters
    ----------
    context : openmm.Context
        A context of the mixed system (``context.getSystem()`` is modified and restored).
    ml_atoms : sequence of int or str
        The atoms to hold: indices, or an MDTraj selection string (then ``topology`` is needed).
    topology : openmm.app.Topology, optional
        The system's topology, for a selection string.
    tolerance : float or Quantity
        Root-mean-square force at which to stop, kJ/mol/nm (OpenMM's default 10).
    max_iterations : int
        Most iterations; 0 runs until ``tolerance`` is met.
    """
    system = context.getSystem()
    if isinstance(ml_atoms, str):
        if topology is None:
            raise ValueError(f"ml_atoms={ml_atoms!r} is a selection string; pass the system's topology= to resolve "
                             "it, or give atom indices.")
        held = resolve_ml_atoms(topology, ml_atoms)
    else:
        held = sorted({int(i) for i in ml_atoms})
        if held and not 0 <= held[0] <= held[-1] < system.getNumParticles():
            raise ValueError(f"ml_atoms must be particle indices of the system (0..{system.getNumParticles() - 1}); "
                             f"got {held[0]}..{held[-1]}")
    if isinstance(tolerance, u.Quantity):
        tolerance = tolerance.value_in_unit(u.kilojoule_per_mole / u.nanometer)
    masses = {index: system.getParticleMass(index) for index in held}
    for index in held:
        system.setParticleMass(index, 0.0)
    context.reinitialize(preserveState=True)
    try:
        openmm.LocalEnergyMinimizer.minimize(context, float(tolerance), int(max_iterations))
    finally:
        for index, mass in masses.items():
            system.setParticleMass(index, mass)
        context.reinitialize(preserveState=True)
