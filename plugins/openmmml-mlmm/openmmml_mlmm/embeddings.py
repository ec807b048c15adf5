"""mlmm's embeddings as openmm-ml embedding methods.

    mixed = MLPotential("mlmm", model="embedding/model/model.pt").createMixedSystem(
        topology, mm_system, atoms, embedding="electrostatic")

``"mechanical-ml-charges"``, ``"electrostatic"`` and ``"buffer"`` build exactly the System of
``mlmm.create_mixed_system(..., embedding=name)``; scheme options (``cutoff``, ``total_charge``,
``buffer_cutoff``, ``transport``, ...) are passed through by name. openmm-ml's own
``"mechanical"`` embedding works with the ``"mlmm"`` potential unchanged.
"""

from __future__ import annotations

from typing import Any

import openmm
import openmm.app as app
from openmmml.mlpotential import Embedding, EmbeddingFactory, MLPotentialImpl

from mlmm.bridge.mixed import create_mixed_system
from openmmml_mlmm.potential import MLMMPotentialImpl

SCHEMES = ("mechanical-ml-charges", "electrostatic", "buffer")


class MLMMEmbeddingFactory(EmbeddingFactory):
    """Creates the :class:`MLMMEmbedding` of the requested scheme."""

    def createEmbedding(self, name: str, **args: Any) -> Embedding:
        return MLMMEmbedding(name)


class MLMMEmbedding(Embedding):
    """One of mlmm's embedding schemes (see :func:`mlmm.create_mixed_system`).

    Parameters
    ----------
    scheme : str
        ``"mechanical-ml-charges"``, ``"electrostatic"`` or ``"buffer"``.
    """

    def __init__(self, scheme: str):
        if scheme not in SCHEMES:
            raise ValueError(f"embedding {scheme!r} is not one of mlmm's {SCHEMES}.")
        self.scheme = scheme

    def createMixedSystem(self, potential: MLPotentialImpl, topology: app.Topology, system: openmm.System,
                          atoms: list[int], forceGroup: int, interpolate: bool, returnInfo: bool = False,
                          **args: Any) -> openmm.System:
        """The mixed System; openmm-ml removes the ML-ML constraints afterwards when asked to."""
        if not isinstance(potential, MLMMPotentialImpl):
            raise ValueError(f"embedding={self.scheme!r} is mlmm's and needs an mlmm model: "
                             f"MLPotential('mlmm', model=...); this potential is a {type(potential).__name__}. "
                             "Use embedding='mechanical' with other openmm-ml potentials.")
        return create_mixed_system(topology, system, atoms, potential.model, self.scheme, interpolate=interpolate,
                                   remove_constraints=False, force_group=forceGroup, **args)
