"""Transfer learning on the formic acid dimer: GFN2-xTB-pretrained model fine-tuned on B3LYP/6-31G*
against the same network trained from scratch on the same B3LYP frames.

1. Picks 3 % of the xTB dataset's frames from the xTB model's training split (DFT training
   set) and 40 frames from its test split (DFT test set), and labels them with PySCF
   (B3LYP/6-31G*, about 10 s per frame and core).
2. Trains `finetune.toml` (starts from ../model/model.pt) and `scratch.toml`.
3. Evaluates both, and the xTB model before fine-tuning (forces only), on the DFT test set
   and writes results.json.
Run from the repository root (after the xTB model exists; labelling resumes if interrupted):
    .venv/bin/python systems/formic-acid-dimer/transfer/run.py [--workers 2]
"""

import argparse
import json
from pathlib import Path

import numpy as np

from mlmm.data.calculators import PySCFCalculator
from mlmm.data.dataset import load_dataset
from mlmm.data.labelling import label
from mlmm.training.config import load_training_config
from mlmm.training.metrics import errors
from mlmm.training.models import rebuild
from mlmm.training.trainer import train

HERE = Path(__file__).parent
SEED = 5
TRAIN_SHARE = 0.03
N_TEST = 40


def dft_sets(workers: int):
    xtb = load_dataset(HERE.parent / "data" / "dimer-gfn2.h5").labelled()
    split = json.loads((HERE.parent / "model" / "split.json").read_text())
    rng = np.random.default_rng(SEED)
    n_train = int(round(TRAIN_SHARE * xtb.n_frames))
    chosen = {"train": np.sort(rng.choice(split["train"], n_train, replace=False)),
              "test": np.sort(rng.choice(split["test"], N_TEST, replace=False))}
    calculator = PySCFCalculator("b3lyp", "6-31g*")
    for name, frames in chosen.items():
        subset = xtb.subset(frames)
        subset.energies = subset.forces = subset.charges = subset.dipoles = None  # xTB labels are not kept
        subset.status = subset.label_error = None
        subset.provenance = dict(subset.provenance, selection=f"{name}: frames {frames.tolist()} of dimer-gfn2.h5")
        label(subset, HERE / "data" / f"dimer-b3lyp-{name}.h5", calculator, n_workers=workers)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    workers = parser.parse_args().workers
    dft_sets(workers)
    test = load_dataset(HERE / "data" / "dimer-b3lyp-test.h5").labelled()
    pretrained = errors(rebuild(HERE.parent / "model" / "model.pt").double(), test)
    # GFN2-xTB and B3LYP total energies differ by a large constant: only the forces compare.
    results = {"pretrained_xtb_model": {key: value for key, value in pretrained.items() if not key.startswith("energy")}}
    for name in ("finetune", "scratch"):
        config = load_training_config(HERE / f"{name}.toml")
        train(config)
        results[name] = errors(rebuild(config.output / "model.pt").double(), test)
        results[name]["training_frames"] = len(json.loads((config.output / "split.json").read_text())["train"])
    (HERE / "results.json").write_text(json.dumps(results, indent=2))
    for name, row in results.items():
        energy = f"energy MAE {row['energy_mae']:.3f} kJ/mol, " if "energy_mae" in row else ""
        print(f"{name:20s} DFT test set ({row['n_frames']} frames): {energy}forces MAE {row['forces_mae']:.2f} kJ/mol/nm")


if __name__ == "__main__":
    main()
