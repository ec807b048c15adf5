"""Run an ML/MM simulation from a :class:`mlmm.config.RunConfig`: build, minimise, integrate, report, resume.

The run advances in chunks of ``report_interval`` steps. After each chunk it checks the
energy and coordinates, saves a checkpoint, appends a trajectory frame and a CSV log row,
in that order: an interrupted run loses nothing, and rerunning the same configuration
(``md.steps`` and ``md.platform`` may change) continues from the checkpoint. The checkpoint
is OpenMM's portable XML State (positions, velocities, box, step); the integrator's random
stream is not in it, so a continued run draws new noise (seeded with ``seed + step``).
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as u
import torch

from mlmm.bridge.minimize import minimize_environment
from mlmm.bridge.mixed import create_mixed_system
from mlmm.bridge.run_reports import embedding_module, open_reports, truncate_csv
from mlmm.bridge.trajectory import open_trajectory
from mlmm.config import RunConfig, SystemConfig
from mlmm.embedding.selection import resolve_ml_atoms
from mlmm.potentials.io import read_metadata

CHECKPOINT_FILE = "checkpoint.json"
TOPOLOGY_FILE = "topology.pdb"
LOG_COLUMNS = ("step", "time_ps", "potential_kJ_mol", "kinetic_kJ_mol", "temperature_K", "ns_per_day")
#: Farther from the origin than this (10 micrometres; diffusion covers ~0.1 um per us) atoms have flown apart.
MAX_COORDINATE_NM = 1.0e4
#: A kinetic temperature this many times the thermostat's means the run has blown up. Equilibrium never gets
#: there: even with 6 degrees of freedom the chance per frame is ~1e-10 (chi-square tail).
MAX_TEMPERATURE_FACTOR = 10.0
_KJ = u.kilojoule_per_mole


class SimulationError(RuntimeError):
    """The simulation blew up: NaN or infinite energy or coordinates, or atoms flown apart.

    Attributes
    ----------
    step : int
        The step at which (or, when OpenMM stopped inside a chunk, by which) it happened.
    trajectory : Path
        The trajectory file; it holds the frames written before and is closed and valid.
    """

    def __init__(self, message: str, step: int, trajectory: Path):
        super().__init__(message)
        self.step = step
        self.trajectory = trajectory


@dataclass(frozen=True)
class RunResult:
    """What :func:`run_simulation` did.

    Attributes
    ----------
    trajectory, log, checkpoint, topology : Path
        The output files (``topology`` is a PDB of the starting structure, for DCD readers).
    steps : int
        Steps completed in total, including those of earlier invocations.
    start_step : int
        The step this invocation started from (0 for a fresh run).
    frames : int
        Frames in the trajectory.
    ns_per_day : float or None
        Speed of this invocation's dynamics; None when there was nothing left to run.
    potential_energy : float
        Final potential energy in kJ/mol.
    """

    trajectory: Path
    log: Path
    checkpoint: Path
    topology: Path
    steps: int
    start_step: int
    frames: int
    ns_per_day: Optional[float]
    potential_energy: float


def build_mm_system(config: SystemConfig) -> tuple[app.PDBFile, openmm.System]:
    """Read the PDB and create the pure force-field System described by ``config``."""
    pdb = app.PDBFile(str(config.pdb))
    options: dict[str, Any] = {}
    if config.nonbonded_method != "NoCutoff":
        options["nonbondedCutoff"] = config.cutoff_nm * u.nanometer
    constraints = None if config.constraints == "None" else getattr(app, config.constraints)
    system = app.ForceField(*config.forcefield).createSystem(
        pdb.topology, nonbondedMethod=getattr(app, config.nonbonded_method), constraints=constraints,
        rigidWater=config.rigid_water, **options)
    return pdb, system


def build_simulation(config: RunConfig, seed: Optional[int] = None, threads: Optional[int] = None) -> app.Simulation:
    """The ML/MM Simulation of ``config`` at the PDB positions, one force group per force.

    ``seed`` (default ``config.md.seed``) seeds the Langevin integrator; None means random.
    ``threads`` limits the CPU platform's threads (default: OpenMM's choice, all cores).
    """
    pdb, mm_system = build_mm_system(config.system)
    atoms = config.ml.atoms if isinstance(config.ml.atoms, str) else list(config.ml.atoms)
    system = create_mixed_system(pdb.topology, mm_system, atoms, config.ml.model, config.ml.embedding,
                                 transport=config.ml.transport, cuda_graphs=config.ml.cuda_graphs,
                                 compiled=config.ml.compiled, **config.ml.options)
    if config.restraints:
        system.addForce(restraint_force(config, pdb.topology.getNumAtoms(), mm_system.usesPeriodicBoundaryConditions()))
    if system.getNumForces() <= 32:  # separate groups give the per-force energy breakdown
        for group, force in enumerate(system.getForces()):
            force.setForceGroup(group)
    md = config.md
    integrator = openmm.LangevinMiddleIntegrator(md.temperature_K * u.kelvin, md.friction_per_ps / u.picosecond,
                                                 md.timestep_fs * u.femtosecond)
    seed = md.seed if seed is None else seed
    if seed is not None:
        integrator.setRandomNumberSeed(seed)
    try:
        platform = openmm.Platform.getPlatformByName(md.platform)
    except openmm.OpenMMException:
        available = [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())]
        raise ValueError(f"[md] platform = {md.platform!r} is not available on this machine (available: "
                         f"{available}).") from None
    properties = {"Threads": str(threads)} if threads and md.platform == "CPU" else {}
    simulation = app.Simulation(pdb.topology, system, integrator, platform, properties)
    simulation.context.setPositions(pdb.positions)
    return simulation


def restraint_force(config: RunConfig, n_atoms: int, periodic: bool) -> openmm.CustomBondForce:
    """The [[restraints]] of ``config`` as one flat-bottom CustomBondForce (kJ/mol, nm)."""
    force = openmm.CustomBondForce("step(r - r_max) * 0.5 * k_restraint * (r - r_max)^2")
    force.setName("flat-bottom restraints")
    force.addPerBondParameter("r_max")
    force.addPerBondParameter("k_restraint")
    force.setUsesPeriodicBoundaryConditions(periodic)
    for restraint in config.restraints:
        if max(restraint.atoms) >= n_atoms:
            raise ValueError(f"[[restraints]] atoms = {list(restraint.atoms)}: the system has {n_atoms} atoms "
                             f"(indices 0-{n_atoms - 1}).")
        force.addBond(*restraint.atoms, [restraint.max_distance_nm, restraint.force_constant])
    return force


def energy_breakdown(simulation: app.Simulation) -> dict[str, float]:
    """Potential energy (kJ/mol) of each force group, keyed by the names of its forces."""
    names: dict[int, list[str]] = {}
    for force in simulation.system.getForces():
        if not isinstance(force, openmm.CMMotionRemover):
            names.setdefault(force.getForceGroup(), []).append(force.getName())
    return {" + ".join(forces): simulation.context.getState(getEnergy=True, groups={group})
            .getPotentialEnergy().value_in_unit(_KJ) for group, forces in sorted(names.items())}


def degrees_of_freedom(system: openmm.System) -> int:
    """3 per massive particle, minus constraints, minus 3 when centre-of-mass motion is removed."""
    dof = sum(3 for i in range(system.getNumParticles()) if system.getParticleMass(i) > 0 * u.dalton)
    dof -= system.getNumConstraints()
    if any(isinstance(force, openmm.CMMotionRemover) for force in system.getForces()):
        dof -= 3
    return dof


def _read_checkpoint(config: RunConfig) -> dict[str, Any]:
    """The saved checkpoint, after checking that it belongs to ``config`` and its trajectory exists."""
    path = config.output.directory / CHECKPOINT_FILE
    saved = json.loads(path.read_text())
    changed = _differences(saved["config"], config.identity())
    if changed:
        raise ValueError(f"{config.output.directory} holds a run of a different configuration (changed: "
                         f"{'; '.join(changed)}); choose another [output] directory, or overwrite it (--overwrite) "
                         "to start over.")
    if saved["frames"] > 1 and not config.output.trajectory_path.is_file():
        raise ValueError(f"checkpoint {path} (step {saved['step']}) has no trajectory "
                         f"{config.output.trajectory_path}; restore the file, or overwrite (--overwrite) to start "
                         "over.")
    return saved


def checkpoint_step(config: RunConfig) -> int:
    """The step a run of ``config`` has reached (0 when its directory holds no checkpoint).

    Raises ValueError, like :func:`run_simulation`, when the directory holds a run of another configuration.
    """
    if not (config.output.directory / CHECKPOINT_FILE).is_file():
        return 0
    return int(_read_checkpoint(config)["step"])


def _differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """'[table] key: old -> new' for every setting that differs."""
    return [f"[{table}] {key}: {saved.get(table, {}).get(key)!r} -> {value!r}"
            for table, values in current.items() for key, value in values.items()
            if saved.get(table, {}).get(key) != value]


def _save_checkpoint(path: Path, identity: dict[str, Any], step: int, frames: int, row: list,
                     state: openmm.State) -> None:
    """Write the checkpoint atomically (a partly written file never replaces a good one)."""
    data = {"config": identity, "step": step, "frames": frames, "log_row": row,
            "state": openmm.XmlSerializer.serialize(state)}
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(data))
    os.replace(temporary, path)


def _repair_log(path: Path, step: int, row: list) -> None:
    """Keep the log rows up to the checkpoint's ``step`` and restore its row if it is missing."""
    if truncate_csv(path, step) != step:
        header = [] if path.is_file() and path.stat().st_size else [LOG_COLUMNS]
        with open(path, "a", newline="") as handle:
            csv.writer(handle).writerows([*header, row])


def _frame(simulation: app.Simulation, periodic: bool, velocities: bool) -> openmm.State:
    """The state a trajectory frame is written from (velocities only when the trajectory stores them)."""
    return simulation.context.getState(getPositions=True, getVelocities=velocities, enforcePeriodicBox=periodic)


def _resume(simulation: app.Simulation, config: RunConfig, saved: dict[str, Any], periodic: bool):
    """Restore the checkpointed state; complete the trajectory and log to match it; return the writer."""
    simulation.context.setState(openmm.XmlSerializer.deserialize(saved["state"]))
    writer = open_trajectory(config, simulation.topology, append=config.output.trajectory_path.is_file())
    if writer.frames == saved["frames"] - 1:  # interrupted between checkpoint and frame
        writer.write(_frame(simulation, periodic, config.output.velocities))
    elif writer.frames != saved["frames"]:
        writer.close()
        raise ValueError(f"trajectory {config.output.trajectory_path} has {writer.frames} frames but the checkpoint "
                         f"expects {saved['frames']}; it was changed outside mlmm. Overwrite (--overwrite) to start "
                         "over or use another [output] directory.")
    _repair_log(config.output.log_path, saved["step"], saved["log_row"])
    return writer


def _start(simulation: app.Simulation, config: RunConfig, overwrite: bool):
    """Prepare a fresh run (``overwrite``: delete the previous one, else refuse to clobber a trajectory),
    minimise, draw velocities; return the trajectory writer."""
    out = config.output
    if overwrite:
        for path in (out.directory / CHECKPOINT_FILE, out.trajectory_path, out.log_path):
            path.unlink(missing_ok=True)
    elif out.trajectory_path.is_file():
        writer = open_trajectory(config, simulation.topology, append=True)
        frames = writer.frames
        writer.close()
        if frames:
            raise ValueError(f"{out.trajectory_path} already holds {frames} frames but there is no checkpoint to "
                             "continue from; overwrite it (--overwrite) or choose another [output] directory.")
    if config.md.minimize:
        _minimize(simulation, config)
    simulation.context.setVelocitiesToTemperature(config.md.temperature_K * u.kelvin, *(
        [] if config.md.seed is None else [config.md.seed]))
    state = simulation.context.getState(getPositions=True)
    with open(out.directory / TOPOLOGY_FILE, "w") as handle:
        app.PDBFile.writeFile(simulation.topology, state.getPositions(), handle)
    with open(out.log_path, "w", newline="") as handle:
        csv.writer(handle).writerow(LOG_COLUMNS)
    return open_trajectory(config, simulation.topology, append=False)


def _minimize(simulation: app.Simulation, config: RunConfig) -> None:
    """Local energy minimisation; unless ``minimize_ml_region``, the ML atoms are held at their
    input positions (:func:`~mlmm.bridge.minimize.minimize_environment`)."""
    if config.md.minimize_ml_region:
        simulation.minimizeEnergy(maxIterations=config.md.minimize_max_iterations)
    else:
        minimize_environment(simulation.context, config.ml.atoms, simulation.topology,
                             max_iterations=config.md.minimize_max_iterations)


def _progress(console: Any, enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("[bold]MD"), BarColumn(), MofNCompleteColumn(), TextColumn("steps"),
                    TextColumn("{task.fields[speed]}"), TimeRemainingColumn(), console=console, disable=not enabled)


def _describe(simulation: app.Simulation, config: RunConfig, console: Any, resumed_from: Optional[int]) -> None:
    from rich.table import Table

    system, md = config.system, config.md
    n_ml = len(resolve_ml_atoms(simulation.topology, config.ml.atoms))
    cutoff = "" if system.nonbonded_method == "NoCutoff" else f" {system.cutoff_nm:g} nm"
    console.print(f"[bold]{system.pdb.name}[/]: {simulation.topology.getNumAtoms()} atoms, {n_ml} in the ML region "
                  f"(model {read_metadata(config.ml.model).get('name')!r}, {config.ml.embedding} embedding, "
                  f"{config.ml.transport} transport); {system.nonbonded_method}{cutoff}, constraints "
                  f"{system.constraints}; {md.timestep_fs:g} fs, {md.temperature_K:g} K, platform {md.platform}")
    start = "start" if resumed_from is None else f"step {resumed_from} (resumed from {CHECKPOINT_FILE})"
    table = Table(title=f"Potential energy at the {start}, kJ/mol", title_justify="left")
    table.add_column("force")
    table.add_column("energy", justify="right")
    for name, energy in energy_breakdown(simulation).items():
        table.add_row(name, f"{energy:.2f}")
    for name, value in embedding_breakdown(simulation, config).items():
        table.add_row(f"  {name}", f"{value:.2f}" if isinstance(value, float) else str(value))
    console.print(table)


def embedding_breakdown(simulation: app.Simulation, config: RunConfig) -> dict[str, Any]:
    """For the electrostatic scheme: the parts of the ML force's energy (kJ/mol) and the
    number of MM molecules polarizing the ML region, at the simulation's positions; else empty."""
    if config.ml.embedding != "electrostatic":
        return {}
    state = simulation.context.getState(getPositions=True)
    positions = torch.as_tensor(state.getPositions(asNumpy=True).value_in_unit(u.nanometer))
    box = None
    if simulation.system.usesPeriodicBoundaryConditions():
        box = torch.as_tensor(state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(u.nanometer))
    with torch.no_grad():
        parts = embedding_module(simulation, config).report(positions, box)
    return {"ML in vacuum (NN)": float(parts["vacuum_energy"]),
            "ML-MM static (ML charges in the MM potential)": float(parts["static_energy"]),
            "ML-MM induced (polarization of the ML region)": float(parts["induced_energy"]),
            "MM molecules polarizing the ML region": int(parts["molecules"])}


def run_simulation(config: RunConfig, progress: bool = True, overwrite: bool = False,
                   console: Any = None, threads: Optional[int] = None) -> RunResult:
    """Run (or continue) the simulation described by ``config``.

    Parameters
    ----------
    config : RunConfig
        From :func:`mlmm.config.load_config`.
    progress : bool
        Print a system summary, the energy of each force at the start, and a progress bar.
    overwrite : bool
        Start over even if the output directory holds a checkpoint of this configuration.
    console : rich.console.Console, optional
        Where to print (default: standard output).
    threads : int, optional
        CPU threads of OpenMM's CPU platform (default: all cores).

    Returns
    -------
    RunResult

    Raises
    ------
    SimulationError
        When the energy or the coordinates become NaN/infinite, atoms fly apart (farther
        than ``MAX_COORDINATE_NM`` from the origin) or the kinetic temperature exceeds
        ``MAX_TEMPERATURE_FACTOR`` times the thermostat's; the trajectory is closed with the
        frames before, and the checkpoint holds the last good state.
    ValueError
        For an output directory holding a different run or a trajectory without checkpoint.
    """
    from rich.console import Console

    console = console or Console()
    out = config.output
    out.directory.mkdir(parents=True, exist_ok=True)
    checkpoint = out.directory / CHECKPOINT_FILE
    saved = _read_checkpoint(config) if checkpoint.is_file() and not overwrite else None
    seed = None if saved is None or config.md.seed is None else (config.md.seed + saved["step"]) % 2**31
    simulation = build_simulation(config, seed, threads)
    periodic = simulation.system.usesPeriodicBoundaryConditions()
    writer = _resume(simulation, config, saved, periodic) if saved else _start(simulation, config, overwrite)
    start_step = simulation.currentStep
    try:
        reports = open_reports(simulation, config, start_step if saved else None)
    except Exception:
        writer.close()
        raise
    progress = progress and start_step < config.md.steps
    if progress:
        _describe(simulation, config, console, start_step if saved else None)
    identity, dof = config.identity(), degrees_of_freedom(simulation.system)
    interval, timestep_ps, total = config.md.report_interval, config.md.timestep_fs * 1e-3, config.md.steps
    step, energy = start_step, math.nan
    with contextlib.ExitStack() as closing, open(out.log_path, "a", newline="") as log, \
            _progress(console, progress) as bar:
        closing.callback(writer.close)
        for report in reports:
            closing.callback(report.close)
        task = bar.add_task("md", total=max(total, step), completed=step, speed="")
        began = time.perf_counter()
        while step < total:
            target = min((step // interval + 1) * interval, total)
            chunk_began = time.perf_counter()
            try:
                simulation.step(target - step)
                state = simulation.context.getState(getPositions=True, getVelocities=True, getEnergy=True,
                                                    getParameters=True)
            except openmm.OpenMMException as error:  # OpenMM's own NaN checks (e.g. CPU PME)
                raise _blew_up(f"OpenMM stopped ({error})", target, step, out.trajectory_path, writer) from None
            energy = state.getPotentialEnergy().value_in_unit(_KJ)
            speed = _ns_per_day(target - step, timestep_ps, time.perf_counter() - chunk_began)
            row = _log_row(target, state, dof, speed)
            reason = _unphysical(energy, state.getPositions(asNumpy=True).value_in_unit(u.nanometer), row[4],
                                 config.md.temperature_K)
            if reason:
                raise _blew_up(reason, target, step, out.trajectory_path, writer)
            _save_checkpoint(checkpoint, identity, target, writer.frames + 1, row, state)
            writer.write(_frame(simulation, periodic, out.velocities) if periodic else state)
            csv.writer(log).writerow(row)
            log.flush()
            for report in reports:
                report.report(simulation, state)
            step = target
            bar.update(task, completed=step, speed=f"{speed:.2f} ns/day")
        elapsed = time.perf_counter() - began
    if math.isnan(energy):
        energy = simulation.context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(_KJ)
    ran = step - start_step
    return RunResult(trajectory=out.trajectory_path, log=out.log_path, checkpoint=checkpoint,
                     topology=out.directory / TOPOLOGY_FILE, steps=step, start_step=start_step, frames=writer.frames,
                     ns_per_day=_ns_per_day(ran, timestep_ps, elapsed) if ran else None, potential_energy=energy)


def _ns_per_day(steps: int, timestep_ps: float, seconds: float) -> float:
    return steps * timestep_ps * 1e-3 / (seconds / 86400.0)


def _log_row(step: int, state: openmm.State, dof: int, speed: float) -> list:
    """A CSV log row (see LOG_COLUMNS); temperature from the kinetic energy and ``dof``."""
    kinetic = state.getKineticEnergy().value_in_unit(_KJ)
    temperature = 2 * kinetic / (dof * u.MOLAR_GAS_CONSTANT_R.value_in_unit(_KJ / u.kelvin))
    return [step, round(state.getTime().value_in_unit(u.picosecond), 6), state.getPotentialEnergy().value_in_unit(_KJ),
            kinetic, temperature, round(speed, 3)]


def _unphysical(energy: float, positions: np.ndarray, temperature: float, thermostat: float) -> str:
    """Why the state cannot be right (NaN/inf energy or coordinates, atoms flown apart, a kinetic
    temperature far above the thermostat's), or ''."""
    if not math.isfinite(energy):
        return f"the potential energy is {energy} kJ/mol"
    if temperature > MAX_TEMPERATURE_FACTOR * thermostat:
        return (f"the kinetic temperature is {temperature:.4g} K, over {MAX_TEMPERATURE_FACTOR:g} times the "
                f"thermostat's {thermostat:g} K (potential energy {energy:.6g} kJ/mol): energy was released that the "
                "potential should not hold, typically a network driven outside its training data")
    largest = float(np.abs(positions).max())
    if not largest <= MAX_COORDINATE_NM:  # also catches NaN
        return f"a coordinate is {largest:.3g} nm from the origin (limit {MAX_COORDINATE_NM:g} nm)"
    return ""


def _blew_up(reason: str, step: int, last_good: int, trajectory: Path, writer) -> SimulationError:
    """Close the trajectory (keeping its frames) and describe the failure."""
    writer.close()
    where = f"between step {last_good} and {step}" if reason.startswith("OpenMM") else f"at step {step}"
    frames = f"{writer.frames} frame{'s' * (writer.frames != 1)}"
    kept = (f"{trajectory} keeps the {frames} written before (up to step {last_good}); "
            f"{CHECKPOINT_FILE} beside it holds the last good state" if writer.frames
            else f"No frame was written, so there is no {trajectory.name}")
    return SimulationError(f"the simulation blew up {where}: {reason}. {kept}. Use a smaller [md] timestep_fs, "
                           "minimize first, or check the model in this geometry.", step, trajectory)
