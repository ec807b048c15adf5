"""Throughput of the data pipeline: labelled frames per minute (GFN2-xTB, PySCF) and training time.

Labelling: ``mlmm.data.labelling.label`` on fresh frames of the shipped datasets (water,
formic acid dimer), with 1 and 2 worker processes, wall time including process start-up.
PySCF runs B3LYP/6-31G* on the dimer, the level of the transfer-learning set.
Training: seconds per epoch of the shipped formic acid dimer configuration
(systems/formic-acid-dimer/train.toml, one thread) measured over a few epochs, the epochs the
shipped run needed (from its metrics.json) and the projected wall time of that run.

    python benchmarks/bench_training.py [--xtb-frames 1000] [--pyscf-frames 6] [--epochs 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

from mlmm.data.calculators import PySCFCalculator, XTBCalculator
from mlmm.data.dataset import load_dataset
from mlmm.data.labelling import label
from mlmm.training.config import load_training_config
from mlmm.training.trainer import train
from timing import machine, versions

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DATASETS = {"water": ROOT / "systems/water/data/water-gfn2.h5",
            "formic-acid-dimer": ROOT / "systems/formic-acid-dimer/data/dimer-gfn2.h5"}
DIMER_CONFIG = ROOT / "systems/formic-acid-dimer/train.toml"


def labelling_rate(system: str, calculator, n_frames: int, workers: int, folder: Path) -> dict:
    frames = load_dataset(DATASETS[system]).subset(range(n_frames))
    for name in ("energies", "forces", "charges", "dipoles", "status", "label_error"):
        setattr(frames, name, None)
    start = time.perf_counter()
    label(frames, folder / f"{system}-{calculator.program}-{workers}.h5", calculator, n_workers=workers,
          progress=False)
    seconds = time.perf_counter() - start
    return {"system": system, "level_of_theory": calculator.level_of_theory, "workers": workers,
            "frames": n_frames, "seconds": round(seconds, 2), "frames_per_minute": round(60 * n_frames / seconds, 1)}


def training_rate(epochs: int, folder: Path) -> dict:
    config = load_training_config(DIMER_CONFIG)
    short = dataclasses.replace(config, output=folder / "dimer",
                                training=dataclasses.replace(config.training, epochs=epochs, max_minutes=None))
    start = time.perf_counter()
    metrics = train(short, progress=False)
    per_epoch = metrics["training_seconds"] / metrics["epochs"]
    shipped = json.loads((ROOT / "systems/formic-acid-dimer/model/metrics.json").read_text())
    return {"config": str(DIMER_CONFIG.relative_to(ROOT)), "threads": config.training.threads,
            "seconds_per_epoch": round(per_epoch, 3), "setup_and_test_seconds": round(
                time.perf_counter() - start - metrics["training_seconds"], 1),
            "shipped_run_epochs": shipped["epochs"], "shipped_run_training_seconds": shipped["training_seconds"],
            "projected_minutes_for_shipped_epochs": round(per_epoch * shipped["epochs"] / 60, 1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--xtb-frames", type=int, default=1000)
    parser.add_argument("--pyscf-frames", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rows = [labelling_rate(system, XTBCalculator(), args.xtb_frames, workers, folder)
                for system in DATASETS for workers in (1, 2)]
        rows += [labelling_rate("formic-acid-dimer", PySCFCalculator("b3lyp", "6-31g*"), args.pyscf_frames,
                                workers, folder) for workers in (1, 2)]
        training = training_rate(args.epochs, folder)
    result = {"labelling": rows, "training": training, "machine": machine(), "versions": versions()}
    print(json.dumps(result, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "training.json").write_text(json.dumps(result, indent=2))
    lines = ["# Data pipeline throughput", "", f"Machine: {result['machine']['cpu_model']}, "
             f"{result['machine']['cpus_available']} cores available.", "",
             "| system | level of theory | workers | frames | s | frames/min |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['system']} | {r['level_of_theory']} | {r['workers']} | {r['frames']} | {r['seconds']} | "
              f"{r['frames_per_minute']} |" for r in rows]
    lines += ["", f"Training ({training['config']}, {training['threads']} thread): "
              f"{training['seconds_per_epoch']} s/epoch; the shipped run took {training['shipped_run_epochs']} "
              f"epochs in {training['shipped_run_training_seconds']} s; at this machine's rate that is "
              f"{training['projected_minutes_for_shipped_epochs']} min (target: at most 60 min).", ""]
    (RESULTS / "training.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
