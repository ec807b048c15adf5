"""O...O distances of the dimer's two hydrogen bonds per temperature, over the ensemble's finished replicas.

The proton-transfer barrier rises steeply with the donor-acceptor distance, so how far the hydrogen
bonds stretch with temperature bears on the apparent activation energy (README.md). Reads the ensemble
summary of ensemble.toml (run it first) and prints, per temperature, the mean and standard deviation
of both O...O distances over all frames (nm) and the fraction of them above 0.30 nm. Run from the
repository root:
    .venv/bin/python systems/formic-acid-dimer/rates/hydrogen_bonds.py
"""

import json
from pathlib import Path

import numpy as np

from mlmm.analysis.trajectory import read_trajectory
from mlmm.bridge.ensemble import SUMMARY_FILE
from mlmm.config import load_ensemble

HERE = Path(__file__).parent
#: (donor O, acceptor O) of the two transferring protons, as in ensemble.toml's --proton triples
HYDROGEN_BONDS = [(2, 6), (7, 1)]
STRETCHED_NM = 0.30

if __name__ == "__main__":
    ensemble = load_ensemble(HERE / "ensemble.toml")
    distances = {}
    for row in json.loads((ensemble.directory / SUMMARY_FILE).read_text())["replicas"]:
        if row["state"] != "finished":
            continue
        x = read_trajectory(row["trajectory"], Path(row["directory"]) / "topology.pdb").positions
        distances.setdefault(row["temperature_K"], []).extend(
            np.linalg.norm(x[:, a] - x[:, b], axis=-1) for a, b in HYDROGEN_BONDS)
    for temperature, values in sorted(distances.items()):
        values = np.concatenate(values)
        print(f"{temperature:g} K: O...O {values.mean():.4f} +- {values.std():.4f} nm, "
              f"{(values > STRETCHED_NM).mean():.3f} of them above {STRETCHED_NM} nm")
