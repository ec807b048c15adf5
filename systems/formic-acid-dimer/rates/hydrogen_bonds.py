"""O...O distances of the dimer's two hydrogen bonds per temperature, over the ensemble's finished replicas.

The proton-transfer barrier rises steeply with the donor-acceptor distance, so how far the hydrogen
bonds stretch with temperature bears on the apparent activation energy (README.md). Reads the finished
replicas of an ensemble configuration of this folder (run it first; default ensemble.toml) and prints, per
temperature, the mean and standard deviation of both O...O distances over all frames (nm), the fraction of
them above 0.30 nm, and the fraction of frames in which one hydrogen bond is broken: the longer of the two
H...O(acceptor) distances above 0.30 nm (in water, a water in its place; minimum image in a periodic box).
Run from the repository root:
    .venv/bin/python systems/formic-acid-dimer/rates/hydrogen_bonds.py [ensemble-tip3p.toml]
"""

import argparse
from pathlib import Path

import numpy as np

from mlmm.analysis.rate_files import finished_replicas
from mlmm.analysis.rates import distance
from mlmm.analysis.trajectory import read_trajectory
from mlmm.bridge.ensemble import SUMMARY_FILE, replicas
from mlmm.config import load_ensemble

from evaluate import BROKEN_NM, longer_hydrogen_bond  # this folder's evaluate.py

HERE = Path(__file__).parent
#: (donor O, acceptor O) of the two transferring protons, as in ensemble.toml's --proton triples
HYDROGEN_BONDS = [(2, 6), (7, 1)]
STRETCHED_NM = 0.30

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", default="ensemble.toml", help="ensemble TOML in this folder")
    ensemble = load_ensemble(HERE / parser.parse_args().config)
    finished, _ = finished_replicas(ensemble.directory / SUMMARY_FILE, replicas(ensemble))
    for temperature, rows in sorted(finished.items()):
        trajectories = [read_trajectory(row["trajectory"], Path(row["directory"]) / "topology.pdb") for row in rows]
        values = np.concatenate([distance(trajectory.positions, a, b, trajectory.boxes)
                                 for trajectory in trajectories for a, b in HYDROGEN_BONDS])
        longer = np.concatenate([longer_hydrogen_bond(trajectory.positions, trajectory.boxes)
                                 for trajectory in trajectories])
        print(f"{temperature:g} K: O...O {values.mean():.4f} +- {values.std():.4f} nm, "
              f"{(values > STRETCHED_NM).mean():.3f} of them above {STRETCHED_NM} nm; one hydrogen bond broken "
              f"(H...O above {BROKEN_NM} nm) in {(longer > BROKEN_NM).mean():.3f} of the frames")
