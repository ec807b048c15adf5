"""Committee-driven active learning for the ML water, starting from 40 low-temperature frames.

Each iteration trains a committee of four PhysNet-style networks (committee.toml), explores
with it by Langevin MD at 600 K (8 trajectories of 2 ps from the xTB minimum), flags frames
whose largest per-atom committee force spread exceeds 25 kJ/mol/nm, labels up to 100 of
them with GFN2-xTB and adds them to the training data. Stops when fewer than 5 % of the
explored frames are flagged. Reports: iteration-*/report.json and reports.json.
Run from the repository root (resumes if interrupted):
    .venv/bin/python systems/water/active-learning/run.py
"""

from pathlib import Path

import numpy as np

from mlmm.data.calculators import XTBCalculator
from mlmm.data.dataset import concatenate, load_dataset
from mlmm.data.recipes import frames, molecule_from_pdb
from mlmm.data.sampling import calculator_forces, langevin_md, optimize, potential_forces
from mlmm.training.active import active_learning
from mlmm.training.config import load_training_config

HERE = Path(__file__).parent
SPECIES, MASSES, START = molecule_from_pdb(HERE.parent / "water.pdb")
N_INITIAL = 40
THRESHOLD = 25.0  # kJ/mol/nm


def initial_data() -> None:
    """The first 40 frames sampled at 300 K from the normal modes: a deliberately narrow start."""
    path = HERE / "initial.h5"
    if not path.exists():
        data = load_dataset(HERE.parent / "data" / "water-gfn2.h5").labelled()
        cold = np.flatnonzero(data.frame_source == "normal-modes-300K")[:N_INITIAL]
        data.subset(cold).save(path)


def explore(committee, iteration: int):
    minimum = optimize(START, calculator_forces(XTBCalculator(), SPECIES), fmax=0.5)
    force_fn = potential_forces(committee, SPECIES)
    parts = []
    for run in range(8):
        trajectory = langevin_md(minimum, MASSES, force_fn, 600.0, 4000, timestep=0.0005, save_every=40,
                                 seed=1000 * iteration + run, stop_on_failure=True)
        parts.append(frames(SPECIES, trajectory["positions"], f"active-learning-md-600K-iteration-{iteration}",
                            {"sampling": "Langevin MD with the committee"}))
    return concatenate([p for p in parts if p.n_frames])


def main():
    initial_data()
    reports = active_learning(load_training_config(HERE / "committee.toml"), explore, XTBCalculator(),
                              threshold=THRESHOLD, target_fraction=0.05, max_iterations=5, max_new_frames=100)
    for report in reports:
        print(f"iteration {report['iteration']}: {report['training_frames']} training frames, "
              f"{report['flagged_frames']}/{report['explored_frames']} flagged "
              f"({100 * report['flagged_fraction']:.1f} %), median sigma_F {report['sigma_forces_median']:.1f} "
              "kJ/mol/nm")


if __name__ == "__main__":
    main()
