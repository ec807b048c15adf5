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

With --in-field both clusters are computed in the field of the snapshot's other waters (their
embedding-switched TIP3P charges, as in ../embedding/), less the Coulomb energy of the solute's
charges with them, which the scheme adds itself (BufferDifference with outer point charges);
writes data/water-buffer-field-gfn2.h5.

With --more N (after --in-field) N further snapshots from a new MM MD run of the same recipe (seed
MORE_SEED), labelled in the field as above without lone-molecule frames: more training data
(`training_only` in train-field-more.toml), so the test snapshots stay those of the first 500;
writes data/water-buffer-field-more-gfn2.h5 (about 25 min of MD and 3 min of labelling on 2 cores).

With --charge-difference (and --in-field or --more N) the labels leave the scheme the Coulomb energy
of the charge that the solute moves within the cluster, q(I u B) - q(B) on every atom, with the
outer charges (BufferDifference's "charge-difference" coupling), and carry the buffer atoms' charge
changes; writes data/water-buffer-field-dq-gfn2.h5 and data/water-buffer-field-dq-more-gfn2.h5.
"""

import argparse
import importlib.util
from pathlib import Path

import numpy as np

from mlmm.data.calculators import BufferDifference
from mlmm.data.dataset import concatenate, load_dataset
from mlmm.data.labelling import label
from mlmm.data.snapshots import buffer_clusters, empty_buffer_frames, without_outer_charges

HERE = Path(__file__).parent
SNAPSHOTS = HERE.parent / "embedding" / "data"
BUFFER_SWITCH_DISTANCE, BUFFER_CUTOFF = 0.35, 0.5  # nm, oxygen to the nearest solute atom
TIP3P_CHARGES = np.array([-0.834, 0.417, 0.417])  # e: O, H, H
TIP3P_SPECIES = np.array([8, 1, 1])
MORE_SEED = 4  # MM MD of the --more snapshots (the first 500: seed 3)


def embedding_recipe():
    """../embedding/make_dataset.py as a module (its MM MD and snapshot recipe)."""
    spec = importlib.util.spec_from_file_location("embedding_recipe", HERE.parent / "embedding" / "make_dataset.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def labelled_clusters(snapshots, name: str, in_field: bool, origin: str = "water-tip3p-gfn2.h5",
                      coupling: str = "ml-charges"):
    """The buffer clusters of ``snapshots`` (from ``origin``) labelled by BufferDifference (outer charges removed)."""
    coupled = "solute's charges" if coupling == "ml-charges" else "cluster's charge changes q(I u B) - q(B)"
    reference = (f"in the field of the other waters (switched TIP3P charges) less the Coulomb energy of the {coupled} "
                 "with them") if in_field else "in vacuum"
    outside = "point charges beyond the buffer" if in_field else "vacuum (no charges beyond the buffer)"
    provenance = {"description": "one water with its buffer of TIP3P waters (oxygen within "
                                 f"{BUFFER_CUTOFF} nm of a solute atom) from the solvent snapshots of "
                                 f"{origin}; E(solute + buffer) - E(buffer) {reference}",
                  "sampling": snapshots.provenance.get("sampling", ""), "temperature_K": 300.0,
                  "buffer_cutoff_nm": BUFFER_CUTOFF, "buffer_switch_distance_nm": BUFFER_SWITCH_DISTANCE,
                  "limits": f"15-27 buffer waters per frame, TIP3P geometries; {outside}"}
    clusters = buffer_clusters(snapshots, BUFFER_CUTOFF, TIP3P_SPECIES, TIP3P_CHARGES, "buffer-300K", provenance,
                               outer_charges=in_field)
    return without_outer_charges(label(clusters, HERE / "data" / f"{name}-only.h5",
                                       BufferDifference({"program": "xtb"}, coupling), n_workers=2))


def main(in_field: bool, coupling: str):
    name = ("water-buffer-field" if in_field else "water-buffer") + ("-dq" if coupling == "charge-difference" else "")
    snapshots = load_dataset(SNAPSHOTS / "water-tip3p-gfn2.h5")
    labelled = labelled_clusters(snapshots, name, in_field, coupling=coupling)
    vacuum = load_dataset(SNAPSHOTS / "water-tip3p-gfn2-vacuum.h5").subset(np.arange(0, snapshots.n_frames, 4))
    joined = concatenate([labelled, empty_buffer_frames(vacuum, labelled.mm_positions.shape[1], "no-buffer-300K",
                                                        charge_changes=coupling == "charge-difference",
                                                        outer_potentials=in_field)])
    joined.save(HERE / "data" / f"{name}-gfn2.h5")
    difference = labelled.energies - load_dataset(SNAPSHOTS / "water-tip3p-gfn2-vacuum.h5").energies
    print(f"{labelled.n_frames} buffer frames ({labelled.mm_mask.sum(1).min() // 3}-"
          f"{labelled.mm_mask.sum(1).max() // 3} waters) + {vacuum.n_frames} lone-molecule frames; "
          f"E(I+B) - E(B) - E(I) = {difference.mean():.1f} +- {difference.std():.1f} kJ/mol")


def more(n_snapshots: int, coupling: str):
    """``n_snapshots`` in-field buffer frames from a new MM MD run (training data only); its unlabelled
    snapshots are kept in data/water-more-snapshots.h5, so that an interrupted labelling resumes."""
    path = HERE / "data" / "water-more-snapshots.h5"
    if not path.exists():
        embedding_recipe().snapshot_frames(MORE_SEED, n_snapshots).save(path)
    snapshots = load_dataset(path)
    if snapshots.n_frames != n_snapshots:
        raise ValueError(f"{path} holds {snapshots.n_frames} snapshots, not {n_snapshots}: delete it to start over")
    name = "water-buffer-field-dq-more" if coupling == "charge-difference" else "water-buffer-field-more"
    labelled = labelled_clusters(snapshots, name, in_field=True,
                                 origin=f"a second MM MD run of the same recipe (seed {MORE_SEED})", coupling=coupling)
    labelled.save(HERE / "data" / f"{name}-gfn2.h5")
    print(f"{labelled.n_frames} more buffer frames ({labelled.mm_mask.sum(1).min() // 3}-"
          f"{labelled.mm_mask.sum(1).max() // 3} waters), E(I+B) - E(B) = {labelled.energies.mean():.1f} +- "
          f"{labelled.energies.std():.1f} kJ/mol")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--in-field", action="store_true", help="clusters in the field of the outer waters")
    parser.add_argument("--more", type=int, metavar="N", help="N more in-field frames from a new MD run")
    parser.add_argument("--charge-difference", action="store_true",
                        help="labels for the charge-difference outer coupling (with --in-field or --more)")
    arguments = parser.parse_args()
    coupling = "charge-difference" if arguments.charge_difference else "ml-charges"
    if coupling == "charge-difference" and not (arguments.in_field or arguments.more):
        parser.error("--charge-difference needs --in-field or --more: in vacuum there is no outer coupling")
    if arguments.more:
        more(arguments.more, coupling)
    else:
        main(arguments.in_field, coupling)
