"""The potential contract: what mlmm accepts as an ML potential.

An ML potential is any ``torch.nn.Module`` with

    forward(species: Tensor[n] int64, positions: Tensor[n, 3] in nm) -> Tensor[] energy in kJ/mol

``species`` are atomic numbers. Potentials that also predict atomic charges (needed by the
``"mechanical-ml-charges"`` embedding, spectra and the electrostatic schemes) additionally
export, with ``@torch.jit.export``,

    energy_and_charges(species, positions, total_charge: float)
        -> Tuple[Tensor[] energy in kJ/mol, Tensor[n] charges in e summing to total_charge]

Potentials for the ``"electrostatic"`` embedding export

    energy_in_field(species, positions, mm_positions[m, 3] nm, mm_charges[m] e, total_charge: float)
        -> Tuple[Tensor[] energy in kJ/mol, Tensor[n] charges in e]

and carry ``embedding_scheme = "electrostatic"``, ``environment_cutoff`` and
``environment_switch_distance`` (nm; see :mod:`mlmm.potentials.electrostatic`). Potentials for
the ``"buffer"`` embedding export

    weighted_energy_and_charges(species, positions, weights[n] in [0, 1], total_charge: float)
        -> Tuple[Tensor[] energy in kJ/mol, Tensor[n] weighted charges in e]

in which an atom of weight 0 contributes nothing (see :class:`mlmm.potentials.PhysNet`). A buffer
potential with a ``vacuum`` submodule (a potential of the ML region alone,
:class:`mlmm.potentials.VacuumAnchoredBuffer`) has the scheme add ``vacuum(species_I, positions_I)``.

Potentials may declare ``supported_elements`` (a list of atomic numbers) and ``cutoff``
(nm); a saved mlmm model records both in its metadata.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch

CHARGES_METHOD = "energy_and_charges"
FIELD_METHOD = "energy_in_field"
WEIGHTED_METHOD = "weighted_energy_and_charges"


@dataclass(frozen=True)
class PotentialInfo:
    """What mlmm knows about a potential before running it.

    Attributes
    ----------
    supported_elements : list of int or None
        Atomic numbers the potential was made for; None when the potential does not say.
    cutoff : float or None
        The potential's own interaction cutoff in nm, if any.
    predicts_charges : bool
        Whether the potential exports ``energy_and_charges``.
    accepts_mm_charges : bool
        Whether the potential exports ``energy_in_field`` (electrostatic embedding).
    accepts_weights : bool
        Whether the potential exports ``weighted_energy_and_charges`` (buffer embedding).
    scheme : str or None
        The embedding the potential was trained for, when it is specific to one.
    metadata : dict
        The saved metadata (empty for in-memory modules).
    """

    supported_elements: Optional[list[int]]
    cutoff: Optional[float]
    predicts_charges: bool
    accepts_mm_charges: bool = False
    accepts_weights: bool = False
    scheme: Optional[str] = None
    metadata: dict = field(default_factory=dict)


def predicts_charges(module: torch.nn.Module) -> bool:
    """Return True when ``module`` exports ``energy_and_charges`` (see module docstring)."""
    return callable(getattr(module, CHARGES_METHOD, None))


def describe(module: torch.nn.Module, metadata: Optional[dict] = None) -> PotentialInfo:
    """Collect a :class:`PotentialInfo` from a module's attributes and saved metadata (by default that of
    the file an eager module was rebuilt from, its ``file_metadata``)."""
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"potential must be a torch.nn.Module, an mlmm model file or path; "
                        f"got {type(module).__name__}. "
                        "Wrap your function in a torch.nn.Module with forward(species, positions) -> energy.")
    metadata = dict(metadata if metadata is not None else (getattr(module, "file_metadata", None) or {}))
    elements = metadata.get("supported_elements", getattr(module, "supported_elements", None))
    cutoff = metadata.get("cutoff_nm", getattr(module, "cutoff", None))
    return PotentialInfo(
        supported_elements=None if elements is None else [int(z) for z in elements],
        cutoff=None if cutoff is None else float(cutoff),
        predicts_charges=predicts_charges(module),
        accepts_mm_charges=callable(getattr(module, FIELD_METHOD, None)),
        accepts_weights=callable(getattr(module, WEIGHTED_METHOD, None)),
        scheme=metadata.get("embedding_scheme", getattr(module, "embedding_scheme", None)),
        metadata=metadata,
    )


def charges_fitted(metadata: dict) -> Optional[bool]:
    """Whether training fitted a potential's atomic charges to reference charges, from the loss weights
    ``mlmm train`` records in the model file (``extra["loss_weights"]``): True when the charge weight was
    positive, False when it was zero (the charges then follow only from the dipole term, if any, and need
    not resemble physical atomic charges), None for files without that record (adapted or hand-made
    potentials, QEq wrappers). Only the last training counts: a network fine-tuned without charges from
    one trained with them is False."""
    weights = metadata.get("extra", {}).get("loss_weights")
    if weights is None:
        return None
    return weights["charge"] > 0


def check_elements(info: PotentialInfo, atomic_numbers: Sequence[int], atom_indices: Sequence[int]) -> None:
    """Raise ValueError naming the first ML atom whose element the potential does not support."""
    if info.supported_elements is None:
        return
    supported = set(info.supported_elements)
    for index, z in zip(atom_indices, atomic_numbers):
        if z not in supported:
            raise ValueError(f"ML atom {index} has atomic number {z}, which the potential does not support "
                             f"(supported: {sorted(supported)}). Remove it from ml_atoms or use a potential "
                             "trained for this element.")
