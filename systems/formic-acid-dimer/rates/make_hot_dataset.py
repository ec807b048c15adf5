"""GFN2-xTB frames where the dimer network failed at 500-700 K (active learning, one round by hand).

Reads the replicas of `mlmm ensemble ensemble.toml` (runs/, made with the network ../model/model.pt), takes
the last LAST_FRAMES frames before each replica blew up (the approach to the network's spurious minima:
a hydroxyl hydrogen near a carbon) and every EVERY-th frame before those (what the dimer visits at
500-700 K), labels them with GFN2-xTB (neutral singlet, gas phase) and keeps the frames within
MAX_ABOVE_MINIMUM kJ/mol of the training data's lowest energy (beyond that lies bond breaking, which the
dynamics never needs to describe well, only to avoid). Writes data/dimer-gfn2-hot.h5.

    .venv/bin/python systems/formic-acid-dimer/rates/make_hot_dataset.py
"""

from __future__ import annotations

import json
from pathlib import Path

import mdtraj
import numpy as np

from mlmm.data.calculators import XTBCalculator
from mlmm.data.dataset import Dataset, load_dataset
from mlmm.data.labelling import label

HERE = Path(__file__).resolve().parent
LAST_FRAMES = 40
EVERY = 20
MAX_ABOVE_MINIMUM = 600.0  # kJ/mol


def replica_frames(directory: Path) -> tuple[np.ndarray, list[str]]:
    """Positions (nm) of the chosen frames of one replica and their sources."""
    trajectory = mdtraj.load(str(directory / "trajectory.dcd"), top=str(directory / "topology.pdb"))
    frames = len(trajectory)
    chosen = sorted(set(range(0, max(frames - LAST_FRAMES, 0), EVERY)) | set(range(max(frames - LAST_FRAMES, 0),
                                                                                   frames)))
    sources = [f"{directory.name}-{'before-blow-up' if i >= frames - LAST_FRAMES else 'hot-md'}" for i in chosen]
    return trajectory.xyz[chosen].astype(np.float64), sources


def main() -> None:
    summary = json.loads((HERE / "runs" / "ensemble.json").read_text())["replicas"]
    positions, sources = [], []
    for row in summary:
        x, names = replica_frames(Path(row["directory"]))
        positions.append(x)
        sources += names
    reference = load_dataset(HERE.parent / "data" / "dimer-gfn2.h5")
    frames = Dataset(species=reference.species, positions=np.concatenate(positions),
                     frame_source=np.array(sources, dtype=object),
                     provenance={"description": "frames of ML/MM replicas of the dimer network at 500-700 K "
                                                "(runs/, ensemble.toml) before and around their blow-ups",
                                 "last_frames_before_blow_up": LAST_FRAMES, "every": EVERY})
    labelled = label(frames, HERE / "data" / "dimer-gfn2-hot-all.h5", XTBCalculator(), n_workers=2).labelled()
    keep = np.flatnonzero(labelled.energies < reference.energies.min() + MAX_ABOVE_MINIMUM)
    kept = labelled.subset(keep)
    kept.provenance = {**labelled.provenance, "kept_within_kJ_mol_of_minimum": MAX_ABOVE_MINIMUM}
    kept.save(HERE / "data" / "dimer-gfn2-hot.h5")
    print(f"{len(frames)} frames, {len(labelled)} labelled, {len(kept)} within {MAX_ABOVE_MINIMUM} kJ/mol: "
          f"energies {kept.energies.min() - reference.energies.min():.1f} to "
          f"{kept.energies.max() - reference.energies.min():.1f} kJ/mol above the training minimum")


if __name__ == "__main__":
    main()
