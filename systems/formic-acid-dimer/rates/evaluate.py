"""Test errors of a refined dimer network by origin of the frames, beside the network it was refined from.

Groups the test frames of the model's split (the datasets of its training configuration) into the original
data, the MD frames at 500-700 K, the frames before the first network's blow-ups (DATASET.md) and, for a
network trained on them, the dimer's geometries from the runs in TIP3P; then the held-out frames of TIP3P
replicas that no training saw (data/dimer-gfn2-solvated-test.h5, mechanical seeds 23-24;
data/dimer-gfn2-solvated-electrostatic.h5, electrostatic seeds 1-2; data/dimer-gfn2-solvated-round2.h5,
seeds 1-4 of tip3p-solvated.toml, the refined network's own runs; data/dimer-gfn2-solvated-600K.h5 and
-700K.h5, -electrostatic-600K.h5 and -700K.h5, its runs at 600 and 700 K), split by whether the water has broken
one of the dimer's hydrogen bonds (the longer H...O above BROKEN_NM) or not (below INTACT_NM). Writes
MODEL/test_groups.json.

    .venv/bin/python systems/formic-acid-dimer/rates/evaluate.py                        # model/
    .venv/bin/python systems/formic-acid-dimer/rates/evaluate.py --model model-solvated \
        --config train-solvated.toml --previous model
"""

import argparse
import json
from pathlib import Path

import numpy as np

from mlmm.analysis.rates import distance
from mlmm.data.dataset import load_dataset
from mlmm.training.config import load_training_config
from mlmm.training.metrics import errors
from mlmm.training.models import rebuild
from mlmm.training.trainer import load_training_data

HERE = Path(__file__).resolve().parent
SOURCE_GROUPS = {"original data": lambda source: not any(key in source for key in ("hot-md", "blow-up", "tip3p")),
                 "hot MD 500-700 K": lambda source: "hot-md" in source,
                 "before blow-ups": lambda source: "blow-up" in source,
                 "TIP3P runs, 500 K": lambda source: "tip3p" in source}
HELD_OUT = {"held-out TIP3P, mechanical": "data/dimer-gfn2-solvated-test.h5",
            "held-out TIP3P, electrostatic": "data/dimer-gfn2-solvated-electrostatic.h5",
            "TIP3P runs of model-solvated": "data/dimer-gfn2-solvated-round2.h5",
            "TIP3P runs of model-solvated, mechanical, 600 K": "data/dimer-gfn2-solvated-600K.h5",
            "TIP3P runs of model-solvated, mechanical, 700 K": "data/dimer-gfn2-solvated-700K.h5",
            "TIP3P runs of model-solvated, electrostatic, 600 K": "data/dimer-gfn2-solvated-electrostatic-600K.h5",
            "TIP3P runs of model-solvated, electrostatic, 700 K": "data/dimer-gfn2-solvated-electrostatic-700K.h5"}
#: the transferring protons' (H, acceptor O), as in ensemble.toml's --proton triples
HYDROGEN_BONDS = [(4, 6), (9, 1)]
INTACT_NM, BROKEN_NM = 0.25, 0.30


def longer_hydrogen_bond(positions: np.ndarray, boxes: np.ndarray = None) -> np.ndarray:
    """The longer of the two H...O(acceptor) distances of each frame [frames, atoms, 3] (nm; minimum image
    with ``boxes``)."""
    return np.max([distance(positions, h, o, boxes) for h, o in HYDROGEN_BONDS], axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="model", help="model directory in this folder (default model)")
    parser.add_argument("--config", default="train.toml", help="its training configuration (default train.toml)")
    parser.add_argument("--previous", default="../model", help="the network it was refined from (default ../model)")
    args = parser.parse_args()
    data, _ = load_training_data(load_training_config(HERE / args.config))
    test = data.subset(json.loads((HERE / args.model / "split.json").read_text())["test"])
    groups = {name: test.subset([i for i, source in enumerate(test.frame_source) if belongs(source)])
              for name, belongs in SOURCE_GROUPS.items()}
    for name, path in HELD_OUT.items():
        frames = load_dataset(HERE / path).labelled()
        longer = longer_hydrogen_bond(frames.positions)
        groups[f"{name}, hydrogen bonds intact"] = frames.subset(np.flatnonzero(longer < INTACT_NM))
        groups[f"{name}, one broken"] = frames.subset(np.flatnonzero(longer > BROKEN_NM))
    network = rebuild(HERE / args.model / "model.pt").double()
    previous = rebuild(HERE / args.previous / "model.pt").double()
    result = {}
    for name, frames in groups.items():
        if not frames.n_frames:
            continue
        result[name] = {"n": frames.n_frames, "refined": errors(network, frames), "previous": errors(previous, frames)}
        print(f"{name} ({frames.n_frames}): energy MAE {result[name]['refined']['energy_mae']:.3f} "
              f"(previous {result[name]['previous']['energy_mae']:.3f}), force MAE "
              f"{result[name]['refined']['forces_mae']:.2f} ({result[name]['previous']['forces_mae']:.2f})")
    (HERE / args.model / "test_groups.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
