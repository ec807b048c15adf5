"""GFN2-xTB reference data for the buffer embedding of one water in TIP3P: E(I u B) - E(B).

Frames: the 500 solvent snapshots of ../embedding/data/water-tip3p-gfn2.h5 (MM MD of
water-tip3p.pdb at 300 K, see its DATASET.md). The buffer B of a snapshot is every TIP3P water
whose oxygen lies within BUFFER_CUTOFF of a solute atom, i.e. every water the buffer embedding
gives a non-zero weight (switch from BUFFER_SWITCH_DISTANCE to BUFFER_CUTOFF); at run time the
waters in the switching shell fade out smoothly, here they are in with full weight. Labels:
GFN2-xTB of the solute with its buffer minus the buffer alone, both in vacuum
(mlmm.data.calculators.BufferDifference): energy, forces on the solute and on the buffer atoms.
Joined with the gas-phase twin of every fourth snapshot as frames with an empty buffer, so the
network also knows the lone molecule. Writes data/water-buffer-gfn2.h5; run from the repository
root (resumes an interrupted labelling):
    .venv/bin/python systems/water/buffer/make_dataset.py
"""

from pathlib import Path

import numpy as np

from mlmm.data.calculators import BufferDifference
from mlmm.data.dataset import Dataset, concatenate, load_dataset
from mlmm.data.labelling import label

HERE = Path(__file__).parent
SNAPSHOTS = HERE.parent / "embedding" / "data"
BUFFER_SWITCH_DISTANCE, BUFFER_CUTOFF = 0.35, 0.5  # nm, oxygen to the nearest solute atom
TIP3P_CHARGES = np.array([-0.834, 0.417, 0.417])  # e: O, H, H
TIP3P_SPECIES = np.array([8, 1, 1])


def buffers(snapshots: Dataset) -> Dataset:
    """The snapshots with their MM environment cut down to the buffer waters (full TIP3P charges)."""
    kept = []
    for k in range(snapshots.n_frames):
        waters = snapshots.mm_positions[k][snapshots.mm_mask[k]].reshape(-1, 3, 3)  # TIP3P order O, H, H
        nearest = np.linalg.norm(waters[:, None, 0] - snapshots.positions[k][None], axis=-1).min(1)
        order = np.argsort(nearest)
        kept.append(waters[order[nearest[order] < BUFFER_CUTOFF]].reshape(-1, 3))
    m = max(len(x) for x in kept)
    positions, mask = np.zeros((snapshots.n_frames, m, 3)), np.zeros((snapshots.n_frames, m), dtype=bool)
    for k, x in enumerate(kept):
        positions[k, :len(x)], mask[k, :len(x)] = x, True
    waters_per_frame = mask.sum(1) // 3
    provenance = {"description": "one water with its buffer of TIP3P waters (oxygen within "
                                 f"{BUFFER_CUTOFF} nm of a solute atom) from the solvent snapshots of "
                                 "water-tip3p-gfn2.h5; E(solute + buffer) - E(buffer) in vacuum",
                  "sampling": snapshots.provenance.get("sampling", ""), "temperature_K": 300.0,
                  "buffer_cutoff_nm": BUFFER_CUTOFF, "buffer_switch_distance_nm": BUFFER_SWITCH_DISTANCE,
                  "limits": f"{waters_per_frame.min()}-{waters_per_frame.max()} buffer waters per frame, TIP3P "
                            "geometries; vacuum (no charges beyond the buffer)"}
    return Dataset(species=snapshots.species, positions=snapshots.positions, mm_positions=positions,
                   mm_charges=np.tile(TIP3P_CHARGES, m // 3) * mask, mm_species=np.tile(TIP3P_SPECIES, m // 3) * mask,
                   mm_mask=mask, frame_source=["buffer-300K"] * snapshots.n_frames, provenance=provenance)


def lone_molecules(vacuum: Dataset, width: int) -> Dataset:
    """Gas-phase frames as buffer frames with an empty buffer (padding only)."""
    f = vacuum.n_frames
    return Dataset(species=vacuum.species, positions=vacuum.positions, energies=vacuum.energies,
                   forces=vacuum.forces, charges=vacuum.charges, dipoles=vacuum.dipoles,
                   mm_positions=np.zeros((f, width, 3)), mm_charges=np.zeros((f, width)),
                   mm_species=np.zeros((f, width), dtype=np.int64), mm_mask=np.zeros((f, width), dtype=bool),
                   mm_forces=np.zeros((f, width, 3)), frame_source=["no-buffer-300K"] * f, status=vacuum.status,
                   provenance=vacuum.provenance)


def main():
    snapshots = load_dataset(SNAPSHOTS / "water-tip3p-gfn2.h5")
    labelled = label(buffers(snapshots), HERE / "data" / "water-buffer-only.h5",
                     BufferDifference({"program": "xtb"}), n_workers=2)
    vacuum = load_dataset(SNAPSHOTS / "water-tip3p-gfn2-vacuum.h5").subset(np.arange(0, snapshots.n_frames, 4))
    joined = concatenate([labelled, lone_molecules(vacuum, labelled.mm_positions.shape[1])])
    joined.save(HERE / "data" / "water-buffer-gfn2.h5")
    difference = labelled.energies - load_dataset(SNAPSHOTS / "water-tip3p-gfn2-vacuum.h5").energies
    print(f"{labelled.n_frames} buffer frames ({labelled.mm_mask.sum(1).min() // 3}-"
          f"{labelled.mm_mask.sum(1).max() // 3} waters) + {vacuum.n_frames} lone-molecule frames; "
          f"E(I+B) - E(B) - E(I) = {difference.mean():.1f} +- {difference.std():.1f} kJ/mol")


if __name__ == "__main__":
    main()
