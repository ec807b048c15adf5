"""ML potentials: the contract, save/load with metadata, and reference potentials."""

from mlmm.potentials.contract import PotentialInfo, describe, predicts_charges
from mlmm.potentials.forcefield import ForceFieldPotential
from mlmm.potentials.io import load_potential, read_metadata, save_potential
from mlmm.potentials.qeq import QEqCharges

__all__ = ["ForceFieldPotential", "PotentialInfo", "QEqCharges", "describe", "load_potential", "predicts_charges",
           "read_metadata", "save_potential"]
