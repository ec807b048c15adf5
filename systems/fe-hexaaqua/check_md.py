"""Does the network follow GFN2-xTB where the buffer-embedding MD of Fe3+ goes?

ML/MM MD as in run_md.py (fe-tip3p.pdb, a model folder's model.pt, embedding="buffer"), Langevin at
300 K (1/ps, 2 fs): a snapshot every --interval ps for --snapshots snapshots. For
each, the cluster of the ion and every water whose oxygen lies within the buffer cutoff
(0.57 nm) is labelled with GFN2-xTB exactly as the training data (E(Fe + B) - E(B), charge +3,
sextet; forces on Fe and on the waters), and the network's errors on these frames are set
beside its test errors. Also counted: first-shell waters (oxygen within 0.30 nm) per snapshot.
Writes OUTPUT.h5 (the labelled clusters, training data for the next round) and OUTPUT.json.
Run from the repository root (about 5 min for the defaults):
    .venv/bin/python systems/fe-hexaaqua/check_md.py                     # model/, check_md.{h5,json}
    .venv/bin/python systems/fe-hexaaqua/check_md.py --seed 7 --snapshots 40 --interval 0.1 \
        --output data/fe-buffer-md-round1                                  # round-1 training frames
    .venv/bin/python systems/fe-hexaaqua/check_md.py --model model-round1 --seed 9 --output check_md_round1
"""

import argparse
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
from mlmm.data.labelling import label
from mlmm.data.snapshots import buffer_clusters, solvent_snapshots
from mlmm.training.metrics import errors, predict_frames
from mlmm.training.models import rebuild

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from build import FIRST_SHELL_NM, PDB, iron_and_oxygens, mm_system  # noqa: E402  (this folder)
from make_dataset import BUFFER_CUTOFF, SNAPSHOT_RADIUS, TIP3P_CHARGES, TIP3P_SPECIES, ion_frames  # noqa: E402
from run_md import BUFFER, TIMESTEP_PS  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="model", help="model folder in systems/fe-hexaaqua (default model)")
    parser.add_argument("--seed", type=int, default=5, help="Langevin and velocity seed (default 5)")
    parser.add_argument("--snapshots", type=int, default=20, help="number of snapshots (default 20)")
    parser.add_argument("--interval", type=float, default=1.0, help="ps between snapshots (default 1.0)")
    parser.add_argument("--output", default="check_md", help="output stem in systems/fe-hexaaqua (default check_md)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    pdb = app.PDBFile(str(PDB))
    iron, _ = iron_and_oxygens(pdb.topology)
    model = HERE / args.model / "model.pt"
    system = mlmm.create_mixed_system(pdb.topology, mm_system(pdb.topology), [iron], str(model), **BUFFER)
    integrator = openmm.LangevinMiddleIntegrator(300 * u.kelvin, 1 / u.picosecond, TIMESTEP_PS * u.picosecond)
    integrator.setRandomNumberSeed(args.seed)
    simulation = app.Simulation(pdb.topology, system, integrator, openmm.Platform.getPlatformByName("CPU"),
                                {"Threads": "2"})
    simulation.context.setPositions(pdb.positions)
    simulation.context.setVelocitiesToTemperature(300 * u.kelvin, args.seed)
    shots = solvent_snapshots(simulation, [iron], SNAPSHOT_RADIUS, args.snapshots,
                              int(round(args.interval / TIMESTEP_PS)))
    frames = ion_frames(shots)
    sampling = {"description": f"Fe3+ with the TIP3P waters whose oxygen lies within {BUFFER_CUTOFF} nm of the ion; "
                               "E(Fe + buffer) - E(buffer) in vacuum, charge +3, sextet",
                "sampling": f"ML/MM MD (buffer embedding, {args.model}/model.pt) of fe-tip3p.pdb, Langevin 300 K, "
                            f"seed {args.seed}, snapshot every {args.interval} ps", "temperature_K": 300.0,
                "buffer_cutoff_nm": BUFFER_CUTOFF}
    clusters = buffer_clusters(frames, BUFFER_CUTOFF, TIP3P_SPECIES, TIP3P_CHARGES,
                               f"ml-mm-md-{args.model}-seed{args.seed}", sampling)
    network = rebuild(model).double()
    labelled = label(clusters, HERE / f"{args.output}.h5", BufferDifference({"program": "xtb"}),
                     n_workers=2).labelled()
    oxygens = labelled.mm_positions[:, ::3] - labelled.positions[:, :1]
    distances = np.where(labelled.mm_mask[:, ::3], np.linalg.norm(oxygens, axis=-1), np.inf)
    first_shell = (distances < FIRST_SHELL_NM).sum(1)
    test = json.loads((HERE / args.model / "metrics.json").read_text())["test"]
    predicted = predict_frames(network, labelled)
    result = {"model": args.model, "seed": args.seed, "snapshots": int(labelled.n_frames),
              "snapshot_times_ps": (args.interval * np.arange(1, args.snapshots + 1)).round(6).tolist(),
              "first_shell_waters": first_shell.tolist(),
              "signed_energy_errors": (predicted["energy"] - labelled.energies).round(1).tolist(),
              "buffer_waters": (labelled.mm_mask.sum(1) // 3).tolist(),
              "md_frames": errors(network, labelled, predicted=predicted),
              "test_frames": {key: test[key] for key in ("n_frames", "energy_mae", "forces_mae", "mm_forces_mae")}}
    (HERE / f"{args.output}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
