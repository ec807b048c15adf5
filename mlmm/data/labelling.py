"""Label frames with a reference calculator: parallel worker processes, incremental writes, resume.

:func:`label` copies the frames into an output dataset file whose labels start as NaN with
status "pending", then computes the pending frames in ``n_workers`` processes. Each result
is written and flushed as it arrives, so an interrupted run loses at most the frames in
flight; running the same command again labels only what is still pending. Frames whose
calculation fails (for example an SCF that does not converge) are marked "failed" with
the reason and do not stop the run.
"""

from __future__ import annotations

import concurrent.futures as futures
import contextlib
import datetime
import hashlib
import multiprocessing
import os
from pathlib import Path
from typing import Optional

import h5py
import numpy as np

from mlmm.data.dataset import FAILED, LABELLED, PENDING, Dataset, load_dataset, write_field, write_header

#: Dataset field <- key of a calculator result (every calculator returns the first four).
_RESULT_KEYS = {"energies": "energy", "forces": "forces", "charges": "charges", "dipoles": "dipole",
                "mm_forces": "mm_forces", "mm_charge_changes": "mm_charge_changes"}
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def _fingerprint(dataset: Dataset) -> str:
    """Hash of the geometries, species and MM environment: what a resumed run must share."""
    digest = hashlib.sha256()
    for array in (dataset.species, dataset.positions, dataset.mm_positions, dataset.mm_charges):
        if array is not None:
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


@contextlib.contextmanager
def _single_threaded_workers():
    """One thread per worker: the processes already use the cores (xtb's OpenMP threads in
    several workers otherwise oversubscribe the cores and run ten times slower). OpenMP and
    BLAS read these variables when they load, which in a spawned worker happens while it
    re-imports the parent's modules, before any pool initializer; so they are set in this
    process's environment, which the workers inherit, while the pool lives."""
    saved = {variable: os.environ.get(variable) for variable in _THREAD_VARIABLES}
    os.environ.update({variable: "1" for variable in _THREAD_VARIABLES})
    try:
        yield
    finally:
        for variable, value in saved.items():
            if value is None:
                os.environ.pop(variable, None)
            else:
                os.environ[variable] = value


def _compute(calculator, species, positions, total_charge, multiplicity, mm_positions, mm_charges, mm_species):
    """Run one calculation in a worker; failures come back as an exception object, not a crash."""
    try:
        if getattr(calculator, "uses_mm_species", False):
            return calculator.compute(species, positions, total_charge, multiplicity, mm_positions, mm_charges,
                                      mm_species)
        return calculator.compute(species, positions, total_charge, multiplicity, mm_positions, mm_charges)
    except Exception as error:  # recorded per frame; the run goes on
        return RuntimeError(f"{type(error).__name__}: {error}")


def _label_fields(dataset: Dataset, calculator) -> list:
    fields = ["energies", "forces", "charges", "dipoles"]
    if dataset.has_environment and calculator.provides_mm_forces:
        fields.append("mm_forces")
    if dataset.has_environment and getattr(calculator, "provides_mm_charge_changes", False):
        fields.append("mm_charge_changes")
    return fields


def _create_output(dataset: Dataset, calculator, path: Path) -> None:
    provenance = dict(dataset.provenance)
    provenance.update(level_of_theory=calculator.level_of_theory, program=calculator.program,
                      program_version=calculator.program_version, calculator=calculator.settings(),
                      labelled=datetime.date.today().isoformat(), fingerprint=_fingerprint(dataset))
    frames = dataset.subset(np.arange(dataset.n_frames))
    frames.provenance = provenance
    f_, n = dataset.n_frames, dataset.n_atoms
    shapes = {"energies": (f_,), "forces": (f_, n, 3), "charges": (f_, n), "dipoles": (f_, 3)}
    if dataset.has_environment:
        shapes["mm_forces"] = dataset.mm_positions.shape
        shapes["mm_charge_changes"] = dataset.mm_positions.shape[:2]
    for name in _label_fields(dataset, calculator):
        setattr(frames, name, np.full(shapes[name], np.nan))
    frames.status = np.full(f_, PENDING, dtype=np.int8)
    frames.label_error = np.full(f_, "", dtype=object)
    tmp = path.with_suffix(path.suffix + ".partial")
    with h5py.File(tmp, "w") as f:
        write_header(f, frames)
        for name in frames.frame_fields():
            write_field(f, name, getattr(frames, name))
    tmp.replace(path)  # the output exists only once it is complete


def _check_resumable(path: Path, dataset: Dataset, calculator) -> None:
    existing = load_dataset(path).provenance
    if existing.get("fingerprint") != _fingerprint(dataset):
        raise ValueError(f"{path} holds labels of different frames; choose another output file or delete it")
    if existing.get("calculator") != calculator.settings() or existing.get("program") != calculator.program:
        raise ValueError(f"{path} was labelled with {existing.get('program')} {existing.get('calculator')}, "
                         f"not {calculator.program} {calculator.settings()}; use another output file")


def label(dataset: Dataset, output, calculator, n_workers: int = 2, retry_failed: bool = False,
          progress: bool = True, max_frames: Optional[int] = None) -> Dataset:
    """Label ``dataset`` with ``calculator`` into the dataset file ``output`` and return it.

    Parameters
    ----------
    dataset : Dataset
        Frames to label (existing labels are ignored).
    output : path
        Output dataset file. If it exists and holds these frames, labelling resumes.
    calculator : mlmm.data.calculators.ReferenceCalculator
        The reference method; it is pickled into each worker.
    n_workers : int
        Worker processes (each single-threaded). 0 computes in this process.
    retry_failed : bool
        Also recompute frames that failed before.
    progress : bool
        Show a progress bar.
    max_frames : int, optional
        Stop after this many new frames (the rest stay pending for a later run).
    """
    output = Path(output)
    if output.exists():
        _check_resumable(output, dataset, calculator)
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        _create_output(dataset, calculator, output)
    with h5py.File(output, "r+") as f:
        status = f["status"][()]
        todo = np.flatnonzero((status == PENDING) | ((status == FAILED) & retry_failed))
        if max_frames is not None:
            todo = todo[:max_frames]
        fields = [name for name in _label_fields(dataset, calculator) if name in f]
        _run(f, dataset, calculator, todo, fields, n_workers, progress)
    return load_dataset(output)


def _arguments(dataset: Dataset, k: int):
    mm_positions = mm_charges = mm_species = None
    if dataset.has_environment:
        real = dataset.mm_mask[k]
        mm_positions, mm_charges = dataset.mm_positions[k][real], dataset.mm_charges[k][real]
        if dataset.mm_species is not None:
            mm_species = dataset.mm_species[k][real]
    return (dataset.species, dataset.positions[k], dataset.total_charge, dataset.multiplicity,
            mm_positions, mm_charges, mm_species)


def _store(f: h5py.File, dataset: Dataset, k: int, result, fields) -> None:
    """Write frame k's result (or its failure) and flush, so an interruption keeps it."""
    missing = [] if isinstance(result, Exception) else \
        [_RESULT_KEYS[name] for name in fields if result.get(_RESULT_KEYS[name]) is None]
    if isinstance(result, Exception) or missing:
        f["status"][k] = FAILED
        f["label_error"][k] = str(result) if isinstance(result, Exception) else \
            f"the calculator returned no {', '.join(missing)}"
    else:
        for name in fields:
            value = result[_RESULT_KEYS[name]]
            if name.startswith("mm_"):
                padded = np.zeros(f[name].shape[1:])
                padded[dataset.mm_mask[k]] = value
                value = padded
            f[name][k] = value
        f["status"][k] = LABELLED
        f["label_error"][k] = ""
    f.flush()


def _run(f, dataset, calculator, todo, fields, n_workers, progress) -> None:
    from rich.progress import Progress

    with Progress(disable=not progress, transient=False) as bar:
        task = bar.add_task(f"{calculator.level_of_theory} labels", total=len(todo))
        if n_workers == 0:
            for k in todo:
                _store(f, dataset, k, _compute(calculator, *_arguments(dataset, k)), fields)
                bar.advance(task)
            return
        context = multiprocessing.get_context("spawn")  # no forked copies of torch/OpenMP state
        with _single_threaded_workers(), futures.ProcessPoolExecutor(n_workers, mp_context=context) as pool:
            pending = {pool.submit(_compute, calculator, *_arguments(dataset, k)): k for k in todo}
            try:
                for done in futures.as_completed(pending):
                    _store(f, dataset, pending[done], done.result(), fields)
                    bar.advance(task)
            except BaseException:
                for future in pending:
                    future.cancel()
                raise
