"""Recipes that combine the samplers into unlabelled datasets of a gas-phase molecule."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from mlmm.data.dataset import Dataset, concatenate, load_dataset
from mlmm.data.sampling import (ForceFn, hessian, langevin_md, normal_mode_sampling, normal_modes, optimize,
                                remove_near_duplicates)


def molecule_from_pdb(path, selection: Optional[str] = None):
    """Atomic numbers [n], masses [n] (amu) and positions [n, 3] (nm) of (a selection of) a PDB file."""
    import mdtraj

    trajectory = mdtraj.load_pdb(str(path))
    atoms = trajectory.topology.select(selection) if selection else np.arange(trajectory.n_atoms)
    species = np.array([trajectory.topology.atom(i).element.atomic_number for i in atoms])
    masses = np.array([trajectory.topology.atom(i).element.mass for i in atoms])
    return species, masses, trajectory.xyz[0, atoms].astype(np.float64)


def frames(species, positions: np.ndarray, source: str, provenance: dict,
           coordinate=None, total_charge: int = 0, multiplicity: int = 1) -> Dataset:
    """An unlabelled dataset of ``positions`` [F, n, 3], tagged with ``source`` and, if given,
    the reaction coordinate ``coordinate(positions) -> (value, gradient)`` of every frame."""
    values = None if coordinate is None else np.array([coordinate(x)[0] for x in positions])
    return Dataset(species=species, positions=positions, frame_source=[source] * len(positions),
                   reaction_coordinate=values, total_charge=total_charge, multiplicity=multiplicity,
                   provenance=dict(provenance))


def gas_phase_frames(species, masses, positions, force_fn: ForceFn, nms_temperatures: Sequence[float],
                     nms_samples: int, md_temperature: float, md_steps: int, md_save_every: int, seed: int,
                     coordinate=None, method: str = "") -> Dataset:
    """Normal-mode samples at each of ``nms_temperatures`` plus Langevin MD frames at ``md_temperature``.

    The molecule is optimised first with ``force_fn`` (which also drives the MD); ``method``
    names it in the provenance.
    """
    minimum = optimize(positions, force_fn, fmax=0.5)
    wavenumbers, force_constants, modes = normal_modes(hessian(minimum, force_fn), masses, minimum)
    provenance = {"sampling": "normal modes (Smith et al.) and Langevin MD", "sampling_method": method,
                  "harmonic_wavenumbers_cm-1": [round(float(w), 1) for w in wavenumbers], "seed": seed,
                  "created": datetime.date.today().isoformat()}
    parts = []
    for k, temperature in enumerate(nms_temperatures):
        sampled = normal_mode_sampling(minimum, modes, force_constants, temperature, nms_samples, seed + k)
        parts.append(frames(species, sampled, f"normal-modes-{temperature:g}K", provenance, coordinate))
    trajectory = langevin_md(minimum, masses, force_fn, md_temperature, md_steps, save_every=md_save_every,
                             seed=seed + 100)
    parts.append(frames(species, trajectory["positions"], f"md-{md_temperature:g}K", provenance, coordinate))
    data = concatenate(parts)
    data.provenance.update(nms_temperatures_K=list(nms_temperatures), md_temperature_K=md_temperature)
    return data


def deduplicated(data: Dataset, threshold: float = 1e-4) -> Dataset:
    """``data`` without near-duplicate frames (RMS distance difference below ``threshold`` nm)."""
    kept = remove_near_duplicates(data.positions, threshold)
    result = data.subset(kept)
    result.provenance["near_duplicates_removed"] = int(data.n_frames - len(kept))
    return result


def label_in_and_out_of_environment(frames: Dataset, calculator, embedded_path, vacuum_path,
                                    n_workers: int = 2) -> tuple[Dataset, Dataset]:
    """Label QM/MM frames with their MM point charges and, for the same geometries, in vacuum.

    E_int = E(embedded) - E(vacuum) per frame is what an electrostatic embedding model learns
    (``[data] delta_from`` in its training configuration). Both labellings resume when rerun.
    Returns the two labelled datasets.
    """
    from mlmm.data.labelling import label

    embedded = label(frames, embedded_path, calculator, n_workers=n_workers)
    vacuum = Dataset(species=frames.species, positions=frames.positions, frame_source=frames.frame_source,
                     total_charge=frames.total_charge, multiplicity=frames.multiplicity,
                     provenance=dict(frames.provenance, description="the geometries of "
                                     f"{Path(embedded_path).name} without the MM charges"))
    vacuum = label(vacuum, vacuum_path, calculator, n_workers=n_workers)
    interaction = embedded.energies - vacuum.energies
    print(f"{embedded.labelled().n_frames} frames; MM atoms per frame {frames.mm_mask.sum(1).min()}-"
          f"{frames.mm_mask.sum(1).max()}; E_int = {np.nanmean(interaction):.1f} +- {np.nanstd(interaction):.1f} "
          f"kJ/mol (range {np.nanmin(interaction):.1f} to {np.nanmax(interaction):.1f})")
    return embedded, vacuum


def label_snapshot_set(make_frames: Callable[[], Dataset], calculator, folder, name: str,
                       kind: str = "held-out") -> tuple[Dataset, Dataset]:
    """Label a further set of QM/MM frames in and out of their environment (:func:`label_in_and_out_of_environment`)
    into ``folder/NAME-KIND-gfn2.h5`` and ``NAME-KIND-gfn2-vacuum.h5``: ``kind`` "held-out" for test errors on
    frames no training run has seen, or e.g. "extra" for more training frames. The unlabelled frames,
    ``make_frames()`` (e.g. the snapshots of a further MM MD run), are kept in ``NAME-KIND-snapshots.h5`` and
    made only once, so that an interrupted labelling resumes on them."""
    folder = Path(folder)
    path = folder / f"{name}-{kind}-snapshots.h5"
    if not path.exists():
        make_frames().save(path)
    return label_in_and_out_of_environment(load_dataset(path), calculator, folder / f"{name}-{kind}-gfn2.h5",
                                           folder / f"{name}-{kind}-gfn2-vacuum.h5")
