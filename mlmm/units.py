"""Physical constants and unit handling at mlmm's boundaries.

mlmm works in OpenMM's units everywhere: nm, kJ/mol, kJ/mol/nm, ps, elementary charge.
Values given as OpenMM ``Quantity`` are converted here; bare numbers already are in
those units.
"""

from __future__ import annotations

from typing import Any

import openmm.unit as u

#: Coulomb constant k_e = 1/(4 pi eps0) in kJ mol^-1 nm e^-2, the value OpenMM uses (CODATA 2018).
#: PHYSICS.md rounds it to 138.935456; the full value keeps mlmm exact against OpenMM.
COULOMB_CONSTANT = 138.93545764438198

#: Speed of light in cm/ps: a frequency in 1/ps divided by it is a wavenumber in cm^-1 (1 ps^-1 = 33.356 cm^-1).
SPEED_OF_LIGHT_CM_PER_PS = 2.99792458e-2

#: Second radiation constant h c / k_B in cm K: h c nu~ / kT = SECOND_RADIATION_CONSTANT_CM_K * nu~ / T.
SECOND_RADIATION_CONSTANT_CM_K = 1.438776877


def to_float(value: Any, unit: u.Unit, name: str) -> float:
    """Return ``value`` as a float in ``unit``.

    Parameters
    ----------
    value : float or openmm.unit.Quantity
        A bare number (taken to be in ``unit`` already) or a Quantity compatible with it.
    unit : openmm.unit.Unit
        The OpenMM unit to express the value in (e.g. ``u.nanometer``).
    name : str
        The argument's name, used in error messages.
    """
    if u.is_quantity(value):
        if not value.unit.is_compatible(unit):
            raise TypeError(f"{name}={value} has units {value.unit}, which are not compatible with {unit}; "
                            f"pass a length/energy in compatible units or a bare number in {unit}.")
        return float(value.value_in_unit(unit))
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name}={value!r} is not a number or an OpenMM Quantity; "
                        f"pass e.g. 1.0 (meaning {unit}) or 1.0*openmm.unit.{unit}.") from None


def to_nm(value: Any, name: str) -> float:
    """Return a length as a float in nanometers (see :func:`to_float`)."""
    return to_float(value, u.nanometer, name)


# Conversions at the edge of reference calculators (CODATA 2018, as OpenMM).
#: Hartree in kJ/mol.
HARTREE_TO_KJ_PER_MOL = 2625.4996394798254
#: Bohr radius in nm.
BOHR_TO_NM = 0.0529177210903
#: Angstrom in nm.
ANGSTROM_TO_NM = 0.1
#: eV in kJ/mol (ASE's extxyz files use eV and Angstrom).
EV_TO_KJ_PER_MOL = 96.48533212331002
#: Boltzmann constant times Avogadro's number in kJ/mol/K (OpenMM's MOLAR_GAS_CONSTANT_R).
MOLAR_GAS_CONSTANT = 8.31446261815324e-3
