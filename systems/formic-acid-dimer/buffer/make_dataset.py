"""GFN2-xTB reference data for the buffer embedding of the formic acid dimer in TIP3P: E(I u B) - E(B).

Frames: the 600 solvent snapshots of ../embedding/data/dimer-tip3p-gfn2.h5 (gas-phase dataset
geometries of the dimer, including the double proton transfer, superimposed on TIP3P snapshots;
see ../embedding/DATASET.md). The buffer B of a snapshot is every TIP3P water whose oxygen lies
within BUFFER_CUTOFF of a dimer atom, i.e. every water the buffer embedding gives a non-zero
weight (switch from BUFFER_SWITCH_DISTANCE to BUFFER_CUTOFF), at full weight. Labels: GFN2-xTB of
the dimer with its buffer minus the buffer alone, both in vacuum
(mlmm.data.calculators.BufferDifference): energy, forces on the dimer and on the buffer atoms.
Joined with the gas-phase twin of every fourth snapshot as frames with an empty buffer, so the
network also knows the lone dimer. Writes data/dimer-buffer-gfn2.h5; run from the repository
root (resumes an interrupted labelling):
    .venv/bin/python systems/formic-acid-dimer/buffer/make_dataset.py

With --in-field both clusters are computed in the field of the snapshot's other waters (their
embedding-switched TIP3P charges, as in ../embedding/), less the Coulomb energy of the dimer's
charges with them, which the scheme adds itself (BufferDifference with outer point charges);
writes data/dimer-buffer-field-gfn2.h5. With --in-field --charge-difference the labels leave the
scheme the Coulomb energy of the charge the dimer moves within the cluster, q(I u B) - q(B) on every
atom, with the outer charges (BufferDifference's "charge-difference" coupling), and carry the buffer
atoms' charge changes; writes data/dimer-buffer-field-dq-gfn2.h5. With --extra the same is done for the
extra training snapshots (../embedding/make_dataset.py --extra) instead of the 600, "-extra" added to the
file names (e.g. data/dimer-buffer-field-extra-gfn2.h5).
"""

import argparse
from pathlib import Path

import numpy as np

from mlmm.data.calculators import BufferDifference
from mlmm.data.dataset import concatenate, load_dataset
from mlmm.data.labelling import label
from mlmm.data.snapshots import buffer_clusters, empty_buffer_frames, without_outer_charges

HERE = Path(__file__).parent
SNAPSHOTS = HERE.parent / "embedding" / "data"
BUFFER_SWITCH_DISTANCE, BUFFER_CUTOFF = 0.35, 0.45  # nm, oxygen to the nearest dimer atom
TIP3P_SPECIES, TIP3P_CHARGES = [8, 1, 1], [-0.834, 0.417, 0.417]


def main(in_field: bool, coupling: str, extra: bool):
    snapshot_set = "extra" if extra else "tip3p"
    snapshots = load_dataset(SNAPSHOTS / f"dimer-{snapshot_set}-gfn2.h5")
    name = (("dimer-buffer-field" if in_field else "dimer-buffer") + ("-dq" if coupling == "charge-difference" else "")
            + ("-extra" if extra else ""))
    clusters = buffer_clusters(snapshots, BUFFER_CUTOFF, TIP3P_SPECIES, TIP3P_CHARGES, "buffer-300K", {},
                               outer_charges=in_field)
    waters = (clusters.mm_species > 0).sum(1) // 3
    coupled = "dimer's charges" if coupling == "ml-charges" else "cluster's charge changes q(I u B) - q(B)"
    reference = (f"in the field of the other waters (switched TIP3P charges) less the Coulomb energy of the {coupled} "
                 "with them") if in_field else "in vacuum"
    clusters.provenance = {
        "description": f"formic acid dimer with its buffer of TIP3P waters (oxygen within {BUFFER_CUTOFF} nm of a "
                       "dimer atom) from the solvent snapshots of dimer-tip3p-gfn2.h5; E(dimer + buffer) - "
                       f"E(buffer) {reference}", "sampling": snapshots.provenance.get("sampling", ""),
        "temperature_K": 300.0, "buffer_cutoff_nm": BUFFER_CUTOFF, "buffer_switch_distance_nm": BUFFER_SWITCH_DISTANCE,
        "limits": f"{waters.min()}-{waters.max()} buffer waters per frame, TIP3P geometries; "
                  + ("point charges beyond the buffer" if in_field else "vacuum")}
    labelled = without_outer_charges(label(clusters, HERE / "data" / f"{name}-only.h5",
                                           BufferDifference({"program": "xtb"}, coupling), n_workers=1))
    vacuum = load_dataset(SNAPSHOTS / f"dimer-{snapshot_set}-gfn2-vacuum.h5")
    lone = empty_buffer_frames(vacuum.subset(np.arange(0, snapshots.n_frames, 4)), labelled.mm_positions.shape[1],
                               "no-buffer-300K", charge_changes=coupling == "charge-difference",
                               outer_potentials=in_field)
    concatenate([labelled, lone]).save(HERE / "data" / f"{name}-gfn2.h5")
    binding = labelled.energies - vacuum.energies
    print(f"{labelled.n_frames} buffer frames ({waters.min()}-{waters.max()} waters) + {lone.n_frames} lone-dimer "
          f"frames; E(I+B) - E(B) - E(I) = {binding.mean():.1f} +- {binding.std():.1f} kJ/mol")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--in-field", action="store_true", help="clusters in the field of the outer waters")
    parser.add_argument("--charge-difference", action="store_true",
                        help="labels for the charge-difference outer coupling (with --in-field)")
    parser.add_argument("--extra", action="store_true",
                        help="the extra training snapshots of ../embedding/make_dataset.py --extra")
    arguments = parser.parse_args()
    if arguments.charge_difference and not arguments.in_field:
        parser.error("--charge-difference needs --in-field: in vacuum there is no outer coupling")
    main(arguments.in_field, "charge-difference" if arguments.charge_difference else "ml-charges", arguments.extra)
