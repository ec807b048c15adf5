"""Does the network follow GFN2-xTB where the buffer-embedding MD of Fe3+ goes?

ML/MM MD as in run_md.py (fe-tip3p.pdb, model/model.pt, embedding="buffer"), Langevin at 300 K
(1/ps, 2 fs, seed SEED): a snapshot every SNAPSHOT_INTERVAL_PS for N_SNAPSHOTS snapshots. For
each, the cluster of the ion and every water whose oxygen lies within the buffer cutoff
(0.57 nm) is labelled with GFN2-xTB exactly as the training data (E(Fe + B) - E(B), charge +3,
sextet; forces on Fe and on the waters), and the network's errors on these frames are set
beside its test errors. Also counted: first-shell waters (oxygen within 0.30 nm) per snapshot.
Writes check_md.json. Run from the repository root (about 5 min):
    .venv/bin/python systems/fe-hexaaqua/check_md.py
"""

import json
import sys
from pathlib import Path

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as u
import torch

import mlmm
from mlmm.data.calculators import BufferDifference
from mlmm.data.dataset import Dataset
from mlmm.data.labelling import label
from mlmm.data.snapshots import buffer_clusters, solvent_snapshots
from mlmm.training.metrics import errors
from mlmm.training.models import rebuild

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from build import PDB, iron_and_oxygens, mm_system  # noqa: E402  (this folder)
from make_dataset import (BUFFER_CUTOFF, CHARGE, MULTIPLICITY, SNAPSHOT_RADIUS, TIP3P_CHARGES,  # noqa: E402
                          TIP3P_SPECIES)
from run_md import BUFFER, FIRST_SHELL_NM, TIMESTEP_PS  # noqa: E402

N_SNAPSHOTS, SNAPSHOT_INTERVAL_PS = 20, 1.0
SEED = 5


def main():
    torch.set_num_threads(2)
    pdb = app.PDBFile(str(PDB))
    iron, _ = iron_and_oxygens(pdb.topology)
    model = HERE / "model" / "model.pt"
    system = mlmm.create_mixed_system(pdb.topology, mm_system(pdb.topology), [iron], str(model), **BUFFER)
    integrator = openmm.LangevinMiddleIntegrator(300 * u.kelvin, 1 / u.picosecond, TIMESTEP_PS * u.picosecond)
    integrator.setRandomNumberSeed(SEED)
    simulation = app.Simulation(pdb.topology, system, integrator, openmm.Platform.getPlatformByName("CPU"),
                                {"Threads": "2"})
    simulation.context.setPositions(pdb.positions)
    simulation.context.setVelocitiesToTemperature(300 * u.kelvin, SEED)
    shots = solvent_snapshots(simulation, [iron], SNAPSHOT_RADIUS, N_SNAPSHOTS,
                              int(round(SNAPSHOT_INTERVAL_PS / TIMESTEP_PS)))
    frames = Dataset(species=shots["species"], positions=shots["positions"], mm_positions=shots["mm_positions"],
                     mm_charges=shots["mm_charges"], mm_mask=shots["mm_mask"], total_charge=CHARGE,
                     multiplicity=MULTIPLICITY)
    clusters = buffer_clusters(frames, BUFFER_CUTOFF, TIP3P_SPECIES, TIP3P_CHARGES, "ml/mm-md", {})
    labelled = label(clusters, HERE / "check_md.h5", BufferDifference({"program": "xtb"}), n_workers=2).labelled()
    oxygens = labelled.mm_positions[:, ::3] - labelled.positions[:, :1]
    distances = np.where(labelled.mm_mask[:, ::3], np.linalg.norm(oxygens, axis=-1), np.inf)
    first_shell = (distances < FIRST_SHELL_NM).sum(1)
    test = json.loads((HERE / "model" / "metrics.json").read_text())["test"]
    result = {"snapshots": int(labelled.n_frames), "snapshot_times_ps": (SNAPSHOT_INTERVAL_PS * np.arange(
                  1, N_SNAPSHOTS + 1)).tolist(), "first_shell_waters": first_shell.tolist(),
              "buffer_waters": (labelled.mm_mask.sum(1) // 3).tolist(),
              "md_frames": errors(rebuild(model).double(), labelled),
              "test_frames": {key: test[key] for key in ("n_frames", "energy_mae", "forces_mae", "mm_forces_mae")}}
    (HERE / "check_md.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
