"""openmm-ml entry points for mlmm: the potential ``"mlmm"`` and the embeddings
``"mechanical-ml-charges"``, ``"electrostatic"`` and ``"buffer"``.

Installed, it needs no import: openmm-ml finds both through its entry-point groups.
"""

from openmmml_mlmm.embeddings import MLMMEmbedding, MLMMEmbeddingFactory
from openmmml_mlmm.potential import MLMMPotentialImpl, MLMMPotentialImplFactory

__all__ = ["MLMMEmbedding", "MLMMEmbeddingFactory", "MLMMPotentialImpl", "MLMMPotentialImplFactory"]
