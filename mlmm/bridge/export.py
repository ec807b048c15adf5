"""Export the ML force as a self-contained TorchScript file for plain OpenMM scripts.

The ``.pt`` file holds the embedding module with the potential inside; any OpenMM script
loads it with ``openmmtorch.TorchForce(path)`` without importing mlmm. The matching MM
part (the input System with the replaced interactions removed) can be written as XML.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Union

import openmm
import openmm.app as app
import torch

from mlmm._version import __version__
from mlmm.bridge.mixed import PotentialLike, build_mm_part, plan_embedding
from mlmm.bridge.transports import inference_script
from mlmm.embedding.selection import MLAtoms
from mlmm.potentials.io import FORCE_METADATA_FILE


def export(path: Union[str, Path], topology: app.Topology, mm_system: openmm.System, ml_atoms: MLAtoms,
           potential: PotentialLike, embedding: str = "mechanical", system_xml: Optional[Union[str, Path]] = None,
           remove_constraints: bool = True, **options: Any) -> Path:
    """Write the ML force of an ML/MM set-up as TorchScript (and optionally the MM part as XML).

    Parameters
    ----------
    path : str or Path
        Output ``.pt`` file. Load it with ``openmmtorch.TorchForce(str(path))`` and call
        ``setUsesPeriodicBoundaryConditions(True)`` for periodic systems (the file's
        metadata ``mlmm_force.json`` records ``periodic``).
    system_xml : str or Path, optional
        Where to write the MM part of the mixed system (serialized openmm.System); adding the
        TorchForce to it gives exactly ``create_mixed_system``'s System.
    Other arguments as for :func:`mlmm.create_mixed_system`.
    """
    plan = plan_embedding(topology, mm_system, ml_atoms, potential, embedding, **options)
    scripted = inference_script(plan.module)
    metadata = {"mlmm_version": __version__, "embedding": embedding, "periodic": plan.periodic,
                "ml_atoms": plan.ml_atoms, "num_particles": mm_system.getNumParticles(),
                "potential": plan.info.metadata}
    path = Path(path)
    torch.jit.save(scripted, str(path), _extra_files={FORCE_METADATA_FILE: json.dumps(metadata)})
    if system_xml is not None:
        mm_part = build_mm_part(mm_system, plan, remove_constraints)
        Path(system_xml).write_text(openmm.XmlSerializer.serialize(mm_part))
    return path
