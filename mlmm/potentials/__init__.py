"""ML potentials: the contract, network families, committees and means, save/load with metadata."""

from mlmm.potentials.anchored_buffer import VacuumAnchoredBuffer
from mlmm.potentials.base import NeuralPotential
from mlmm.potentials.committee import select_member, stack_members
from mlmm.potentials.contract import PotentialInfo, describe, predicts_charges
from mlmm.potentials.electrostatic import ElectrostaticEmbedding, ElectrostaticPotential
from mlmm.potentials.forcefield import ForceFieldPotential
from mlmm.potentials.hdnnp import HDNNP
from mlmm.potentials.io import load_potential, read_metadata, save_potential
from mlmm.potentials.mean import average_potentials
from mlmm.potentials.painn import PaiNN
from mlmm.potentials.physnet import PhysNet
from mlmm.potentials.qeq import QEqCharges
from mlmm.potentials.schnet import SchNet
from mlmm.potentials.validation import predict, validate_inputs

FAMILIES = {"physnet": PhysNet, "painn": PaiNN, "schnet": SchNet, "hdnnp": HDNNP,
            "electrostatic": ElectrostaticEmbedding}

__all__ = ["FAMILIES", "ElectrostaticEmbedding", "ElectrostaticPotential", "ForceFieldPotential", "HDNNP",
           "NeuralPotential", "PaiNN", "PhysNet", "PotentialInfo", "QEqCharges",
           "SchNet", "VacuumAnchoredBuffer", "average_potentials", "describe", "load_potential", "predict",
           "predicts_charges",
           "read_metadata", "save_potential",
           "select_member", "stack_members", "validate_inputs"]
