"""mlmm: hybrid ML/MM molecular dynamics in OpenMM.

    import mlmm
    system = mlmm.create_mixed_system(topology, mm_system, "resname ALA", potential)
"""

from mlmm._version import __version__
from mlmm.bridge.export import export
from mlmm.bridge.minimize import minimize_environment
from mlmm.bridge.mixed import EMBEDDINGS, create_mixed_system, plan_embedding
from mlmm.bridge.reporters import EmbeddingReporter, UncertaintyReporter
from mlmm.potentials.io import load_potential, read_metadata, save_potential

__all__ = ["__version__", "EMBEDDINGS", "EmbeddingReporter", "UncertaintyReporter", "create_mixed_system", "export",
           "load_potential", "minimize_environment", "plan_embedding", "read_metadata", "save_potential"]
