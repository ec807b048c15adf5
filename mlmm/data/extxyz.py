"""Exchange datasets with other codes as extended XYZ through ASE (Angstrom, eV, eV/Angstrom).

Per frame, the ML atoms come first; an MM environment follows as atoms of element X
(atomic number 0) with per-atom arrays ``mm_charge`` (e) and, when present, ``mm_force``
(eV/Angstrom). Energies are ``info["energy"]``, forces the calculator's ``forces``, ML
charges the ``charges`` array (e) and dipoles ``info["dipole"]`` (e Angstrom).
Units are converted here and nowhere else.
"""

from __future__ import annotations

import numpy as np

from mlmm.data.dataset import Dataset, DatasetError
from mlmm.units import ANGSTROM_TO_NM, EV_TO_KJ_PER_MOL

FORCE_TO_EV_PER_ANGSTROM = ANGSTROM_TO_NM / EV_TO_KJ_PER_MOL  # (kJ/mol/nm) -> eV/Angstrom


def write_extxyz(dataset: Dataset, path) -> None:
    """Write the labelled frames of ``dataset`` to an extxyz file."""
    import ase
    import ase.io
    from ase.calculators.singlepoint import SinglePointCalculator

    frames = []
    data = dataset.labelled()
    for k in range(data.n_frames):
        numbers, positions = data.species, data.positions[k]
        real = None
        if data.has_environment:
            real = data.mm_mask[k]
            numbers = np.concatenate([numbers, np.zeros(real.sum(), dtype=np.int64)])
            positions = np.concatenate([positions, data.mm_positions[k][real]])
        atoms = ase.Atoms(numbers=numbers, positions=positions / ANGSTROM_TO_NM)
        atoms.info["total_charge"] = int(data.total_charge)
        atoms.info["multiplicity"] = int(data.multiplicity)
        if data.frame_source is not None:
            atoms.info["frame_source"] = str(data.frame_source[k])
        if data.dipoles is not None:
            atoms.info["dipole"] = data.dipoles[k] / ANGSTROM_TO_NM
        if data.charges is not None:
            atoms.new_array("charges", _pad(data.charges[k], len(atoms)))
        if real is not None:
            atoms.new_array("mm_charge", _pad(data.mm_charges[k][real], len(atoms), front=data.n_atoms))
            if data.mm_forces is not None:
                atoms.new_array("mm_force", _pad(data.mm_forces[k][real] * FORCE_TO_EV_PER_ANGSTROM,
                                                 len(atoms), front=data.n_atoms))
        results = {}
        if data.energies is not None:
            results["energy"] = data.energies[k] / EV_TO_KJ_PER_MOL
        if data.forces is not None:
            results["forces"] = _pad(data.forces[k] * FORCE_TO_EV_PER_ANGSTROM, len(atoms))
        if results:
            atoms.calc = SinglePointCalculator(atoms, **results)
        frames.append(atoms)
    ase.io.write(path, frames, format="extxyz")


def _pad(values: np.ndarray, n_total: int, front: int = 0) -> np.ndarray:
    """Place ``values`` at rows front.. of an [n_total, ...] zero array."""
    out = np.zeros((n_total,) + values.shape[1:])
    out[front:front + len(values)] = values
    return out


def read_extxyz(path, provenance: dict | None = None) -> Dataset:
    """Read an extxyz file written by :func:`write_extxyz` or another code (same ML atoms per frame)."""
    import ase.io

    frames = ase.io.read(path, index=":", format="extxyz")
    if not frames:
        raise DatasetError(f"{path}: no frames")
    ml = frames[0].numbers[frames[0].numbers > 0]
    collected = {key: [] for key in ("positions", "energies", "forces", "charges", "dipoles",
                                     "mm_positions", "mm_charges", "mm_forces")}
    for k, atoms in enumerate(frames):
        is_mm = atoms.numbers == 0
        if not np.array_equal(atoms.numbers[~is_mm], ml):
            raise DatasetError(f"{path}: frame {k} has different ML atoms than frame 0")
        collected["positions"].append(atoms.positions[~is_mm] * ANGSTROM_TO_NM)
        results = atoms.calc.results if atoms.calc is not None else {}
        if "energy" in results:
            collected["energies"].append(results["energy"] * EV_TO_KJ_PER_MOL)
        if "forces" in results:
            collected["forces"].append(results["forces"][~is_mm] / FORCE_TO_EV_PER_ANGSTROM)
        charges = results.get("charges", atoms.arrays.get("charges"))  # ASE files them as results
        if charges is not None:
            collected["charges"].append(np.asarray(charges)[~is_mm])
        dipole = results.get("dipole", atoms.info.get("dipole"))
        if dipole is not None:
            collected["dipoles"].append(np.asarray(dipole) * ANGSTROM_TO_NM)
        if is_mm.any():
            collected["mm_positions"].append(atoms.positions[is_mm] * ANGSTROM_TO_NM)
            collected["mm_charges"].append(atoms.arrays["mm_charge"][is_mm])
            if "mm_force" in atoms.arrays:
                collected["mm_forces"].append(atoms.arrays["mm_force"][is_mm] / FORCE_TO_EV_PER_ANGSTROM)
    fields = {}
    for key, values in collected.items():
        if not values:
            continue
        if len(values) != len(frames):
            raise DatasetError(f"{path}: field {key!r} is present in {len(values)} of {len(frames)} frames")
        if key.startswith("mm_"):
            fields[key] = _pad_environment(values)
        else:
            fields[key] = np.stack(values)
    if "mm_positions" in fields:
        counts = [len(v) for v in collected["mm_positions"]]
        fields["mm_mask"] = np.arange(max(counts))[None, :] < np.asarray(counts)[:, None]
    info = frames[0].info
    return Dataset(species=ml, **fields, total_charge=int(info.get("total_charge", 0)),
                   multiplicity=int(info.get("multiplicity", 1)),
                   frame_source=[a.info.get("frame_source", "extxyz") for a in frames],
                   provenance=dict(provenance or {}, imported_from=str(path)))


def _pad_environment(values) -> np.ndarray:
    width = max(len(v) for v in values)
    out = np.zeros((len(values), width) + values[0].shape[1:])
    for k, v in enumerate(values):
        out[k, :len(v)] = v
    return out
