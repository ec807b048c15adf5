"""Committee-driven active learning: train, explore with the model, label the uncertain frames, repeat.

Each iteration k writes ``iteration-k/`` in the output directory: the committee's
training run (model, metrics, log, learning curve), the explored frames with their
committee force spread, and ``report.json``. Frames whose largest per-atom committee force
spread sigma_F exceeds ``threshold`` are flagged and, if the flagged fraction is still
above ``target_fraction``, labelled with the reference calculator and added to the
training data (``labelled.h5``) for the next iteration. Rerunning resumes: finished
trainings and labels are reused.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np

from mlmm.data.dataset import Dataset, concatenate, load_dataset
from mlmm.data.labelling import label
from mlmm.training.config import TrainingConfig
from mlmm.training.metrics import predict_frames
from mlmm.training.models import rebuild
from mlmm.training.trainer import train

#: An explorer takes the current committee (eager model) and the iteration number and
#: returns unlabelled frames (a Dataset) visited with that model, e.g. by MD.
Explorer = Callable[[object, int], Dataset]


def active_learning(config: TrainingConfig, explore: Explorer, calculator, threshold: float,
                    target_fraction: float = 0.05, max_iterations: int = 5, max_new_frames: int = 200,
                    n_workers: int = 2, progress: bool = True) -> List[Dict]:
    """Run the loop (see the module docstring); return the per-iteration reports.

    Parameters
    ----------
    config : TrainingConfig
        Committee training recipe (``model.options.n_members`` >= 2); its datasets are the
        initial training data. The iterations' runs go to ``config.output / iteration-k``.
    explore : callable
        ``explore(model, iteration) -> Dataset`` of candidate frames.
    calculator : ReferenceCalculator
        Labels the flagged frames.
    threshold : float
        sigma_F (kJ/mol/nm) above which a frame is flagged.
    target_fraction : float
        Stop when the flagged fraction falls below this.
    max_new_frames : int
        Label at most this many flagged frames per iteration (the most uncertain first).
    """
    if config.model.options.get("n_members", 1) < 2 and config.transfer is None:
        raise ValueError("active learning needs a committee: set [model] options.n_members >= 2")
    root = Path(config.output)
    root.mkdir(parents=True, exist_ok=True)
    extra_data = root / "labelled.h5"
    reports = []
    for iteration in range(max_iterations):
        folder = root / f"iteration-{iteration}"
        datasets = list(config.data.datasets) + ([str(extra_data)] if extra_data.exists() else [])
        run_config = dataclasses.replace(config, output=folder,
                                         data=dataclasses.replace(config.data, datasets=datasets))
        metrics = train(run_config, progress=progress)
        committee = rebuild(folder / "model.pt")
        candidates = _explored(folder, lambda: explore(committee, iteration))
        sigma = predict_frames(committee, candidates)["sigma_forces"].max(axis=1)
        flagged = np.flatnonzero(sigma > threshold)
        report = {"iteration": iteration, "training_frames": len(json.loads((folder / "split.json").read_text())
                                                                  ["train"]),
                  "explored_frames": int(candidates.n_frames), "flagged_frames": int(flagged.size),
                  "flagged_fraction": float(flagged.size / max(candidates.n_frames, 1)),
                  "threshold_kj_mol_nm": threshold, "sigma_forces_median": float(np.median(sigma)),
                  "sigma_forces_max": float(sigma.max()), "test_errors": metrics["test"]}
        done = report["flagged_fraction"] < target_fraction
        if not done:
            chosen = flagged[np.argsort(-sigma[flagged])][:max_new_frames]
            new = label(candidates.subset(np.sort(chosen)), folder / "flagged-labelled.h5", calculator,
                        n_workers=n_workers, progress=progress).labelled()
            report["labelled_frames"] = int(new.n_frames)
            _merge(extra_data, new, iteration)
        (folder / "report.json").write_text(json.dumps(report, indent=2))
        reports.append(report)
        if done:
            break
    (root / "reports.json").write_text(json.dumps(reports, indent=2))
    return reports


def _merge(path: Path, new: Dataset, iteration: int) -> None:
    """Add an iteration's labelled frames to the accumulated data, once (the file records which)."""
    merged_before = load_dataset(path) if path.exists() else None
    if merged_before is not None and iteration in merged_before.provenance.get("iterations", []):
        return
    merged = new if merged_before is None else concatenate([merged_before, new])
    previous = [] if merged_before is None else merged_before.provenance.get("iterations", [])
    merged.provenance = dict(new.provenance, iterations=previous + [iteration])
    tmp = path.with_suffix(".partial")
    merged.save(tmp)
    tmp.replace(path)


def _explored(folder: Path, explore: Callable[[], Dataset]) -> Dataset:
    """The iteration's candidate frames, explored once and kept on disk for a resumed run."""
    path = folder / "explored.h5"
    if path.exists():
        return load_dataset(path)
    frames = explore()
    frames.save(path)
    return frames
