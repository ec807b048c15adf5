"""The openmm-ml potential ``"mlmm"``: an mlmm model (file or module) as an ``MLPotential``.

    potential = MLPotential("mlmm", model="systems/water/model/model.pt")
    system = potential.createSystem(topology)                       # ML only
    mixed = potential.createMixedSystem(topology, mm_system, atoms)  # openmm-ml's mechanical embedding

The force is the one mlmm itself adds for ``embedding="mechanical"``: the model on the ML atoms,
made whole across periodic boundaries, through openmm-torch's ``TorchForce`` (or
``openmm.PythonForce`` with ``transport="python"``).
"""

from __future__ import annotations

from typing import Any, Iterable, Optional

import openmm
import openmm.app as app
from openmmml.mlpotential import MLPotentialImpl, MLPotentialImplFactory

from mlmm.bridge.mixed import PotentialLike, plan_embedding, resolve_potential
from mlmm.bridge.transports import make_force

#: Keyword arguments openmm-ml's own embeddings pass on to ``addForces``; they do not concern the force.
_OPENMMML_ARGUMENTS = {"mlLongRange"}


class MLMMPotentialImplFactory(MLPotentialImplFactory):
    """Creates :class:`MLMMPotentialImpl` for ``MLPotential("mlmm", model=...)``."""

    def createImpl(self, name: str, **args: Any) -> MLPotentialImpl:
        if "model" not in args:
            raise ValueError("MLPotential('mlmm') needs model=: an mlmm model file (.pt written by `mlmm train` or "
                             "mlmm.potentials.save_potential) or a torch module with forward(species, positions_nm) "
                             "-> energy_kJ_per_mol.")
        unknown = set(args) - {"model"}
        if unknown:
            raise ValueError(f"MLPotential('mlmm') got unknown argument(s) {sorted(unknown)}; it takes model= only "
                             "(options such as transport= go to createSystem/createMixedSystem).")
        return MLMMPotentialImpl(args["model"])


class MLMMPotentialImpl(MLPotentialImpl):
    """An mlmm potential inside openmm-ml.

    Parameters
    ----------
    model : str, Path or torch.nn.Module
        An mlmm model file or a module following :mod:`mlmm.potentials.contract`.
    """

    def __init__(self, model: PotentialLike):
        resolve_potential(model)  # a bad file or module fails here, not at createSystem
        self.model = model

    def addForces(self, topology: app.Topology, system: openmm.System, atoms: Optional[Iterable[int]],
                  forceGroup: int, transport: str = "torch", **args: Any) -> None:
        """Add the model's force on ``atoms`` (all atoms when None) to ``system``.

        ``transport`` is ``"torch"`` (TorchForce, default) or ``"python"`` (PythonForce).
        """
        unknown = set(args) - _OPENMMML_ARGUMENTS
        if unknown:
            raise ValueError(f"the 'mlmm' potential got unknown argument(s) {sorted(unknown)}; it accepts "
                             "transport='torch'|'python'.")
        ml_atoms = list(range(topology.getNumAtoms())) if atoms is None else list(atoms)
        plan = plan_embedding(topology, system, ml_atoms, self.model, "mechanical")
        periodic = plan.periodic or topology.getPeriodicBoxVectors() is not None
        force = make_force(plan.module, periodic, transport)
        force.setForceGroup(forceGroup)
        force.setName("mlmm mechanical")
        system.addForce(force)

    def getMLLongRange(self) -> bool:
        """mlmm potentials are local: no interactions between periodic images of the ML region."""
        return False
