"""GFN2-xTB labels of the dimer in frames of the proton-transfer runs in TIP3P: data and checks where they go.

Frames: every EVERY_PS of the finished replicas of an ensemble configuration of this folder (run it first) at
one temperature (--temperature K when it ran several), the dimer made whole.

    dataset ENSEMBLE --output data/NAME.h5     the dimer's geometries labelled in vacuum (energy, forces,
                                               charges, dipole): data for the vacuum network
    schemes ENSEMBLE --name NAME               the dimer with the whole TIP3P waters that have an atom within
                                               1.1 nm of it, each water's charges times its weight in the
                                               electrostatic model's environment (oxygen within 0.9 nm: 1,
                                               beyond 1.1 nm: 0, C2 in between), as in that model's training
                                               data; labelled with those point charges and without them
                                               (data/NAME-gfn2.h5, data/NAME-gfn2-vacuum.h5), then E_int of the
                                               embedding schemes in that same environment against them:
                                               mechanical (bare Coulomb of formic-acid.xml's charges),
                                               mechanical-ml-charges (the vacuum network's charges) and
                                               electrostatic (--electrostatic), over all frames and those
                                               with both hydrogen bonds intact or one broken (evaluate.py);
                                               writes NAME-schemes.json;
                                               --max-abs-xi NM keeps only frames near the transition state

Labelling resumes when rerun. Run from the repository root, e.g.
    .venv/bin/python systems/formic-acid-dimer/rates/solvated.py dataset ensemble-tip3p-seeds-17-22.toml \
        --every-ps 0.25 --output data/dimer-gfn2-solvated.h5
    .venv/bin/python systems/formic-acid-dimer/rates/solvated.py schemes ensemble-tip3p-electrostatic.toml \
        --name solvated-500K
"""

import argparse
import json
from pathlib import Path

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as u

from mlmm.analysis.rate_files import CollectiveVariable, finished_replicas
from mlmm.analysis.trajectory import read_trajectory
from mlmm.bridge.ensemble import SUMMARY_FILE, replicas
from mlmm.config import load_ensemble
from mlmm.data.calculators import XTBCalculator
from mlmm.data.dataset import Dataset
from mlmm.data.labelling import label
from mlmm.data.recipes import label_in_and_out_of_environment
from mlmm.data.snapshots import snapshots_of_frames, weighted_environment
from mlmm.potentials import load_potential
from mlmm.training.embedding_errors import (coulomb_interaction, electrostatic_interaction, fixed_charges,
                                            markdown_table, potential_charges, scheme_errors)

from evaluate import BROKEN_NM, INTACT_NM, longer_hydrogen_bond  # this folder's evaluate.py

HERE = Path(__file__).parent
SWITCH_DISTANCE, EMBEDDING_CUTOFF = 0.9, 1.1  # nm: the electrostatic model's environment
EVERY_PS = 2.5
#: xi, the mean of d(O-H) - d(H...O) over both transferring protons (nm), as `mlmm rate --proton 2,4,6 --proton 7,9,1`
PROTON_TRANSFER = CollectiveVariable(protons=((2, 4, 6), (7, 9, 1)))
#: environment radius (nm) for the dataset command, which keeps only the dimer: small enough for any box here
DIMER_ONLY_CUTOFF = 0.3


def replica_frames(config: str, cutoff: float, every_ps: float, max_replicas: int = None, max_abs_xi: float = None,
                   temperature: float = None):
    """Snapshots (:func:`mlmm.data.snapshots.snapshots_of_frames`, environment within ``cutoff`` nm) of the
    finished replicas of ``config`` at ``temperature`` (K; needed when it ran several), every ``every_ps``
    (of those, with ``max_abs_xi`` (nm), only the frames with the proton-transfer coordinate xi within it of
    the transition state, xi = 0); with their sources, the replicas' rows and the force-field System."""
    ensemble = load_ensemble(HERE / config)
    finished, _ = finished_replicas(ensemble.directory / SUMMARY_FILE, replicas(ensemble))
    if temperature is None and len(finished) > 1:
        raise SystemExit(f"{config} has finished replicas at {sorted(finished)} K: choose one with --temperature")
    temperature = next(iter(finished)) if temperature is None else temperature
    if temperature not in finished:
        raise SystemExit(f"{config} has no finished replica at {temperature:g} K (only at {sorted(finished)} K)")
    rows = sorted(finished[temperature], key=lambda row: row["seed"])[:max_replicas]
    pdb = app.PDBFile(str(Path(rows[0]["directory"]) / "topology.pdb"))
    forcefield = app.ForceField(str(HERE.parent / "formic-acid.xml"), "amber14/tip3p.xml")
    system = forcefield.createSystem(pdb.topology, nonbondedMethod=app.PME, nonbondedCutoff=0.9 * u.nanometer,
                                     rigidWater=True)
    frames, sources = [], []
    for row in rows:
        trajectory = read_trajectory(row["trajectory"], Path(row["directory"]) / "topology.pdb")
        stride = int(round(every_ps / (trajectory.times[1] - trajectory.times[0])))
        chosen = np.arange(stride - 1, len(trajectory.times), stride)
        if max_abs_xi is not None:
            xi = PROTON_TRANSFER(trajectory.positions[chosen], trajectory.boxes[chosen])
            chosen = chosen[np.abs(xi) <= max_abs_xi]
        frames += [(trajectory.positions[k], trajectory.boxes[k], k, trajectory.times[k]) for k in chosen]
        sources += [f"{Path(config).stem} {temperature:g} K seed {row['seed']}"] * len(chosen)
    snapshots = snapshots_of_frames(pdb.topology, system, "resname FMA", cutoff, frames)
    return snapshots, sources, rows, system


def _provenance(config: str, rows: list, every_ps: float, environment: str) -> dict:
    return {"description": f"formic acid dimer from the proton-transfer runs in TIP3P of {config} at "
                           f"{rows[0]['temperature_K']:g} K (seeds {[row['seed'] for row in rows]}, a frame every "
                           f"{every_ps:g} ps), {environment}",
            "sampling": f"ML/MM MD, {config}", "temperature_K": rows[0]["temperature_K"]}


def make_dataset(args) -> None:
    snapshots, sources, rows, _ = replica_frames(args.config, DIMER_ONLY_CUTOFF, args.every_ps, args.replicas,
                                                 temperature=args.temperature)
    frames = Dataset(species=snapshots["species"], positions=snapshots["positions"], frame_source=sources,
                     provenance=_provenance(args.config, rows, args.every_ps, "in vacuum (the waters left out)"))
    labelled = label(frames, HERE / args.output, XTBCalculator())
    print(f"{args.output}: {labelled.labelled().n_frames} of {frames.n_frames} frames labelled")


def check_schemes(args) -> None:
    snapshots, sources, rows, system = replica_frames(args.config, EMBEDDING_CUTOFF, args.every_ps, args.replicas,
                                                      args.max_abs_xi, args.temperature)
    mm_positions, mm_charges, mm_mask = weighted_environment(snapshots, SWITCH_DISTANCE, EMBEDDING_CUTOFF)
    environment = ("the whole TIP3P waters with an atom within 1.1 nm as point charges, each water's charges "
                   f"times its embedding weight (oxygen within {SWITCH_DISTANCE} nm of a solute atom: 1, beyond "
                   f"{EMBEDDING_CUTOFF} nm: 0, C2 switch in between)")
    if args.max_abs_xi is not None:
        environment += f"; only frames with |xi| <= {args.max_abs_xi} nm (near the transition state)"
    provenance = dict(_provenance(args.config, rows, args.every_ps, environment),
                      embedding_switch_distance_nm=SWITCH_DISTANCE, embedding_cutoff_nm=EMBEDDING_CUTOFF)
    frames = Dataset(species=snapshots["species"], positions=snapshots["positions"], mm_positions=mm_positions,
                     mm_charges=mm_charges, mm_mask=mm_mask, frame_source=sources, provenance=provenance)
    embedded, vacuum = label_in_and_out_of_environment(frames, XTBCalculator(), HERE / "data" / f"{args.name}-gfn2.h5",
                                                       HERE / "data" / f"{args.name}-gfn2-vacuum.h5")
    nonbonded = next(f for f in system.getForces() if isinstance(f, openmm.NonbondedForce))
    charges = [nonbonded.getParticleParameters(int(i))[0].value_in_unit(u.elementary_charge)
               for i in snapshots["ml_atoms"]]
    vacuum_network, _ = load_potential(HERE / args.vacuum)
    electrostatic, _ = load_potential(HERE / args.electrostatic)
    schemes = {"mechanical": coulomb_interaction(fixed_charges(charges)),
               "mechanical-ml-charges": coulomb_interaction(potential_charges(vacuum_network, 0.0)),
               "electrostatic": electrostatic_interaction(electrostatic, 0.0)}
    embedded, vacuum = embedded.labelled(), vacuum.labelled()
    longer = longer_hydrogen_bond(embedded.positions)
    groups = {"all": None, "hydrogen bonds intact": np.flatnonzero(longer < INTACT_NM),
              "one broken": np.flatnonzero(longer > BROKEN_NM)}
    result = {name: scheme_errors(schemes, embedded, vacuum, frames) for name, frames in groups.items()
              if frames is None or len(frames)}
    (HERE / f"{args.name}-schemes.json").write_text(json.dumps(result, indent=2))
    for name, errors in result.items():
        print(f"{name}: {errors['reference']['n_frames']} frames, reference E_int "
              f"{errors['reference']['interaction_mean']:.1f} +- {errors['reference']['interaction_std']:.1f} kJ/mol; "
              "mean error " + ", ".join(f"{scheme} {errors[scheme]['energy_mean_error']:.2f}" for scheme in schemes))
        print(markdown_table(errors))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, handler in (("dataset", make_dataset), ("schemes", check_schemes)):
        command = commands.add_parser(name)
        command.set_defaults(handler=handler)
        command.add_argument("config", help="ensemble TOML in this folder (its replicas must have run)")
        command.add_argument("--every-ps", type=float, default=EVERY_PS, help=f"default {EVERY_PS}")
        command.add_argument("--replicas", type=int, help="only the first REPLICAS seeds (default all finished)")
        command.add_argument("--temperature", type=float, help="K: the replicas at this temperature (needed when "
                             "the ensemble ran several)")
    commands.choices["dataset"].add_argument("--output", required=True, help="dataset file, relative to this folder")
    commands.choices["schemes"].add_argument("--name", required=True, help="stem of the datasets and result file")
    commands.choices["schemes"].add_argument("--max-abs-xi", type=float, help="only frames with |xi| at most "
                                             "this (nm): near the proton-transfer transition state")
    commands.choices["schemes"].add_argument("--vacuum", default="model/model.pt", help="vacuum network, for "
                                             "mechanical-ml-charges (default model/model.pt)")
    commands.choices["schemes"].add_argument("--electrostatic", default="model-electrostatic/model.pt",
                                             help="electrostatic model (default model-electrostatic/model.pt)")
    args = parser.parse_args()
    args.handler(args)


if __name__ == "__main__":
    main()
