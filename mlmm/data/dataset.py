"""The mlmm dataset: frames of one ML region with reference labels, as HDF5 with units and provenance.

Layout of a dataset file (every numeric array carries a ``units`` attribute; OpenMM units)::

    /species             int64 [n]            atomic numbers ("1")
    /positions           float64 [F, n, 3]    nm
    /energies            float64 [F]          kJ/mol            (optional, like all below)
    /forces              float64 [F, n, 3]    kJ/mol/nm
    /charges             float64 [F, n]       e
    /outer_potential     float64 [F, n]       kJ/mol/e          buffer data in a field: potential of the
                                                                point charges beyond the buffer at I
    /dipoles             float64 [F, 3]       e*nm
    /mm_positions        float64 [F, m, 3]    nm                MM environment, padded to m
    /mm_charges          float64 [F, m]       e
    /mm_forces           float64 [F, m, 3]    kJ/mol/nm         (when the reference gives them)
    /mm_charge_changes   float64 [F, m]       e                 buffer data: q_B(I u B) - q_B(B)
    /mm_outer_potential  float64 [F, m]       kJ/mol/e          the same potential at the buffer atoms
    /mm_mask             bool [F, m]          "1"               True for real MM atoms
    /mm_species          int64 [F, m]         "1"               atomic numbers of the MM atoms (0: padding)
    /reaction_coordinate float64 [F]          nm                (biased sampling)
    /frame_source        str [F]                                how each frame was made
    /status              int8 [F]             "1"               0 pending, 1 labelled, 2 failed
    /label_error         str [F]                                why a frame failed
    attrs: total_charge (e), multiplicity, provenance (JSON: level of theory, program and
           version, sampling method, temperature, seed, date, description, limits)

All frames share the species of the ML region; the MM environment varies per frame and is
padded with a mask. Frames that are not labelled (status 0 or 2) may hold NaN labels;
labelled frames may not.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Dict, Optional, Sequence

import h5py
import numpy as np

#: Array fields: units and shape ("F" frames, "n" ML atoms, "m" MM atoms).
FIELDS: Dict[str, tuple] = {
    "positions": ("nm", ("F", "n", 3)),
    "energies": ("kJ/mol", ("F",)),
    "forces": ("kJ/mol/nm", ("F", "n", 3)),
    "charges": ("e", ("F", "n")),
    "outer_potential": ("kJ/mol/e", ("F", "n")),
    "dipoles": ("e*nm", ("F", 3)),
    "mm_positions": ("nm", ("F", "m", 3)),
    "mm_charges": ("e", ("F", "m")),
    "mm_forces": ("kJ/mol/nm", ("F", "m", 3)),
    "mm_charge_changes": ("e", ("F", "m")),
    "mm_outer_potential": ("kJ/mol/e", ("F", "m")),
    "mm_mask": ("1", ("F", "m")),
    "mm_species": ("1", ("F", "m")),
    "reaction_coordinate": ("nm", ("F",)),
}
#: Fields that are not float64.
_DTYPES = {"mm_mask": bool, "mm_species": np.int64}
#: Label fields: reference results, NaN allowed only in frames that are not labelled.
LABELS = ("energies", "forces", "charges", "dipoles", "mm_forces", "mm_charge_changes")
#: Per-frame labelling status.
PENDING, LABELLED, FAILED = 0, 1, 2
FORMAT_VERSION = 1


class DatasetError(ValueError):
    """A dataset file or object is inconsistent (names the frame and field)."""


@dataclasses.dataclass
class Dataset:
    """Frames of one ML region (same species in every frame) with optional labels.

    Arrays follow :data:`FIELDS` (OpenMM units). ``provenance`` is a JSON-serialisable dict.
    """

    species: np.ndarray
    positions: np.ndarray
    energies: Optional[np.ndarray] = None
    forces: Optional[np.ndarray] = None
    charges: Optional[np.ndarray] = None
    outer_potential: Optional[np.ndarray] = None
    dipoles: Optional[np.ndarray] = None
    mm_positions: Optional[np.ndarray] = None
    mm_charges: Optional[np.ndarray] = None
    mm_forces: Optional[np.ndarray] = None
    mm_charge_changes: Optional[np.ndarray] = None
    mm_outer_potential: Optional[np.ndarray] = None
    mm_mask: Optional[np.ndarray] = None
    mm_species: Optional[np.ndarray] = None
    reaction_coordinate: Optional[np.ndarray] = None
    frame_source: Optional[np.ndarray] = None
    status: Optional[np.ndarray] = None
    label_error: Optional[np.ndarray] = None
    total_charge: int = 0
    multiplicity: int = 1
    provenance: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        self.species = np.asarray(self.species, dtype=np.int64)
        for name in FIELDS:
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, np.asarray(value, dtype=_DTYPES.get(name, np.float64)))
        for name in ("frame_source", "label_error"):
            if getattr(self, name) is not None:
                setattr(self, name, np.asarray(getattr(self, name), dtype=object))
        if self.status is not None:
            self.status = np.asarray(self.status, dtype=np.int8)
        if self.mm_positions is not None and self.mm_mask is None:
            self.mm_mask = np.ones(self.mm_positions.shape[:2], dtype=bool)
        self.validate()

    @property
    def n_frames(self) -> int:
        return int(self.positions.shape[0])

    @property
    def n_atoms(self) -> int:
        return int(self.species.shape[0])

    @property
    def has_environment(self) -> bool:
        """True for embedding data (frames carry MM point charges)."""
        return self.mm_positions is not None

    def __len__(self) -> int:
        return self.n_frames

    def validate(self) -> None:
        """Check shapes, label finiteness and status; raise :class:`DatasetError` naming frame and field."""
        if self.species.ndim != 1 or self.species.size == 0:
            raise DatasetError(f"species must be a non-empty [n] array of atomic numbers, got shape "
                               f"{self.species.shape}")
        if self.positions.ndim != 3 or self.positions.shape[1:] != (self.n_atoms, 3):
            raise DatasetError(f"positions must be [frames, {self.n_atoms}, 3] nm, got {self.positions.shape}")
        m = None if self.mm_positions is None else self.mm_positions.shape[1]
        sizes = {"F": self.n_frames, "n": self.n_atoms, "m": m}
        for name, (_, shape) in FIELDS.items():
            value = getattr(self, name)
            if value is None:
                continue
            if name.startswith("mm_") and m is None:
                raise DatasetError(f"{name} given without mm_positions")
            expected = tuple(sizes[s] if isinstance(s, str) else s for s in shape)
            if value.shape != expected:
                raise DatasetError(f"field {name!r} has shape {value.shape}, expected {expected} "
                                   f"(F frames, n={self.n_atoms} ML atoms, m={m} MM atoms)")
        for name in ("frame_source", "status", "label_error"):
            value = getattr(self, name)
            if value is not None and value.shape != (self.n_frames,):
                raise DatasetError(f"field {name!r} has shape {value.shape}, expected ({self.n_frames},)")
        bad = np.flatnonzero(~np.isfinite(self.positions).all(axis=(1, 2)))
        if bad.size:
            raise DatasetError(f"frame {bad[0]}: field 'positions' holds NaN or infinity")
        labelled = self.labelled_mask()
        for name in LABELS:
            value = getattr(self, name)
            if value is None:
                continue
            finite = np.isfinite(value).reshape(self.n_frames, int(np.prod(value.shape[1:])))
            if name.startswith("mm_"):  # padding atoms may hold anything
                finite = finite | ~np.repeat(self.mm_mask, finite.shape[1] // self.mm_mask.shape[1], axis=1)
            bad = np.flatnonzero(labelled & ~finite.all(1))
            if bad.size:
                raise DatasetError(f"frame {bad[0]}: field {name!r} holds NaN or infinity "
                                   f"({bad.size} frames in all); mark unlabelled frames in 'status' or drop them")

    def labelled_mask(self) -> np.ndarray:
        """Bool [F]: frames whose labels are complete (all frames when there is no status)."""
        if self.status is None:
            return np.ones(self.n_frames, dtype=bool)
        return self.status == LABELLED

    def subset(self, indices) -> "Dataset":
        """A new dataset with the given frames (index array or bool mask), same provenance."""
        indices = np.asarray(indices)
        indices = np.flatnonzero(indices) if indices.dtype == bool else indices.astype(np.int64)
        changes = {name: getattr(self, name)[indices] for name in self.frame_fields()}
        return dataclasses.replace(self, **changes, provenance=dict(self.provenance))

    def labelled(self) -> "Dataset":
        """The labelled frames only."""
        return self.subset(self.labelled_mask())

    def frame_fields(self) -> list:
        """Names of the per-frame fields this dataset holds."""
        names = list(FIELDS) + ["frame_source", "status", "label_error"]
        return [name for name in names if getattr(self, name) is not None]

    def save(self, path) -> None:
        """Write the dataset to an HDF5 file (overwrites)."""
        with h5py.File(path, "w") as f:
            write_header(f, self)
            for name in self.frame_fields():
                write_field(f, name, getattr(self, name))


def write_header(f: h5py.File, dataset: Dataset) -> None:
    """Species and file attributes (the part of a dataset file that is not per frame)."""
    f.attrs["format"] = "mlmm-dataset"
    f.attrs["format_version"] = FORMAT_VERSION
    f.attrs["total_charge"] = int(dataset.total_charge)
    f.attrs["multiplicity"] = int(dataset.multiplicity)
    f.attrs["provenance"] = json.dumps(dataset.provenance, sort_keys=True)
    f.create_dataset("species", data=dataset.species).attrs["units"] = "1"


def write_field(f: h5py.File, name: str, value: np.ndarray) -> None:
    """Write one per-frame field, resizable along frames and compressed, with its units."""
    if name in ("frame_source", "label_error"):
        data = np.asarray([str(v) for v in value], dtype=h5py.string_dtype())
        f.create_dataset(name, data=data, maxshape=(None,), chunks=True)
        return
    data = value.astype(np.int8) if name == "status" else value
    chunks = (min(max(len(data), 1), 256),) + data.shape[1:]
    ds = f.create_dataset(name, data=data, maxshape=(None,) + data.shape[1:], chunks=chunks,
                          compression="gzip", compression_opts=4, shuffle=True)
    ds.attrs["units"] = "1" if name == "status" else FIELDS[name][0]


def load_dataset(path) -> Dataset:
    """Read and validate a dataset file; errors name the file, frame and field."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dataset file {path} does not exist")
    with h5py.File(path, "r", locking=False) as f:  # readable while a labelling run appends to it
        try:
            return _read(f)
        except DatasetError as error:
            raise DatasetError(f"{path}: {error}") from None


def _read(f: h5py.File) -> Dataset:
    if f.attrs.get("format") != "mlmm-dataset":
        raise DatasetError("not an mlmm dataset (no format='mlmm-dataset' attribute)")
    arrays = {}
    for name in ["species", *FIELDS, "status"]:
        if name in f:
            units = f[name].attrs.get("units")
            expected = "1" if name in ("species", "status") else FIELDS[name][0]
            if units is None:
                raise DatasetError(f"field {name!r} has no 'units' attribute (expected {expected!r})")
            if units != expected:
                raise DatasetError(f"field {name!r} is in {units!r}, expected {expected!r}; "
                                   "convert it when writing the file")
            arrays[name] = f[name][()]
    for name in ("frame_source", "label_error"):
        if name in f:
            arrays[name] = np.asarray(f[name].asstr()[()], dtype=object)
    if "positions" not in arrays or "species" not in arrays:
        raise DatasetError("a dataset needs 'species' and 'positions'")
    return Dataset(**arrays, total_charge=int(f.attrs.get("total_charge", 0)),
                   multiplicity=int(f.attrs.get("multiplicity", 1)),
                   provenance=json.loads(f.attrs.get("provenance", "{}")))


#: Per-frame fields that may be absent from some of the datasets joined by :func:`concatenate`:
#: optional labels and outer potentials are then dropped; bookkeeping fields get these defaults.
_DROPPABLE_FIELDS = ("charges", "dipoles", "mm_forces", "mm_charge_changes", "reaction_coordinate", "outer_potential",
                     "mm_outer_potential")
_DEFAULTS = {"frame_source": "unknown", "status": LABELLED, "label_error": ""}


def concatenate(datasets: Sequence[Dataset]) -> Dataset:
    """Join datasets of the same ML region (species, charge, multiplicity); MM environments are re-padded.

    Optional labels (charges, dipoles, MM forces, reaction coordinate) and outer potentials that only
    some datasets have are dropped (named in the provenance under ``dropped_fields``); frames without a
    source or status get "unknown" and "labelled". Other fields must be in all or none.
    """
    if not datasets:
        raise ValueError("concatenate needs at least one dataset")
    first = datasets[0]
    for i, other in enumerate(datasets[1:], start=1):
        if not np.array_equal(other.species, first.species) or other.total_charge != first.total_charge \
                or other.multiplicity != first.multiplicity:
            raise ValueError(f"dataset {i} describes a different ML region (species, total charge or "
                             "multiplicity) than dataset 0")
    fields, dropped = {}, []
    for name in list(FIELDS) + ["frame_source", "status", "label_error"]:
        present = [getattr(d, name) is not None for d in datasets]
        if not any(present):
            continue
        if not all(present) and name in _DROPPABLE_FIELDS:
            dropped.append(name)
            continue
        if not all(present) and name not in _DEFAULTS:
            raise ValueError(f"field {name!r} is present in some datasets and missing in others")
        parts = [getattr(d, name) if getattr(d, name) is not None else np.full(d.n_frames, _DEFAULTS[name])
                 for d in datasets]
        if name.startswith("mm_"):
            width = max(p.shape[1] for p in parts)
            fill = False if name == "mm_mask" else 0
            parts = [np.pad(p, [(0, 0), (0, width - p.shape[1])] + [(0, 0)] * (p.ndim - 2),
                            constant_values=fill) for p in parts]
        fields[name] = np.concatenate(parts)
    provenance = dict(first.provenance, dropped_fields=dropped) if dropped else dict(first.provenance)
    return Dataset(species=first.species, **fields, total_charge=first.total_charge,
                   multiplicity=first.multiplicity, provenance=provenance)
