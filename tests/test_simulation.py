"""Run configs and the simulation runner: validation, NaN guard, checkpoint/resume."""

from __future__ import annotations

import csv
import dataclasses
import json
import re

import mdtraj
import numpy as np
import openmm
import openmm.unit as unit
import pytest
import torch

import mlmm
from conftest import DIMER_DIR, SYSTEM_DIR, WATER_DIR
from mlmm.bridge import simulation as runner
from mlmm.bridge.simulation import SimulationError, run_simulation
from mlmm.bridge.trajectory import DCDWriter
from mlmm.config import load_config
from mlmm.embedding.selection import resolve_ml_atoms

MODEL = SYSTEM_DIR / "ff-potential.pt"


def write_config(tmp_path, model=MODEL, trajectory="trajectory.dcd", velocities=False, **md) -> "mlmm.config.RunConfig":
    """A run of the solute alone (22 atoms, vacuum, all ML) written as TOML in ``tmp_path``."""
    settings = {"steps": 30, "timestep_fs": 1.0, "temperature_K": 300.0, "report_interval": 10, "seed": 7,
                "minimize": False, **md}
    lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in settings.items())
    path = tmp_path / "run.toml"
    path.write_text(f"""
[system]
pdb = "{SYSTEM_DIR / 'alanine-dipeptide.pdb'}"
nonbonded_method = "NoCutoff"
[ml]
atoms = "all"
model = "{model}"
[md]
{lines}
[output]
directory = "{tmp_path / 'out'}"
trajectory = "{trajectory}"
velocities = {json.dumps(velocities)}
""")
    return path


def load_frames(path) -> mdtraj.Trajectory:
    return mdtraj.load(str(path), top=str(SYSTEM_DIR / "alanine-dipeptide.pdb"))


def log_steps(path) -> list[int]:
    with open(path, newline="") as handle:
        return [int(row["step"]) for row in csv.DictReader(handle)]


@pytest.mark.parametrize("edit, named", [
    (lambda t: t.replace("steps = 30", "stepz = 30"), "stepz"),
    (lambda t: t.replace("steps = 30", ""), "[md] steps"),
    (lambda t: t.replace("[ml]", "[mll]"), "mll"),
    (lambda t: t.replace('nonbonded_method = "NoCutoff"', 'nonbonded_method = "Ewald"'), "nonbonded_method"),
    (lambda t: t.replace("timestep_fs = 1.0", "timestep_fs = -1.0"), "timestep_fs"),
    (lambda t: t.replace("report_interval = 10", 'report_interval = "10"'), "report_interval"),
    (lambda t: t.replace(str(MODEL), "missing.pt"), "[ml] model"),
    (lambda t: t.replace('"trajectory.dcd"', '"trajectory.xyz"'), "trajectory"),
])
def test_config_errors_name_the_key(tmp_path, edit, named):
    path = write_config(tmp_path)
    path.write_text(edit(path.read_text()))
    with pytest.raises(ValueError, match=named.replace("[", r"\[").replace("]", r"\]")):
        load_config(path)


def test_config_defaults_and_relative_paths(tmp_path):
    config = load_config(SYSTEM_DIR / "demo.toml")
    assert config.system.pdb == SYSTEM_DIR / "alanine-dipeptide-tip3p.pdb"
    assert config.ml.model == MODEL
    assert config.md.platform == "CPU" and config.system.rigid_water
    assert config.with_overrides(steps=5).md.steps == 5
    with pytest.raises(ValueError, match="steps"):
        config.with_overrides(steps=0)


class NaNAfter(torch.nn.Module):
    """Wraps a potential and returns NaN from the ``limit``-th call on (counts calls in a buffer)."""

    def __init__(self, potential: torch.nn.Module, limit: int):
        super().__init__()
        self.potential = potential
        self.limit = limit
        self.register_buffer("calls", torch.zeros(1, dtype=torch.int64))  # 1-d: io.content_hash rejects 0-d

    def forward(self, species: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        self.calls.add_(1)
        energy = self.potential(species, positions)
        return torch.where(self.calls[0] >= self.limit, torch.full_like(energy, float("nan")), energy)


def test_nan_guard_names_the_step_and_keeps_the_frames(tmp_path):
    inner, _ = mlmm.load_potential(MODEL)
    model = mlmm.save_potential(NaNAfter(inner, limit=35), tmp_path / "nan.pt", supported_elements=[1, 6, 7, 8])
    config = load_config(write_config(tmp_path, model=model, steps=100))
    with pytest.raises(SimulationError, match=r"step \d+") as caught:
        run_simulation(config, progress=False)
    error = caught.value
    assert error.trajectory == config.output.trajectory_path and "trajectory.dcd" in str(error)
    assert 0 < error.step < 100
    frames = load_frames(config.output.trajectory_path)
    assert len(frames) == error.step // 10 - 1 >= 2  # every chunk before the failing one
    assert np.isfinite(frames.xyz).all()
    assert log_steps(config.output.log_path) == [10 * (i + 1) for i in range(len(frames))]


class HoleAfter(torch.nn.Module):
    """Wraps a potential and opens a deep, steep hole from the ``limit``-th call on: a spurious minimum
    2 nm wide in which atom 0 gains 10^5 kJ/mol, as a network outside its training data can have."""

    def __init__(self, potential: torch.nn.Module, limit: int):
        super().__init__()
        self.potential = potential
        self.limit = limit
        self.register_buffer("calls", torch.zeros(1, dtype=torch.int64))

    def forward(self, species: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        self.calls.add_(1)
        energy = self.potential(species, positions)
        hole = -5.0e4 * positions[0, 0]  # a force of 5e4 kJ/mol/nm on atom 0 along x
        return torch.where(self.calls[0] >= self.limit, energy + hole, energy)


def test_a_run_heating_up_far_beyond_its_thermostat_is_stopped(tmp_path):
    inner, _ = mlmm.load_potential(MODEL)
    model = mlmm.save_potential(HoleAfter(inner, limit=25), tmp_path / "hole.pt", supported_elements=[1, 6, 7, 8])
    config = load_config(write_config(tmp_path, model=model, steps=100, report_interval=5))
    with pytest.raises(SimulationError, match=r"kinetic temperature is .* over 10 times the thermostat's 300 K"):
        run_simulation(config, progress=False)
    positions = load_frames(config.output.trajectory_path).xyz
    assert np.abs(positions).max() < 1.0  # no NaN, nothing flown apart: only the temperature shows it
    # without the hole the same run stays near its thermostat
    assert run_simulation(load_config(write_config(tmp_path, steps=100, report_interval=5)),
                          progress=False, overwrite=True).steps == 100


def test_absurd_timestep_stops_with_the_frames_before(tmp_path):
    """Atoms flying apart (or OpenMM's own NaN check inside a chunk) raise SimulationError too."""
    config = load_config(write_config(tmp_path, steps=200, timestep_fs=5.0, report_interval=1))
    with pytest.raises(SimulationError, match=r"step \d+") as caught:
        run_simulation(config, progress=False)
    frames = load_frames(config.output.trajectory_path)
    assert f"keeps the {len(frames)} frame" in str(caught.value) and caught.value.step == len(frames) + 1
    assert np.isfinite(frames.xyz).all()


def test_resume_appends_without_duplicates(tmp_path):
    config = load_config(write_config(tmp_path))
    first = run_simulation(config, progress=False)
    assert (first.steps, first.frames, first.start_step) == (30, 3, 0)
    before = load_frames(first.trajectory).xyz
    second = run_simulation(config.with_overrides(steps=60), progress=False)
    assert (second.steps, second.frames, second.start_step) == (60, 6, 30)
    trajectory = load_frames(second.trajectory)
    assert len(trajectory) == 6
    np.testing.assert_array_equal(trajectory.xyz[:3], before)  # earlier frames untouched
    moved = [np.abs(trajectory.xyz[i] - trajectory.xyz[i - 1]).max() for i in range(1, 6)]
    assert min(moved) > 1e-4  # no frame repeated
    assert log_steps(config.output.log_path) == [10, 20, 30, 40, 50, 60]
    again = run_simulation(config.with_overrides(steps=60), progress=False)
    assert again.ns_per_day is None and again.frames == 6


def test_resume_after_interruption_between_checkpoint_and_frame(tmp_path, monkeypatch):
    config = load_config(write_config(tmp_path, steps=40))
    original = DCDWriter.write

    def interrupted(self, state):
        if self.frames == 1:
            raise KeyboardInterrupt
        original(self, state)

    monkeypatch.setattr(DCDWriter, "write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_simulation(config, progress=False)
    monkeypatch.setattr(DCDWriter, "write", original)
    assert log_steps(config.output.log_path) == [10]
    result = run_simulation(config, progress=False)
    assert (result.start_step, result.frames) == (20, 4)
    assert len(load_frames(result.trajectory)) == 4
    assert log_steps(config.output.log_path) == [10, 20, 30, 40]


def test_other_config_in_same_directory_is_refused(tmp_path):
    run_simulation(load_config(write_config(tmp_path, steps=10)), progress=False)
    changed = load_config(write_config(tmp_path, steps=10, temperature_K=310.0))
    with pytest.raises(ValueError, match="different configuration"):
        run_simulation(changed, progress=False)
    assert run_simulation(changed, progress=False, overwrite=True).frames == 1


def test_hdf5_trajectory(tmp_path):
    pytest.importorskip("tables")
    config = load_config(write_config(tmp_path, trajectory="trajectory.h5", steps=20))
    run_simulation(config, progress=False)
    result = run_simulation(config.with_overrides(steps=40), progress=False)
    trajectory = mdtraj.load(str(result.trajectory))
    assert len(trajectory) == 4
    np.testing.assert_allclose(trajectory.time, [0.01, 0.02, 0.03, 0.04])


@pytest.mark.parametrize("minimize_ml_region", [False, True])
def test_minimisation_holds_the_ml_region_unless_asked(minimize_ml_region):
    """The demo system (formic acid dimer, trained model, 2629 atoms): by default the minimiser
    moves only the MM atoms; ``minimize_ml_region`` lets it move the ML atoms too. The masses
    zeroed to hold the ML atoms are restored afterwards."""
    from mlmm.cli import DEMO_CONFIG

    config = load_config(DEMO_CONFIG)
    config = dataclasses.replace(config, md=dataclasses.replace(
        config.md, minimize_max_iterations=10, minimize_ml_region=minimize_ml_region))
    simulation = runner.build_simulation(config, seed=1)
    masses = [simulation.system.getParticleMass(i) for i in range(simulation.system.getNumParticles())]
    before = simulation.context.getState(getPositions=True, getEnergy=True)
    runner._minimize(simulation, config)
    after = simulation.context.getState(getPositions=True, getEnergy=True)
    moved = np.abs(after.getPositions(asNumpy=True).value_in_unit(unit.nanometer) -
                   before.getPositions(asNumpy=True).value_in_unit(unit.nanometer)).max(axis=1)
    ml = np.array(resolve_ml_atoms(simulation.topology, config.ml.atoms))
    mm = np.setdiff1d(np.arange(len(moved)), ml)
    assert after.getPotentialEnergy() < before.getPotentialEnergy()
    assert moved[mm].max() > 1e-3
    assert (moved[ml].max() > 1e-4) == minimize_ml_region
    assert [simulation.system.getParticleMass(i) for i in range(len(masses))] == masses


def test_minimize_environment_relaxes_a_new_box_around_the_held_ml_region():
    """mlmm.minimize_environment in a user's script: the formic acid dimer solvated anew by OpenMM's
    Modeller (clashes included), minimised with the dimer held. The dimer keeps its positions
    exactly, the energy falls, the masses are restored and MD then starts from an intact dimer:
    its network energy stays within 100 kJ/mol of the minimised state's over 100 steps (free, the
    minimiser can carry the network thousands of kJ/mol below its minimum: minimize_environment)."""
    import openmm.app as app

    pdb = app.PDBFile(str(DIMER_DIR / "formic-acid-dimer.pdb"))
    forcefield = app.ForceField(str(DIMER_DIR / "formic-acid.xml"), "amber14/tip3p.xml")
    modeller = app.Modeller(pdb.topology, pdb.positions)
    modeller.addSolvent(forcefield, model="tip3p", boxSize=openmm.Vec3(2.2, 2.2, 2.2) * unit.nanometer)
    mm_system = forcefield.createSystem(modeller.topology, nonbondedMethod=app.PME,
                                        nonbondedCutoff=0.9 * unit.nanometer, constraints=app.HBonds)
    system = mlmm.create_mixed_system(modeller.topology, mm_system, "resname FMA", str(DIMER_DIR / "model" / "model.pt"),
                                      force_group=1)
    masses = [system.getParticleMass(i) for i in range(system.getNumParticles())]
    integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond, 0.5 * unit.femtosecond)
    integrator.setRandomNumberSeed(1)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("CPU"), {"Threads": "1"})
    context.setPositions(modeller.positions)
    before = context.getState(getPositions=True, getEnergy=True)
    with pytest.raises(ValueError, match="topology="):
        mlmm.minimize_environment(context, "resname FMA")
    mlmm.minimize_environment(context, "resname FMA", modeller.topology, max_iterations=30)
    after = context.getState(getPositions=True, getEnergy=True)
    dimer = resolve_ml_atoms(modeller.topology, "resname FMA")
    start = before.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    relaxed = after.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    assert np.array_equal(relaxed[dimer], start[dimer])
    assert np.abs(relaxed - start).max() > 1e-3
    assert after.getPotentialEnergy() < before.getPotentialEnergy()
    assert [system.getParticleMass(i) for i in range(len(masses))] == masses

    def network_energy():
        return context.getState(getEnergy=True, groups={1}).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)

    minimised = network_energy()
    context.setVelocitiesToTemperature(300 * unit.kelvin, 1)
    energies = []
    for _ in range(10):
        integrator.step(10)
        energies.append(network_energy())
    assert np.abs(np.array(energies) - minimised).max() < 100.0, energies


def test_flat_bottom_restraints_act_only_beyond_their_distance(tmp_path):
    path = write_config(tmp_path)
    text = path.read_text()
    path.write_text(text + "\n[[restraints]]\natoms = [0, 10]\nmax_distance_nm = 0.2\nforce_constant = 5000.0\n"
                    "[[restraints]]\natoms = [1, 4]\nmax_distance_nm = 5.0\n")
    config = load_config(path)
    simulation = runner.build_simulation(config, seed=1)
    positions = simulation.context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    stretched = np.linalg.norm(positions[10] - positions[0])
    assert stretched > 0.2  # the first restraint is pulled, the second is slack
    energies = runner.energy_breakdown(simulation)
    assert energies["flat-bottom restraints"] == pytest.approx(0.5 * 5000.0 * (stretched - 0.2) ** 2, rel=1e-6)
    assert config.identity()["md"]["restraints"][1] == {"atoms": [1, 4], "max_distance_nm": 5.0,
                                                        "force_constant": 10000.0}
    assert "restraints" not in load_config(write_config(tmp_path)).identity()["md"]
    path.write_text(text + "\n[[restraints]]\natoms = [0, 0]\nmax_distance_nm = 0.2\n")
    with pytest.raises(ValueError, match="two different atom indices"):
        load_config(path)
    path.write_text(text + "\n[[restraints]]\natoms = [0, 99]\nmax_distance_nm = 0.2\n")
    with pytest.raises(ValueError, match="the system has 22 atoms"):
        runner.build_simulation(load_config(path))


def test_the_compiled_setting_reaches_create_mixed_system_and_is_not_part_of_the_run_identity(tmp_path):
    """compiled changes how the ML force is computed, not what; the solute's force-field potential
    file records no network recipe, so create_mixed_system refuses to compile it."""
    path = write_config(tmp_path)
    path.write_text(path.read_text().replace('model = "', 'transport = "python"\nmodel = "'))
    eager = load_config(path)
    path.write_text(path.read_text().replace('model = "', 'compiled = true\nmodel = "'))
    compiled = load_config(path)
    assert compiled.ml.compiled and not eager.ml.compiled
    assert compiled.identity() == eager.identity()
    with pytest.raises(ValueError, match="compiled=True rebuilds the network of a model file"):
        runner.build_simulation(compiled, seed=1)


def test_cuda_graphs_setting_reaches_the_force_and_a_run_continues_with_it_changed(tmp_path):
    """cuda_graphs changes how the ML force is computed, not what: like the platform it may change between legs."""
    path = write_config(tmp_path)
    first = runner.run_simulation(load_config(path), progress=False)
    path.write_text(path.read_text().replace('model = "', 'cuda_graphs = true\nmodel = "'))
    config = load_config(path).with_overrides(steps=60)
    assert config.ml.cuda_graphs
    assert '<Property name="useCUDAGraphs" value="true"/>' in openmm.XmlSerializer.serialize(
        runner.build_simulation(config, seed=1).system)
    second = runner.run_simulation(config, progress=False)
    assert (first.steps, second.start_step, second.steps) == (30, 30, 60)


def report_rows(path) -> dict[int, dict[str, float]]:
    """The rows of a run's CSV report by step."""
    with open(path, newline="") as handle:
        return {int(row["step"]): {k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)}


def test_the_embedding_report_continues_a_resumed_run_without_losing_a_row(tmp_path, monkeypatch):
    """The ML water in its TIP3P box, electrostatic embedding: interrupted after the checkpoint of step 4 but
    before that step's report row, the resumed run completes the row from the checkpointed state."""
    from mlmm.bridge.reporters import EmbeddingReporter

    path = tmp_path / "run.toml"
    path.write_text(f"""
[system]
pdb = "{WATER_DIR / 'water-tip3p.pdb'}"
forcefield = ["amber14/tip3p.xml"]
nonbonded_method = "PME"
cutoff_nm = 0.9
[ml]
atoms = "resid 0"
model = "{WATER_DIR / 'embedding' / 'model' / 'model.pt'}"
embedding = "electrostatic"
[md]
steps = 6
timestep_fs = 0.5
temperature_K = 300.0
report_interval = 2
seed = 3
minimize = false
[output]
directory = "{tmp_path / 'out'}"
embedding = "embedding.csv"
dipole_derivative = true
""")
    config = load_config(path)
    original = EmbeddingReporter.report

    def interrupted(self, simulation, state):
        if simulation.currentStep == 4:
            raise KeyboardInterrupt
        original(self, simulation, state)

    monkeypatch.setattr(EmbeddingReporter, "report", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_simulation(config, progress=False)
    monkeypatch.setattr(EmbeddingReporter, "report", original)
    report = config.output.directory / "embedding.csv"
    assert list(report_rows(report)) == [2] and log_steps(config.output.log_path) == [2, 4]
    saved = json.loads((config.output.directory / runner.CHECKPOINT_FILE).read_text())
    state = openmm.XmlSerializer.deserialize(saved["state"])
    pdb = openmm.app.PDBFile(str(WATER_DIR / "water-tip3p.pdb"))
    _, mm_system = runner.build_mm_system(config.system)
    plan = mlmm.plan_embedding(pdb.topology, mm_system, "resid 0", config.ml.model, "electrostatic")
    x = torch.as_tensor(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer))
    box = torch.as_tensor(state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer))
    with torch.no_grad():
        expected = plan.module.report(x, box)

    result = run_simulation(config, progress=False)
    assert (result.start_step, result.steps) == (4, 6)
    rows = report_rows(report)
    assert list(rows) == [2, 4, 6]
    assert rows[4]["energy_kJ_per_mol"] == pytest.approx(float(expected["energy"]), abs=1e-8)
    assert [rows[4][f"q{i}_e"] for i in range(3)] == pytest.approx(expected["charges"].tolist(), abs=1e-10)
    assert all(abs(rows[step]["dipole_derivative_x_e_nm_per_ps"]) > 0 for step in rows)


def test_a_committee_run_reports_its_spread_with_every_frame(tmp_path):
    path = write_config(tmp_path, model=WATER_DIR / "active-learning" / "iteration-1" / "model.pt", steps=4,
                        report_interval=2)
    path.write_text(path.read_text().replace("alanine-dipeptide/alanine-dipeptide.pdb", "water/water.pdb")
                    + 'uncertainty = "uncertainty.csv"\n')
    config = load_config(path)
    run_simulation(config, progress=False)
    run_simulation(config.with_overrides(steps=6), progress=False)
    rows = report_rows(config.output.directory / "uncertainty.csv")
    assert list(rows) == [2, 4, 6]
    assert all(row["sigma_energy_kJ_per_mol"] > 0 and row["atom_of_max_sigma_force"] in (0, 1, 2)
               for row in rows.values())


@pytest.mark.parametrize("output, named", [
    ('embedding = "embedding.csv"', "[ml] embedding is 'mechanical'"),
    ("dipole_derivative = true", "name its file"),
    ('uncertainty = "log.csv"', "files must differ"),
    ('uncertainty = "reports/u.csv"', "must be a file name"),
])
def test_bad_report_settings_are_refused(tmp_path, output, named):
    path = write_config(tmp_path)
    path.write_text(path.read_text() + output + "\n")
    with pytest.raises(ValueError, match=re.escape(named)):
        load_config(path)


def test_a_report_is_cut_back_to_the_checkpoint_and_loses_a_half_written_row(tmp_path):
    from mlmm.bridge.run_reports import truncate_csv

    path = tmp_path / "report.csv"
    path.write_text("step,time_ps,value\n2,0.1,1.0\n4,0.2,2.0\n6,0.3,3.0\n8,0.4\n")
    assert truncate_csv(path, 6) == 6
    assert path.read_text().splitlines() == ["step,time_ps,value", "2,0.1,1.0", "4,0.2,2.0", "6,0.3,3.0"]
    assert truncate_csv(path, 5) == 4 and truncate_csv(path, 1) is None
    assert path.read_text().splitlines() == ["step,time_ps,value"]
    assert truncate_csv(tmp_path / "missing.csv", 4) is None
