"""Replica ensembles: many independent runs of one configuration (seeds x temperatures) on Dask.

Each replica is an ordinary checkpointed run (:func:`mlmm.bridge.simulation.run_simulation`) in its own
folder, so an interrupted ensemble loses at most the steps since each replica's last checkpoint, and
running it again skips finished replicas and continues the others. Replicas run on a Dask LocalCluster
of ``workers`` processes by default, or on any Dask scheduler given by address.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from mlmm.bridge.simulation import RunResult, checkpoint_step, run_simulation
from mlmm.config import EnsembleConfig, RunConfig

SUMMARY_FILE = "ensemble.json"


@dataclass(frozen=True)
class Replica:
    """One member of an ensemble: its name (also its folder) and its run configuration."""

    name: str
    temperature_K: float
    seed: int
    config: RunConfig


@dataclass
class EnsembleResult:
    """What :func:`run_ensemble` did.

    Attributes
    ----------
    ran : dict
        Replica name -> RunResult, for the replicas run (or continued) by this call.
    skipped : list of str
        Replicas that had already finished.
    failed : dict
        Replica name -> error message; rerunning the ensemble retries them from their checkpoints.
    """

    ran: dict[str, RunResult] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def replicas(ensemble: EnsembleConfig) -> list[Replica]:
    """Every (temperature, seed) replica, each with the run configuration it runs."""
    members = []
    for temperature in ensemble.temperatures_K:
        for seed in ensemble.seeds:
            name = f"T{temperature:g}K-seed{seed}"
            run = ensemble.run.with_overrides(directory=ensemble.directory / name)
            run = dataclasses.replace(run, md=dataclasses.replace(run.md, seed=seed, temperature_K=temperature))
            members.append(Replica(name, temperature, seed, run))
    return members


def run_replica(config: RunConfig, threads: int) -> RunResult:
    """Run one replica in a Dask worker, with ``threads`` CPU threads for OpenMM and torch."""
    import torch

    torch.set_num_threads(threads)
    return run_simulation(config, progress=False, threads=threads)


def run_ensemble(ensemble: EnsembleConfig, client: Any = None, console: Any = None) -> EnsembleResult:
    """Run the replicas that have not finished; write DIRECTORY/ensemble.json with every replica's state.

    Parameters
    ----------
    ensemble : EnsembleConfig
        From :func:`mlmm.config.load_ensemble`.
    client : distributed.Client, optional
        Where to run; default a client of ``ensemble.scheduler``, or of a LocalCluster of
        ``ensemble.workers`` single-threaded processes made for this call.
    console : rich.console.Console, optional
        Where to report each replica as it finishes (default: nothing is printed).
    """
    from distributed import as_completed

    result = EnsembleResult()
    members = replicas(ensemble)
    pending = []
    for replica in members:
        try:
            done = checkpoint_step(replica.config) >= replica.config.md.steps
        except ValueError as error:
            result.failed[replica.name] = str(error)
            continue
        if done:
            result.skipped.append(replica.name)
        else:
            pending.append(replica)
    if pending:
        with _client(ensemble, client) as dask:
            futures = {dask.submit(run_replica, replica.config, ensemble.threads_per_worker, pure=False): replica
                       for replica in pending}
            for future in as_completed(futures):
                name = futures[future].name
                try:
                    result.ran[name] = future.result()
                except Exception as error:  # one failed replica must not stop the others; reported below
                    result.failed[name] = f"{type(error).__name__}: {error}"
                _report(console, name, result)
                _write_summary(ensemble, members, result)  # current after every replica
    _write_summary(ensemble, members, result)
    return result


@contextlib.contextmanager
def _client(ensemble: EnsembleConfig, client: Any):
    """The given client, a client of the configured scheduler, or a private LocalCluster's."""
    if client is not None:
        yield client
        return
    from distributed import Client, LocalCluster

    if ensemble.scheduler:
        with Client(ensemble.scheduler) as remote:
            yield remote
        return
    with LocalCluster(n_workers=ensemble.workers, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=logging.CRITICAL) as cluster, Client(cluster) as local:
        yield local


def _report(console: Any, name: str, result: EnsembleResult) -> None:
    if console is None:
        return
    if name in result.ran:
        run = result.ran[name]
        console.print(f"{name}: {run.steps} steps ({run.ns_per_day or 0:.2f} ns/day), {run.frames} frames",
                      markup=False)
    else:
        console.print(f"{name}: failed: {result.failed[name]}", markup=False)


def _write_summary(ensemble: EnsembleConfig, members: list[Replica], result: EnsembleResult) -> None:
    """DIRECTORY/ensemble.json: every replica's folder, trajectory, temperature, seed, steps reached and state.

    The rows of replicas of other configurations in the same directory (earlier batches of other seeds)
    are kept, so that each batch's configuration still finds its replicas."""
    rows = []
    for replica in members:
        if replica.name in result.failed:
            state, steps = "failed: " + result.failed[replica.name], None
        else:
            steps = checkpoint_step(replica.config)
            state = "finished" if steps >= replica.config.md.steps else "incomplete"
        rows.append({"name": replica.name, "temperature_K": replica.temperature_K, "seed": replica.seed,
                     "steps": steps, "state": state, "directory": str(replica.config.output.directory),
                     "trajectory": str(replica.config.output.trajectory_path)})
    summary = ensemble.directory / SUMMARY_FILE
    if summary.is_file():
        names = {row["name"] for row in rows}
        rows = [row for row in json.loads(summary.read_text())["replicas"] if row["name"] not in names] + rows
    ensemble.directory.mkdir(parents=True, exist_ok=True)
    summary.write_text(json.dumps({"source": str(ensemble.source), "replicas": rows}, indent=1))
