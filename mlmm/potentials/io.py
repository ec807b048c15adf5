"""Save and load potentials as TorchScript files carrying mlmm metadata.

A model file is a TorchScript archive with one extra file, ``mlmm.json``, holding the
metadata: format and version, supported elements, cutoff, units, mlmm version and a
SHA-256 hash of the parameters and buffers that is checked on load.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import torch

from mlmm._version import __version__
from mlmm.potentials.contract import predicts_charges

FORMAT_NAME = "mlmm-potential"
#: Bumped when a file written by this version cannot be read by older readers.
FORMAT_VERSION = 1
METADATA_FILE = "mlmm.json"
#: Metadata file of an exported ML force (see mlmm.bridge.export).
FORCE_METADATA_FILE = "mlmm_force.json"
UNITS = {"positions": "nm", "energy": "kJ/mol", "forces": "kJ/mol/nm", "charges": "e"}

PathLike = Union[str, Path]


def content_hash(module: torch.nn.Module) -> str:
    """SHA-256 over the names, dtypes, shapes and values of all parameters and buffers."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        data = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{data.dtype}|{tuple(data.shape)}|".encode())
        # reshape: 0-d tensors cannot be viewed as bytes
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()


def save_potential(potential: torch.nn.Module, path: PathLike, supported_elements: Optional[Sequence[int]] = None,
                   cutoff: Optional[float] = None, name: Optional[str] = None,
                   extra: Optional[dict[str, Any]] = None, compiled: Optional[torch.jit.ScriptModule] = None
                   ) -> Path:
    """Compile ``potential`` with TorchScript and write it with metadata.

    Parameters
    ----------
    potential : torch.nn.Module
        A module following the potential contract (:mod:`mlmm.potentials.contract`).
    path : str or Path
        Destination file, conventionally ``*.pt``.
    supported_elements : sequence of int, optional
        Atomic numbers the potential may be used for; checked by ``create_mixed_system``.
        Defaults to the module's ``supported_elements`` attribute (mlmm networks have one).
    cutoff : float, optional
        The potential's own cutoff in nm; defaults to the module's ``cutoff`` attribute.
    name : str, optional
        A human-readable model name (defaults to the class name).
    extra : dict, optional
        Further JSON-serializable metadata (training data, errors, ...).
    compiled : torch.jit.ScriptModule, optional
        A TorchScript copy of ``potential`` (same parameters) to write instead of compiling it
        now; the metadata still comes from ``potential``. Training compiles its model before the
        first epoch, so the file holds the code the run started with.

    The architecture of mlmm networks (family, hyperparameters, committee size) is
    recorded too.
    """
    if supported_elements is None:
        supported_elements = getattr(potential, "supported_elements", None)
    if cutoff is None:
        cutoff = getattr(potential, "cutoff", None)
    if not supported_elements:
        raise ValueError("supported_elements is empty; list the atomic numbers the potential was made for, "
                         "e.g. [1, 8].")
    if compiled is not None:
        scripted = compiled
    elif isinstance(potential, torch.jit.ScriptModule):
        scripted = potential
    else:
        scripted = torch.jit.script(potential)
    metadata = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "mlmm_version": __version__,
        "name": name or type(potential).__name__,
        "supported_elements": sorted(int(z) for z in supported_elements),
        "cutoff_nm": None if cutoff is None else float(cutoff),
        "units": UNITS,
        "predicts_charges": predicts_charges(scripted),
        "content_hash": content_hash(scripted),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "extra": extra or {},
    }
    scheme = getattr(potential, "embedding_scheme", None)
    if scheme is not None:
        metadata["embedding_scheme"] = scheme
        metadata["environment"] = {"cutoff_nm": float(potential.environment_cutoff),
                                   "switch_distance_nm": float(potential.environment_switch_distance)}
    if hasattr(potential, "hyperparameters"):  # an mlmm network
        metadata["architecture"] = {"family": potential.family, "n_members": potential.n_members,
                                    **potential.hyperparameters}
    path = Path(path)
    torch.jit.save(scripted, str(path), _extra_files={METADATA_FILE: json.dumps(metadata, indent=2)})
    return path


def read_metadata(path: PathLike) -> dict:
    """Return the metadata of an mlmm model file without loading the model.

    Raises ValueError when the file is not an mlmm model or its format is too new.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"model file {str(path)!r} does not exist; pass the path of a file written by "
                         "mlmm.save_potential.")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{str(path)!r} is not an mlmm model (not a TorchScript archive); "
                         "create one with mlmm.save_potential.")
    with zipfile.ZipFile(path) as archive:
        entries = [n for n in archive.namelist() if n.endswith("/extra/" + METADATA_FILE)]
        if not entries:
            if any(n.endswith("/extra/" + FORCE_METADATA_FILE) for n in archive.namelist()):
                raise ValueError(f"{str(path)!r} is an exported ML force (mlmm.export), not a model; load it "
                                 "with openmmtorch.TorchForce, or pass the model file it was made from.")
            raise ValueError(f"{str(path)!r} is a TorchScript file without mlmm metadata, so not an mlmm model; "
                             "load the module with torch.jit.load and save it with mlmm.save_potential.")
        metadata = json.loads(archive.read(entries[0]))
    if metadata.get("format") != FORMAT_NAME:
        raise ValueError(f"{str(path)!r} has format {metadata.get('format')!r}, not {FORMAT_NAME!r}.")
    version = metadata.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(f"{str(path)!r} was saved by mlmm {metadata.get('mlmm_version')} with model format "
                         f"{version}, which this mlmm {__version__} (format {FORMAT_VERSION}) cannot read; "
                         "upgrade mlmm.")
    return metadata


def load_potential(path: PathLike, map_location: Optional[str] = None) -> tuple[torch.jit.ScriptModule, dict]:
    """Load an mlmm model file; return the TorchScript module and its metadata.

    The content hash is recomputed and compared with the saved one, so a truncated or
    tampered file is refused.
    """
    metadata = read_metadata(path)
    module = torch.jit.load(str(path), map_location=map_location)
    actual = content_hash(module)
    if actual != metadata["content_hash"]:
        raise ValueError(f"{str(path)!r}: parameters do not match the saved content hash "
                         f"({actual[:12]} != {metadata['content_hash'][:12]}); the file is corrupt or was modified. "
                         "Re-export the model.")
    return module, metadata
