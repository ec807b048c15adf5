"""The ``mlmm`` command line.

``mlmm demo|run|ensemble|rate|export|train|label|evaluate|spectrum|nma|adapt|bench|rescript|info``.

Errors from bad input print ``mlmm: error: <message>`` and exit with status 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from mlmm._version import __version__

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "systems" / "formic-acid-dimer" / "demo.toml"
BENCH_SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_scaling.py"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlmm", description="Hybrid ML/MM molecular dynamics in OpenMM.")
    parser.add_argument("--version", action="version", version=f"mlmm {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", help="run the formic acid dimer (trained ML model) in TIP3P water (MM)",
                               description=f"Run the demo configuration {DEMO_CONFIG}.")
    run = commands.add_parser("run", help="run the simulation described by a TOML config",
                              description="Run, or continue from its checkpoint, a simulation described by a TOML "
                                          "config (see mlmm.config.load_config for the keys).")
    run.add_argument("config", type=Path, help="run configuration (.toml)")
    for sub in (demo, run):
        sub.add_argument("--steps", type=int, help="number of MD steps in total (overrides [md] steps)")
        sub.add_argument("--output", type=Path, help="output directory (overrides [output] directory)")
        sub.add_argument("--overwrite", action="store_true",
                         help="discard a previous run in the output directory instead of continuing it")
        sub.add_argument("--quiet", action="store_true", help="no summary and no progress bar")

    export = commands.add_parser("export", help="write the ML force as TorchScript for plain OpenMM scripts",
                                 description="Write the ML force of an ML/MM set-up as a self-contained .pt that "
                                             "openmmtorch.TorchForce loads without mlmm.")
    export.add_argument("--pdb", type=Path, required=True, help="structure of the whole system")
    export.add_argument("--model", type=Path, required=True, help="mlmm model file")
    export.add_argument("--ml-atoms", required=True, help="MDTraj selection, or comma-separated atom indices")
    export.add_argument("--embedding", default="mechanical", help="embedding scheme (default: mechanical)")
    export.add_argument("--forcefield", nargs="+", default=None, metavar="FFXML",
                        help="OpenMM force-field files (default: amber14-all.xml amber14/tip3p.xml)")
    export.add_argument("--nonbonded-method", default=None,
                        help="PME, NoCutoff, CutoffPeriodic or CutoffNonPeriodic (default: PME if the PDB has a "
                             "box, else NoCutoff)")
    export.add_argument("--cutoff-nm", type=float, default=1.0, help="nonbonded cutoff in nm (default: 1.0)")
    export.add_argument("--constraints", default="HBonds", help="None, HBonds, AllBonds or HAngles (default: HBonds)")
    export.add_argument("--output", type=Path, required=True, help="output .pt file")
    export.add_argument("--system-xml", type=Path, help="also write the MM part of the mixed System as XML")

    train = commands.add_parser("train", help="train a network potential from a TOML config",
                                description="Train (or resume) a network potential; see mlmm.training.config for "
                                            "the keys. Writes model.pt, metrics.json, log.csv and a learning curve.")
    train.add_argument("config", type=Path, help="training configuration (.toml)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument("--snapshot", type=Path, metavar="DIR",
                       help="write the best model so far of a run (which may still be going) into DIR and exit")

    label = commands.add_parser("label", help="label a dataset's frames with xTB or PySCF",
                                description="Compute reference energies, forces, charges and dipoles for the "
                                            "frames of a dataset file, in parallel; rerunning resumes.")
    label.add_argument("input", type=Path, help="dataset file with the frames (.h5)")
    label.add_argument("output", type=Path, help="labelled dataset file to write or resume (.h5)")
    label.add_argument("--program", choices=["xtb", "pyscf"], default="xtb")
    label.add_argument("--method", help="xtb: GFN2-xTB (default); pyscf: hf, mp2 or a DFT functional (b3lyp)")
    label.add_argument("--basis", help="pyscf basis set (default 6-31g*)")
    label.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    label.add_argument("--retry-failed", action="store_true", help="recompute frames that failed before")
    label.add_argument("--quiet", action="store_true", help="no progress bar")

    evaluate = commands.add_parser("evaluate", help="errors of a trained model on a labelled dataset",
                                   description="Print energy, force and dipole MAE and RMSE of an mlmm network "
                                               "model on the labelled frames of a dataset file.")
    evaluate.add_argument("model", type=Path, help="model file written by `mlmm train`")
    evaluate.add_argument("dataset", type=Path, help="labelled dataset file (.h5)")

    nma = commands.add_parser("nma", help="harmonic frequencies and IR intensities of a model at a structure",
                              description="Optimise a structure with an mlmm model, then print its harmonic "
                                          "frequencies (cm^-1) and IR intensities (km/mol, charge models).")
    nma.add_argument("model", type=Path, help="mlmm model file (.pt)")
    nma.add_argument("structure", type=Path, help="PDB of the molecule (or of a system, with --atoms)")
    nma.add_argument("--atoms", default="all", help="MDTraj selection of the molecule in the PDB (default: all)")
    nma.add_argument("--no-optimize", action="store_true", help="use the structure as given (it must be a minimum)")
    nma.add_argument("--method", choices=["autograd", "finite-differences"], default="autograd",
                     help="Hessian by automatic differentiation (default) or central differences of the forces")
    nma.add_argument("--output", type=Path, help="also write the modes as CSV")

    ensemble = commands.add_parser("ensemble", help="run many replicas of a run on Dask (seeds x temperatures)",
                                   description="Run the replicas of an ensemble TOML (see mlmm.config.load_ensemble) "
                                               "on a Dask LocalCluster or scheduler; rerunning skips finished "
                                               "replicas and continues the others from their checkpoints.")
    ensemble.add_argument("config", type=Path, help="ensemble configuration (.toml)")
    ensemble.add_argument("--scheduler", help="Dask scheduler address (overrides [dask] scheduler)")
    ensemble.add_argument("--workers", type=int, help="LocalCluster worker processes (overrides [dask] workers)")

    rate = commands.add_parser("rate", help="reaction rates of an ensemble's replicas, with an Arrhenius fit",
                               description="Rates per temperature from the finished replicas of an ensemble "
                                           "(collective variable, two states with hysteresis, Garwood intervals), "
                                           "Arrhenius and Eyring fits; writes PREFIX.json and PREFIX.png.")
    rate.add_argument("config", type=Path, help="ensemble configuration (.toml) whose replicas have run")
    rate.add_argument("--proton", action="append", default=[], metavar="D,H,A",
                      help="a proton-transfer coordinate d(D-H) - d(H-A) (0-based atom indices); repeatable")
    rate.add_argument("--distance", action="append", default=[], metavar="I,J", help="a distance; repeatable")
    rate.add_argument("--reactant", required=True, metavar="LOW:HIGH",
                      help="reactant interval of the collective variable (mean of the terms, nm), e.g. "
                           "--reactant=-inf:-0.03 (with '=' when it starts with '-')")
    rate.add_argument("--product", required=True, metavar="LOW:HIGH", help="product interval, e.g. --product=0.03:inf")
    rate.add_argument("--one-way", action="store_true",
                      help="count reactant -> product only (default: both ways over the time in either state)")
    rate.add_argument("--min-residence", type=float, default=0.0, metavar="PS",
                      help="count a transition only when the new state lasts PS ps: shorter visits (recrossings) "
                           "are undone and the last PS of each replica is left out, so the transitions counted "
                           "are separate events as the Poisson interval assumes (default 0: every change)")
    rate.add_argument("--include", action="append", default=[], type=Path, metavar="EARLIER.json",
                      help="add the transitions and time of an earlier output of this command for other seeds of "
                           "the same run (e.g. a batch whose trajectories are gone); repeatable")
    rate.add_argument("--compare", type=Path, metavar="OTHER.json",
                      help="an output of this command for another system counted the same way (e.g. the reaction "
                           "in the gas phase): the ratio of the rates at every temperature both have")
    rate.add_argument("--output", type=Path, help="output prefix (default: DIRECTORY/rates)")

    spectrum = commands.add_parser("spectrum", help="power or IR spectrum of a trajectory, as CSV and PNG",
                                   description="Power spectrum (VDOS) of an .h5 trajectory written with [output] "
                                               "velocities = true, or IR spectrum of a dipole CSV log "
                                               "(EmbeddingReporter). Writes PREFIX.csv and PREFIX.png.")
    spectrum.add_argument("trajectory", type=Path, help=".h5 trajectory with velocities, or a dipole .csv log")
    spectrum.add_argument("--topology", type=Path, help="PDB for trajectory formats without a topology")
    spectrum.add_argument("--atoms", default="all", help="MDTraj selection for the power spectrum (default: all)")
    spectrum.add_argument("--temperature", type=float, default=300.0,
                          help="K: normalises the power spectrum, enters the IR quantum correction (default 300)")
    spectrum.add_argument("--window", choices=["hann", "blackman", "none"], default="hann")
    spectrum.add_argument("--correction", choices=["harmonic", "standard", "schofield"], default="harmonic",
                          help="IR quantum correction (default harmonic: the classical line shape)")
    spectrum.add_argument("--max-lag", type=float, help="longest correlation time in ps (default: all frames)")
    spectrum.add_argument("--blocks", type=int, default=1, help="block-averaged error bars from N blocks (N >= 2)")
    spectrum.add_argument("--output", type=Path, help="output prefix (default: TRAJECTORY without suffix + -ir/-power)")

    adapt = commands.add_parser("adapt", help="save a third-party model (TorchANI, MACE, ...) as an mlmm model file",
                                description="Convert a model of another family through its installed mlmm adapter "
                                            "(entry points 'mlmm.adapters', see plugins/) into an mlmm model file.")
    adapt.add_argument("family", help="model family, e.g. torchani or mace (an error lists the installed ones)")
    adapt.add_argument("source", type=Path, help="the family's own model file")
    adapt.add_argument("output", type=Path, help="mlmm model file to write (.pt)")
    adapt.add_argument("--name", help="model name stored in the metadata (default: FAMILY SOURCE)")

    commands.add_parser("bench", help="ms/step of every scheme and transport, pure MM and openmm-ml beside",
                        description="Run benchmarks/bench_scaling.py (a source checkout's): the grid of MM "
                                    "environment and ML region sizes; arguments after 'bench' go to it "
                                    "(e.g. mlmm bench --mm-atoms 3000 --ml-waters 3).")

    rescript = commands.add_parser("rescript", help="save a trained model file again with this mlmm's code",
                                   description="Rebuild a model file written by `mlmm train` from the recipes it "
                                               "records and save it with this mlmm's TorchScript code: same "
                                               "parameters (content hash checked), name and metadata.")
    rescript.add_argument("model", type=Path, help="mlmm model file written by `mlmm train`")
    rescript.add_argument("output", type=Path, help="model file to write (may be MODEL itself)")
    rescript.add_argument("--vacuum", type=Path, help="for a model trained with a vacuum model (electrostatic "
                          "embedding, vacuum-anchored buffer): write it with this vacuum model file's network "
                          "instead (e.g. one refined since)")

    average = commands.add_parser("average", help="save the mean of trained models of any architectures as one model",
                                  description="Write one model file whose energy (and charges, and buffer energies) "
                                              "is the mean of the members' (mlmm.potentials.mean): e.g. a PhysNet "
                                              "and a PaiNN whose errors are weakly correlated.")
    average.add_argument("members", type=Path, nargs="+", help="two or more mlmm model files")
    average.add_argument("--output", type=Path, required=True, help="model file to write (.pt)")
    weighting = average.add_mutually_exclusive_group()
    weighting.add_argument("--weights", type=float, nargs="+", metavar="W",
                           help="one positive weight per member (normalized to sum to 1; default: equal)")
    weighting.add_argument("--fit-weights", type=Path, nargs="+", metavar="JSON",
                           help="one JSON file per member with its errors on the same frames (a list "
                                "\"energy_errors\", e.g. interaction-validation.json of a buffer evaluate.py "
                                "--validation): the weights of least mean squared error on them "
                                "(mlmm.potentials.mean.error_weights); never fit them on test frames")

    info = commands.add_parser("info", help="show a model file's metadata and verify it",
                               description="Print an mlmm model's metadata and verify its content hash.")
    info.add_argument("model", type=Path, help="mlmm model file (.pt)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``mlmm`` console script; returns the exit status."""
    parser = _parser()
    args, passed_on = parser.parse_known_args(argv)
    if args.command == "bench":
        args.arguments = passed_on  # bench_scaling.py's own options
    elif passed_on:
        parser.error(f"unrecognized arguments: {' '.join(passed_on)}")
    from mlmm.bridge.simulation import SimulationError

    try:
        handlers = {"demo": _demo, "run": _run, "export": _export, "info": _info, "train": _train, "label": _label,
                    "evaluate": _evaluate, "spectrum": _spectrum,
                    "ensemble": _ensemble, "nma": _nma, "rate": _rate, "adapt": _adapt,
                    "bench": _bench, "rescript": _rescript, "average": _average}
        return handlers[args.command](args)
    except (ValueError, TypeError, FileNotFoundError, SimulationError) as error:
        print(f"mlmm: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("mlmm: interrupted; the same command continues from the last checkpoint (`run`, `demo`, `ensemble`, "
              "`train`) or the last labelled frame (`label`).", file=sys.stderr)
        return 130


def _demo(args: argparse.Namespace) -> int:
    if not DEMO_CONFIG.is_file():
        raise FileNotFoundError(f"the demo configuration {DEMO_CONFIG} is missing; the demo needs a source "
                                "checkout of mlmm (pip install -e .).")
    args.config = DEMO_CONFIG
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from mlmm.bridge.simulation import run_simulation
    from mlmm.config import load_config

    config = load_config(args.config).with_overrides(steps=args.steps, directory=args.output)
    console = Console(soft_wrap=True)  # no hard line breaks inside paths when piped to a file
    if not args.quiet:
        console.print(f"mlmm {__version__}: {args.config} -> {config.output.directory}")
    result = run_simulation(config, progress=not args.quiet, overwrite=args.overwrite, console=console)
    if result.ns_per_day is None:
        console.print(f"Nothing to run: {config.output.directory} already holds {result.steps} steps "
                      f"(requested {config.md.steps}). Ask for more with --steps, or start over with --overwrite.")
    else:
        resumed = f" (continued from step {result.start_step})" if result.start_step else ""
        console.print(f"{result.steps} steps{resumed}: {result.ns_per_day:.2f} ns/day; final potential energy "
                      f"{result.potential_energy:.1f} kJ/mol")
    console.print(f"Trajectory: {result.trajectory} ({result.frames} frames; topology {result.topology})")
    console.print(f"Log: {result.log}")
    return 0


def _export(args: argparse.Namespace) -> int:
    import openmm.app as app

    import mlmm
    from mlmm.bridge.simulation import build_mm_system
    from mlmm.config import DEFAULT_FORCEFIELD, parse_system

    if not args.pdb.is_file():
        raise FileNotFoundError(f"--pdb {args.pdb}: no such file.")
    method = args.nonbonded_method
    if method is None:
        method = "PME" if app.PDBFile(str(args.pdb)).topology.getPeriodicBoxVectors() is not None else "NoCutoff"
    system_config = parse_system({"pdb": str(args.pdb.resolve()), "nonbonded_method": method,
                                  "forcefield": args.forcefield or list(DEFAULT_FORCEFIELD),
                                  "cutoff_nm": args.cutoff_nm, "constraints": args.constraints}, Path.cwd())
    pdb, mm_system = build_mm_system(system_config)
    path = mlmm.export(args.output, pdb.topology, mm_system, _ml_atoms(args.ml_atoms), args.model,
                       embedding=args.embedding, system_xml=args.system_xml)
    print(f"wrote {path}: the ML force ({args.embedding} embedding, {method}); load it with "
          f"openmmtorch.TorchForce({str(path)!r})" + (" and setUsesPeriodicBoundaryConditions(True)"
                                                         if mm_system.usesPeriodicBoundaryConditions() else ""))
    if args.system_xml:
        print(f"wrote {args.system_xml}: the MM part of the mixed System; add the TorchForce to it")
    return 0


def _ml_atoms(text: str):
    """Comma-separated integers are atom indices; anything else is an MDTraj selection."""
    parts = [p.strip() for p in text.split(",")]
    if all(p.isdigit() for p in parts):
        return [int(p) for p in parts]
    return text


def _train(args: argparse.Namespace) -> int:
    from mlmm.training.config import load_training_config
    from mlmm.training.trainer import train

    config = load_training_config(args.config)
    metrics = train(config, progress=not args.quiet, snapshot=args.snapshot)
    for subset in ("train", "validation", "test"):
        row = metrics.get(subset) or {}
        if row:
            print(f"{subset:10s} {row['n_frames']:6d} frames  energy MAE {row['energy_mae']:.3f} RMSE "
                  f"{row['energy_rmse']:.3f} kJ/mol  forces MAE {row['forces_mae']:.2f} RMSE "
                  f"{row['forces_rmse']:.2f} kJ/mol/nm")
    print(f"model written to {(args.snapshot or config.output) / 'model.pt'}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from mlmm.data.dataset import load_dataset
    from mlmm.training.metrics import errors
    from mlmm.training.models import rebuild

    row = errors(rebuild(args.model).double(), load_dataset(args.dataset).labelled())
    print(" ".join(f"{key} {value:.4g}" for key, value in row.items()))
    return 0


def _label(args: argparse.Namespace) -> int:
    from mlmm.data.calculators import make_calculator
    from mlmm.data.dataset import FAILED, load_dataset
    from mlmm.data.labelling import label

    spec = {"program": args.program}
    if args.method:
        spec["method"] = args.method
    if args.basis:
        spec["basis"] = args.basis
    result = label(load_dataset(args.input), args.output, make_calculator(spec), n_workers=args.workers,
                   retry_failed=args.retry_failed, progress=not args.quiet)
    failed = int((result.status == FAILED).sum())
    print(f"{int(result.labelled_mask().sum())} of {result.n_frames} frames labelled, {failed} failed; "
          f"written to {args.output}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    import subprocess

    if not BENCH_SCRIPT.is_file():
        raise FileNotFoundError(f"the benchmark script {BENCH_SCRIPT} is missing; `mlmm bench` needs a source "
                                "checkout of mlmm (pip install -e .).")
    return subprocess.run([sys.executable, str(BENCH_SCRIPT), *args.arguments]).returncode


def _adapt(args: argparse.Namespace) -> int:
    import mlmm
    from mlmm.potentials.adapters import adapt

    potential = adapt(args.family, args.source)
    name = args.name or f"{args.family} {args.source.name}"
    mlmm.save_potential(potential, args.output, name=name, extra={"adapted_from": {"family": args.family,
                                                                                   "source": str(args.source)}})
    metadata = mlmm.read_metadata(args.output)
    print(f"{args.output}: {name}, elements {metadata['supported_elements']}, cutoff {metadata['cutoff_nm']} nm")
    return 0


def _rescript(args: argparse.Namespace) -> int:
    from mlmm.training.models import rescript

    rescript(args.model, args.output, args.vacuum)
    paired = f", its vacuum network from {args.vacuum}" if args.vacuum else ""
    print(f"{args.output}: {args.model} saved with the code of this mlmm{paired}")
    return 0


def _average(args: argparse.Namespace) -> int:
    import json

    import numpy as np

    from mlmm.potentials.mean import error_weights, save_mean

    weights = args.weights
    if args.fit_weights:
        if len(args.fit_weights) != len(args.members):
            raise ValueError(f"--fit-weights needs one file per member ({len(args.members)}), got "
                             f"{len(args.fit_weights)}")
        errors = [json.loads(path.read_text()).get("energy_errors") for path in args.fit_weights]
        missing = [str(path) for path, e in zip(args.fit_weights, errors) if e is None]
        if missing:
            raise ValueError(f"{', '.join(missing)} hold no \"energy_errors\" list; write them with a buffer "
                             "evaluate.py --validation")
        if len({len(e) for e in errors}) > 1:
            raise ValueError(f"the --fit-weights files hold errors on different numbers of frames "
                             f"({[len(e) for e in errors]}); assess every member on the same frames")
        weights = error_weights(errors).tolist()
        rmse = [float(np.sqrt(np.mean(np.square(e)))) for e in errors]
        mean_rmse = float(np.sqrt(np.mean(np.square(np.asarray(weights) @ np.asarray(errors)))))
        print(f"weights {[round(w, 4) for w in weights]} fitted on {len(errors[0])} frames: RMSE of the members "
              f"{[round(r, 4) for r in rmse]}, of the mean {mean_rmse:.4f}")
    save_mean(args.members, args.output, weights)
    print(f"{args.output}: the mean of {len(args.members)} models ({', '.join(str(m) for m in args.members)})")
    return 0


def _info(args: argparse.Namespace) -> int:
    import openmm.app as app

    import mlmm

    metadata = mlmm.read_metadata(args.model)
    try:
        mlmm.load_potential(args.model)  # recomputes the content hash; raises ValueError on a mismatch
    except RuntimeError as error:  # torch.jit.load on a damaged archive
        raise ValueError(f"{args.model} has mlmm metadata but torch cannot load it ({error}); the file is "
                         "damaged. Save the model again with mlmm.save_potential.") from None
    symbols = [app.Element.getByAtomicNumber(z).symbol for z in metadata["supported_elements"]]
    cutoff = metadata.get("cutoff_nm")
    units = ", ".join(f"{k} {v}" for k, v in metadata.get("units", {}).items())
    lines = [("model", str(args.model)), ("name", metadata.get("name")),
             ("format", f"{metadata['format']} version {metadata['format_version']}"),
             ("mlmm version", metadata.get("mlmm_version")), ("created", metadata.get("created")),
             ("elements", " ".join(symbols)), ("cutoff", "none" if cutoff is None else f"{cutoff} nm"),
             ("units", units), ("predicts charges", "yes" if metadata.get("predicts_charges") else "no"),
             ("content hash", f"{metadata['content_hash']} (verified)")]
    architecture = metadata.get("architecture")
    if architecture:
        lines.append(("architecture", ", ".join(f"{k} {v}" for k, v in architecture.items())))
    extra = metadata.get("extra", {})
    if "split" in extra:  # a trained model: summarise what the trainer stored
        extra = dict(extra, split=", ".join(f"{k} {len(v)} frames" for k, v in extra["split"].items()))
        test = extra.get("metrics", {}).get("test") or {}
        extra["metrics"] = ", ".join(f"test {k} {v:.4g}" for k, v in test.items()) or "no test set"
        if "loss_weights" in extra:
            extra["loss_weights"] = ", ".join(f"{k} {v:g}" for k, v in extra["loss_weights"].items())
        extra["datasets"] = "; ".join(f"{d.get('level_of_theory')} ({d.get('description', '')})"
                                      for d in extra.get("datasets", []))
    if "members" in extra:  # a mean of models (mlmm average)
        extra = dict(extra, members="; ".join(
            f"{m['file']} ({(m.get('architecture') or {}).get('family', m.get('name'))}, hash {m['content_hash'][:12]}"
            f"{', weight %.4g' % m['weight'] if 'weight' in m else ''})"
            for m in extra["members"]))
    lines += [(key, value) for key, value in extra.items()]
    width = max(len(key) for key, _ in lines)
    for key, value in lines:
        print(f"{key:<{width}}  {value}")
    return 0


def _spectrum(args: argparse.Namespace) -> int:
    import numpy as np

    from mlmm.analysis.spectrum_files import spectrum_of_file, write_spectrum

    result = spectrum_of_file(args.trajectory, topology=args.topology, atoms=args.atoms, temperature=args.temperature,
                              window=args.window, max_lag=args.max_lag, blocks=args.blocks,
                              correction=args.correction)
    prefix = args.output or args.trajectory.with_name(f"{args.trajectory.stem}-{result.kind}")
    table, figure = write_spectrum(result, prefix)
    band = slice(1, None)  # the strongest band above 0 cm^-1
    strongest = result.wavenumbers[band][np.argmax(result.intensities[band])]
    print(f"{result.kind} spectrum of {result.frames} frames every {result.timestep * 1000:.3g} fs: "
          f"0-{result.wavenumbers[-1]:.0f} cm^-1 in steps of {result.wavenumbers[1]:.2f} cm^-1, strongest band at "
          f"{strongest:.1f} cm^-1")
    print(f"Wrote {table} and {figure}")
    return 0



def _ensemble(args: argparse.Namespace) -> int:
    import dataclasses

    from rich.console import Console

    from mlmm.bridge.ensemble import SUMMARY_FILE, run_ensemble
    from mlmm.config import load_ensemble

    ensemble = load_ensemble(args.config)
    overrides = {"scheduler": args.scheduler, "workers": args.workers}
    ensemble = dataclasses.replace(ensemble, **{k: v for k, v in overrides.items() if v is not None})
    console = Console(soft_wrap=True)
    where = ensemble.scheduler or f"a local cluster of {ensemble.workers} processes"
    console.print(f"{len(ensemble.seeds) * len(ensemble.temperatures_K)} replicas of {ensemble.run.source} on {where} "
                  f"-> {ensemble.directory}")
    result = run_ensemble(ensemble, console=console)
    console.print(f"ran {len(result.ran)}, already finished {len(result.skipped)}, failed {len(result.failed)}; "
                  f"summary: {ensemble.directory / SUMMARY_FILE}")
    return 1 if result.failed else 0



def _nma(args: argparse.Namespace) -> int:
    import mdtraj
    import numpy as np

    from mlmm.analysis.normal_modes import harmonic_analysis
    from mlmm.potentials.io import load_potential

    structure = mdtraj.load(str(args.structure))
    atoms = structure.topology.select(args.atoms)
    if atoms.size == 0:
        raise ValueError(f"the selection {args.atoms!r} matches no atom of {args.structure}")
    elements = [structure.topology.atom(int(i)).element for i in atoms]
    model, _ = load_potential(args.model)
    analysis = harmonic_analysis(model, [e.atomic_number for e in elements], structure.xyz[0, atoms].astype(float),
                                 [e.mass for e in elements], optimize_first=not args.no_optimize, method=args.method)
    intensities = analysis.ir_intensities
    print(f"{len(atoms)} atoms, energy {analysis.energy:.4f} kJ/mol; {len(analysis.wavenumbers)} modes")
    print(f"{'mode':>4} {'cm^-1':>10} {'k (kJ/mol/nm^2)':>16} {'IR (km/mol)':>12}")
    for k, (wavenumber, constant) in enumerate(zip(analysis.wavenumbers, analysis.force_constants)):
        intensity = "-" if intensities is None else f"{intensities[k]:.2f}"
        print(f"{k + 1:>4} {wavenumber:>10.2f} {constant:>16.1f} {intensity:>12}")
    if args.output:
        columns = [analysis.wavenumbers, analysis.force_constants]
        columns.append(np.full(len(analysis.wavenumbers), np.nan) if intensities is None else intensities)
        np.savetxt(args.output, np.column_stack(columns), delimiter=",", comments="",
                   header="wavenumber_cm-1,force_constant_kJ_mol-1_nm-2,ir_intensity_km_mol-1")
        print(f"Wrote {args.output}")
    return 0



def _indices(text: str, count: int, option: str) -> tuple:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != count:
        raise ValueError(f"--{option} {text!r} must be {count} comma-separated atom indices")
    return values


def _interval(text: str, option: str) -> tuple:
    try:
        low, high = (float(v) for v in text.split(":"))
    except ValueError:
        raise ValueError(f"--{option} {text!r} must be LOW:HIGH in nm, e.g. -inf:-0.03") from None
    return low, high


def _rate(args: argparse.Namespace) -> int:
    import json

    from mlmm.analysis.plots import plot_arrhenius
    from mlmm.analysis.rate_files import (CollectiveVariable, compare_rates, ensemble_rates, include_earlier,
                                         rate_table, read_rates, row_rate, strict_json)
    from mlmm.analysis.rates import arrhenius_fit, eyring_fit
    from mlmm.bridge.ensemble import SUMMARY_FILE, replicas
    from mlmm.config import load_ensemble

    ensemble = load_ensemble(args.config)
    variable = CollectiveVariable(tuple(_indices(p, 3, "proton") for p in args.proton),
                                  tuple(_indices(d, 2, "distance") for d in args.distance))
    bounds = [_interval(args.reactant, "reactant"), _interval(args.product, "product")]
    result = ensemble_rates(ensemble.directory / SUMMARY_FILE, variable, bounds,
                            *((0, 1) if args.one_way else (None, None)),
                            members=replicas(ensemble), min_residence=args.min_residence)
    settings = {"collective_variable": {"protons": variable.protons, "distances": variable.distances},
                "reactant_nm": args.reactant, "product_nm": args.product, "one_way": args.one_way,
                "min_residence_ps": args.min_residence}
    rows = rate_table(result)
    for earlier in args.include:
        rows = include_earlier(rows, read_rates(earlier), settings, str(earlier))
    output = dict(settings, rates=rows)
    print(f"{'T (K)':>8} {'replicas':>8} {'transitions':>11} {'time (ps)':>10} {'k (1/ps)':>10}  95% interval")
    for row in rows:
        print(f"{row['temperature_K']:>8g} {row['replicas']:>8d} {row['transitions']:>11d} {row['time_ps']:>10.1f} "
              f"{row['rate_per_ps']:>10.4g}  [{row['lower_per_ps']:.4g}, {row['upper_per_ps']:.4g}]")
    if args.compare:
        ratios = compare_rates(rows, read_rates(args.compare, "--compare"), settings, str(args.compare))
        output["compared_with"] = {"file": str(args.compare), "ratios": ratios}
        for ratio in ratios:
            print(f"{ratio['temperature_K']:g} K: k / k({args.compare.name}) = {ratio['ratio']:.3g} "
                  f"[{ratio['lower']:.3g}, {ratio['upper']:.3g}], p(equal rates) = {ratio['p_value_equal_rates']:.3g}")
    prefix = args.output or ensemble.directory / "rates"
    table, figure = Path(f"{prefix}.json"), Path(f"{prefix}.png")  # a prefix may hold dots (rates-0.5)
    counted = [(row["temperature_K"], row_rate(row)) for row in rows if row["transitions"] > 0]
    if len(counted) >= 2:
        arrhenius, eyring = arrhenius_fit(*zip(*counted)), eyring_fit(*zip(*counted))
        output["arrhenius"] = {"activation_energy_kJ_mol": arrhenius.activation_energy,
                               "activation_energy_error": arrhenius.activation_energy_error,
                               "ln_prefactor_per_ps": arrhenius.ln_prefactor,
                               "ln_prefactor_error": arrhenius.ln_prefactor_error,
                               "chi2_per_dof": arrhenius.chi2_per_dof}
        output["eyring"] = {"enthalpy_kJ_mol": eyring.enthalpy, "enthalpy_error": eyring.enthalpy_error,
                            "entropy_J_mol_K": eyring.entropy, "entropy_error": eyring.entropy_error}
        plot_arrhenius(*zip(*counted), arrhenius, "rate against temperature", figure)
        print(f"Arrhenius: Ea = {arrhenius.activation_energy:.2f} +- {arrhenius.activation_energy_error:.2f} kJ/mol, "
              f"ln(A ps) = {arrhenius.ln_prefactor:.2f} +- {arrhenius.ln_prefactor_error:.2f}; Eyring: dH = "
              f"{eyring.enthalpy:.2f} +- {eyring.enthalpy_error:.2f} kJ/mol, dS = {eyring.entropy:.1f} +- "
              f"{eyring.entropy_error:.1f} J/mol/K")
    table.write_text(json.dumps(strict_json(output), indent=1, allow_nan=False))
    print(f"Wrote {table}" + (f" and {figure}" if len(counted) >= 2 else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
