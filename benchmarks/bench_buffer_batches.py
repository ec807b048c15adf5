"""Cost of a buffer training batch: each frame's own pair list against one list of every pair.

Frames batched along the member axis (mlmm.training.batching.buffer_frame_outputs) differ in
geometry, so one neighbour list for the whole batch must hold every pair of the cluster (I and up
to ~30 buffer waters). PhysNet and PaiNN narrow it to each frame's own pairs within the cutoff
(mlmm.potentials.neighbors.member_pairs_within); this times one training step (forward, forces,
loss, backward; torch on one thread) of the shipped buffer configurations with that narrowing and
with it switched off, interleaved over the same ``--batches`` random batches of 16 training frames,
and reports the median ms per batch of each and their ratio. The networks have their random initial
weights (the cost does not depend on them).

    .venv/bin/python benchmarks/bench_buffer_batches.py [--batches 4]

Prints one JSON object and writes DIR/buffer-batches.json and DIR/buffer-batches.md (``--output-dir``,
default benchmarks/results).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

import mlmm.potentials.physnet as physnet
from mlmm.training.batching import buffer_frame_outputs
from mlmm.training.config import load_training_config
from mlmm.training.metrics import SHARED_TENSORS, loss
from mlmm.training.trainer import Trainer
from timing import machine, versions

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ["systems/water/buffer/train-scratch-64.toml", "systems/water/buffer/train-painn-32.toml",
           "systems/formic-acid-dimer/buffer/train-anchored.toml",
           "systems/formic-acid-dimer/buffer/train-anchored-painn-32.toml"]
BATCH_SIZE = 16


def every_pair(neighbors, vectors, r, cutoff):
    """The narrowing switched off: the batch keeps the list of every pair."""
    return neighbors, vectors, r


def batch_step(trainer: Trainer, indices: torch.Tensor) -> float:
    """Seconds for one training step on the frames ``indices`` (no optimizer update)."""
    train = trainer.tensors["train"]
    batch = {key: value[indices] for key, value in train.items() if key not in SHARED_TENSORS}
    start = time.perf_counter()
    outputs = buffer_frame_outputs(trainer.model, train["species"], batch["positions"], batch["mm_positions"],
                                   train["buffer_species"], batch["mm_mask"], float(trainer.data.total_charge))
    loss(outputs, batch, trainer.weights, trainer.coupling).backward()
    trainer.model.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def measure(config_path: str, n_batches: int, folder: Path) -> dict:
    config = load_training_config(ROOT / config_path)
    trainer = Trainer(dataclasses.replace(config, output=folder / Path(config_path).stem), progress=False)
    trainer._prepare()
    generator = torch.Generator().manual_seed(0)
    n_train = len(trainer.tensors["train"]["positions"])
    batches = [torch.randperm(n_train, generator=generator)[:BATCH_SIZE] for _ in range(n_batches)]
    narrowing = physnet.member_pairs_within
    seconds = {"own pairs": [], "every pair": []}
    try:
        for k, indices in enumerate(batches):  # alternate which comes first
            order = ["own pairs", "every pair"] if k % 2 == 0 else ["every pair", "own pairs"]
            for name in order:
                physnet.member_pairs_within = narrowing if name == "own pairs" else every_pair
                seconds[name].append(batch_step(trainer, indices))
    finally:
        physnet.member_pairs_within = narrowing
    ms = {name: 1000 * statistics.median(values) for name, values in seconds.items()}
    return {"config": config_path, "family": config.model.family, "options": config.model.options,
            "ms_per_batch": ms, "all_ms": {name: [1000 * s for s in v] for name, v in seconds.items()},
            "speed_up": ms["every pair"] / ms["own pairs"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--output-dir", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(path, args.batches, Path(tmp)) for path in CONFIGS]
    result = {"machine": machine(), "versions": versions(), "batch_size": BATCH_SIZE, "rows": rows}
    text = json.dumps(result, indent=2)
    print(text)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "buffer-batches.json").write_text(text + "\n")
    lines = ["# Buffer training batches: each frame's own pairs against every pair", "",
             f"One training step (forward, forces, loss, backward) of {BATCH_SIZE} frames, torch on one thread, "
             f"median of {args.batches} random batches, the two variants interleaved; "
             f"{result['machine']['cpu_model']}.", "",
             "| configuration | network | ms per batch, own pairs | every pair | speed-up |", "|---|---|---|---|---|"]
    lines += [f"| {r['config']} | {r['family']} {r['options'].get('n_features', '')} | "
              f"{r['ms_per_batch']['own pairs']:.0f} | {r['ms_per_batch']['every pair']:.0f} | {r['speed_up']:.2f} |"
              for r in rows]
    (args.output_dir / "buffer-batches.md").write_text("\n".join(lines + [""]))


if __name__ == "__main__":
    main()
