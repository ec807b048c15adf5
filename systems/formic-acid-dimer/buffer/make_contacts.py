"""Contact frames for the vacuum-anchored buffer network: buffer waters pushed closer to the dimer.

In NVE with `model-anchored-stage2/` a water hydrogen collapsed onto a formyl hydrogen of the dimer
(0.22 to 0.10 nm within 0.13 ps, then NaN coordinates): the scheme replaces the force field's
Lennard-Jones term between the dimer and its buffer by the network, and the training snapshots,
from MM MD, never bring a water closer than the force field lets it come, so the network has no
repulsive wall beyond them. Here, for every snapshot of the training share of `train-anchored.toml`
(its split; validation and test snapshots are not touched), one of the three waters with the
closest contacts to the dimer is moved rigidly along the line of its closest contact until that
contact is a fraction s (uniform in [S_MIN, S_MAX]) of its length. The frames are labelled as the
in-field data of the third stage (GFN2-xTB of the dimer with its buffer minus the buffer, in the
field of the other waters, less the Coulomb energy of the dimer's charges with them) and written
to data/dimer-buffer-field-contacts-gfn2.h5. The dimer itself is not moved, so its vacuum labels are
those of ../embedding/data/dimer-tip3p-gfn2-vacuum.h5 (`delta_from` for anchored training). With
--share test the same is done for the test snapshots (data/dimer-buffer-field-contacts-test-gfn2.h5),
held-out contacts on which --evaluate MODEL ... gives the errors of anchored networks (labels less
the dimer's vacuum energy; written to MODEL/contacts.json). Run from the repository root (resumes an
interrupted labelling; 2 min on one core):
    .venv/bin/python systems/formic-acid-dimer/buffer/make_contacts.py [--share test]
    .venv/bin/python systems/formic-acid-dimer/buffer/make_contacts.py --evaluate model-anchored-stage2
"""

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from mlmm.data.calculators import BufferDifference
from mlmm.data.dataset import load_dataset
from mlmm.data.labelling import label
from mlmm.data.snapshots import buffer_clusters, without_outer_charges
from mlmm.potentials import read_metadata
from mlmm.training.config import load_training_config
from mlmm.training.delta import geometry_key, subtract_low_level
from mlmm.training.metrics import errors, predict_frames
from mlmm.training.models import rebuild
from mlmm.training.trainer import load_training_data

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from make_dataset import BUFFER_CUTOFF, SNAPSHOTS, TIP3P_CHARGES, TIP3P_SPECIES  # noqa: E402

S_MIN, S_MAX = 0.6, 0.95  # the closest contact shrinks to this fraction of its length
CANDIDATES = 3  # the moved water is one of the waters with the closest contacts
SEED = 11


def split_snapshots(snapshots, share: str) -> np.ndarray:
    """Indices of the snapshots whose buffer frame is in the share ("train" or "test") of
    train-anchored.toml's split."""
    config = load_training_config(HERE / "train-anchored.toml")
    data, _ = load_training_data(config)
    frames = data.subset(json.loads((HERE / "model-anchored" / "split.json").read_text())[share])
    keys = {geometry_key(x) for x, source in zip(frames.positions, frames.frame_source) if source == "buffer-300K"}
    return np.array([k for k, x in enumerate(snapshots.positions) if geometry_key(x) in keys])


def pushed_in(dimer: np.ndarray, waters: np.ndarray, rng: np.random.Generator) -> tuple:
    """The waters (molecules x 3 atoms x 3, nm) with one of the CANDIDATES closest to the dimer moved
    along its closest contact to a fraction s of that contact's length; returns them and the moved
    water's closest contact before and after (nm; after the move another pair may be the closest)."""
    delta = waters[:, :, None, :] - dimer[None, None]  # water atom minus dimer atom
    distance = np.linalg.norm(delta, axis=-1)
    closest = distance.reshape(len(waters), -1).min(1)
    moved = rng.choice(np.argsort(closest)[:CANDIDATES])
    atom, partner = np.unravel_index(distance[moved].argmin(), distance[moved].shape)
    length = distance[moved, atom, partner]
    target = rng.uniform(S_MIN, S_MAX) * length
    shift = -(length - target) * delta[moved, atom, partner] / length
    result = waters.copy()
    result[moved] += shift
    return result, length, float(np.linalg.norm(result[moved][:, None] - dimer[None], axis=-1).min())


def contacts_file(share: str) -> Path:
    """The labelled contact frames of a share of the snapshots."""
    return HERE / "data" / ("dimer-buffer-field-contacts" + ("-test" if share == "test" else "") + "-gfn2.h5")


def anchored_contacts(share: str):
    """The labelled contact frames of a share less GFN2-xTB's vacuum energy and forces of the dimer."""
    return subtract_low_level(load_dataset(contacts_file(share)).labelled(),
                              load_dataset(SNAPSHOTS / "dimer-tip3p-gfn2-vacuum.h5"))


def make(share: str, n_frames: int):
    snapshots = load_dataset(SNAPSHOTS / "dimer-tip3p-gfn2.h5")
    chosen = split_snapshots(snapshots, share)[:n_frames]
    rng = np.random.default_rng(SEED + (share == "test"))
    mm_positions = snapshots.mm_positions.copy()
    before, after = [], []
    for k in chosen:
        real = snapshots.mm_mask[k]
        waters = mm_positions[k][real].reshape(-1, 3, 3)
        waters, length, shortest = pushed_in(snapshots.positions[k], waters, rng)
        mm_positions[k][real] = waters.reshape(-1, 3)
        before.append(length)
        after.append(shortest)
    frames = dataclasses.replace(snapshots, mm_positions=mm_positions).subset(chosen)
    clusters = buffer_clusters(frames, BUFFER_CUTOFF, TIP3P_SPECIES, TIP3P_CHARGES, "buffer-contact-300K", {},
                               outer_charges=True)
    clusters.provenance = {
        "description": f"formic acid dimer with its buffer of TIP3P waters from the {share}-share snapshots of "
                       "dimer-tip3p-gfn2.h5, one of the three waters closest to the dimer moved rigidly along its "
                       f"closest contact to {S_MIN}-{S_MAX} of its length; E(dimer + buffer) - E(buffer) in the "
                       "field of the other waters (switched TIP3P charges) less the Coulomb energy of the dimer's "
                       "charges with them", "sampling": "make_contacts.py", "temperature_K": 300.0,
        "buffer_cutoff_nm": BUFFER_CUTOFF, "limits": "contacts shorter than the force field's MD visits"}
    only = contacts_file(share).with_name(contacts_file(share).name.replace("-gfn2.h5", "-only.h5"))
    labelled = without_outer_charges(label(clusters, only, BufferDifference({"program": "xtb"}, "ml-charges"),
                                           n_workers=1))
    labelled.save(contacts_file(share))
    binding = anchored_contacts(share).energies
    print(f"{labelled.n_frames} contact frames ({share} share); closest contact {np.mean(before):.3f} -> "
          f"{np.mean(after):.3f} nm (shortest {np.min(after):.3f}); E(I+B) - E(B) - E(I) = "
          f"{binding.mean():.1f} +- {binding.std():.1f} kJ/mol (max {binding.max():.1f})")


def evaluate(model: str):
    """Errors of the buffer network in HERE/model on the held-out contact frames: E(I u B) - E(B) labels
    less the dimer's vacuum energy for a vacuum-anchored network, which learned that difference."""
    network = rebuild(HERE / model / "model.pt").double()
    anchored = read_metadata(HERE / model / "model.pt")["extra"].get("vacuum_model") is not None
    data = anchored_contacts("test") if anchored else load_dataset(contacts_file("test")).labelled()
    predicted = predict_frames(network, data)
    result = {**errors(network, data, predicted=predicted),
              "energy_mean_error": float(np.mean(predicted["energy"] - data.energies))}
    (HERE / model / "contacts.json").write_text(json.dumps(result, indent=1) + "\n")
    print(model, json.dumps(result))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--share", choices=["train", "test"], default="train",
                        help="snapshots of this share of train-anchored.toml's split (default: train)")
    parser.add_argument("--frames", type=int, default=10 ** 6, help="at most this many frames (default: all)")
    parser.add_argument("--evaluate", nargs="+", metavar="MODEL", help="model directories to evaluate instead")
    arguments = parser.parse_args()
    if arguments.evaluate:
        for directory in arguments.evaluate:
            evaluate(directory)
    else:
        make(arguments.share, arguments.frames)
