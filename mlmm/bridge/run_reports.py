"""The CSV reports `mlmm run` writes with every trajectory frame besides its log ([output] ``embedding`` and
``uncertainty``), kept in step with the checkpoint: on resume each file is cut back to the checkpoint's step
and the row of that step, if the interruption came before it was written, is computed from the restored
state, so a resumed run neither loses nor repeats a row."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Optional

import openmm.app as app
import torch

from mlmm.bridge.mixed import plan_embedding
from mlmm.bridge.reporters import EmbeddingReporter, UncertaintyReporter
from mlmm.config import RunConfig
from mlmm.embedding.selection import resolve_ml_atoms
from mlmm.potentials.io import load_potential


def truncate_csv(path: Path, step: int) -> Optional[int]:
    """Keep the header and the rows of the CSV file ``path`` (first column: the step) up to ``step``, and
    drop a row cut short by an interruption (fewer fields than the header).

    Returns the step of the last row kept, or None when none is left or the file does not exist.
    """
    if not path.is_file():
        return None
    with open(path, newline="") as handle:
        rows = [row for row in csv.reader(handle) if row]
    header = rows[:1] if rows and rows[0][0] == "step" else []
    width = len(header[0]) if header else 0
    kept = [row for row in rows[len(header):] if len(row) >= width and int(row[0]) <= step]
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows(header + kept)
    return int(kept[-1][0]) if kept else None


def embedding_module(simulation: app.Simulation, config: RunConfig) -> torch.nn.Module:
    """The embedding module of ``config``'s ML force, planned anew for ``simulation``'s topology; its
    ``report(positions, boxvectors)`` gives the energy parts, ML charges and dipole (electrostatic, buffer)."""
    from mlmm.bridge.simulation import build_mm_system

    _, mm_system = build_mm_system(config.system)
    atoms = config.ml.atoms if isinstance(config.ml.atoms, str) else list(config.ml.atoms)
    return plan_embedding(simulation.topology, mm_system, atoms, config.ml.model, config.ml.embedding,
                          **config.ml.options).module


def open_reports(simulation: app.Simulation, config: RunConfig, resumed_step: Optional[int]) -> list:
    """The reporters of ``config``'s [output] ``embedding`` and ``uncertainty`` files, each written with
    ``reporter.report(simulation, state)`` after a frame. ``resumed_step``: the checkpoint's step of a
    resumed run (its state already in ``simulation``), or None for a fresh run (the files are overwritten)."""
    out, interval = config.output, config.md.report_interval
    resumed = resumed_step is not None
    last_rows, reporters = [], []
    if out.embedding:
        path = out.directory / out.embedding
        last_rows.append(truncate_csv(path, resumed_step) if resumed else None)
        reporters.append(EmbeddingReporter(path, interval, embedding_module(simulation, config), append=resumed,
                                           dipole_derivative=out.dipole_derivative))
    if out.uncertainty:
        path = out.directory / out.uncertainty
        last_rows.append(truncate_csv(path, resumed_step) if resumed else None)
        atoms = config.ml.atoms if isinstance(config.ml.atoms, str) else list(config.ml.atoms)
        reporters.append(UncertaintyReporter(path, interval, load_potential(config.ml.model)[0],
                                             resolve_ml_atoms(simulation.topology, atoms), append=resumed))
    if resumed and any(last != resumed_step for last in last_rows):
        state = simulation.context.getState(getPositions=True, getVelocities=True)
        for reporter, last in zip(reporters, last_rows):
            if last != resumed_step:
                reporter.report(simulation, state)
    return reporters
