"""Run configurations: a TOML file describing one ML/MM simulation, read into validated dataclasses.

Example (every key is listed in :func:`load_config`)::

    [system]
    pdb = "alanine-dipeptide-tip3p.pdb"
    nonbonded_method = "PME"
    cutoff_nm = 0.9

    [ml]
    atoms = "resname ACE or resname ALA or resname NME"
    model = "ff-potential.pt"

    [md]
    steps = 2000
    timestep_fs = 1.0
    temperature_K = 300

    [output]
    directory = "runs/demo"

Input paths (``pdb``, ``model``, local force-field files) are relative to the TOML file's
folder; ``output.directory`` is relative to the current working directory, so runs land
where they are launched.
"""

from __future__ import annotations

import dataclasses
import hashlib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Union

from mlmm.bridge.mixed import EMBEDDINGS
from mlmm.bridge.transports import TRANSPORTS
from mlmm.potentials.io import read_metadata

NONBONDED_METHODS = ("PME", "NoCutoff", "CutoffPeriodic", "CutoffNonPeriodic")
CONSTRAINTS = ("None", "HBonds", "AllBonds", "HAngles")
PLATFORMS = ("CPU", "Reference", "CUDA")
TRAJECTORY_FORMATS = (".dcd", ".h5")
DEFAULT_FORCEFIELD = ("amber14-all.xml", "amber14/tip3p.xml")
_REQUIRED = object()


@dataclass(frozen=True)
class SystemConfig:
    """[system]: the structure and the force field of the MM system (lengths in nm)."""

    pdb: Path
    nonbonded_method: str
    forcefield: tuple[str, ...] = DEFAULT_FORCEFIELD
    cutoff_nm: float = 1.0
    constraints: str = "HBonds"
    rigid_water: bool = True


@dataclass(frozen=True)
class MLConfig:
    """[ml]: the ML region, the model file and how it is embedded."""

    atoms: Union[str, tuple[int, ...]]
    model: Path
    embedding: str = "mechanical"
    transport: str = "torch"
    cuda_graphs: bool = False
    compiled: bool = False
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MDConfig:
    """[md]: Langevin dynamics (LangevinMiddleIntegrator) settings in fs, K and 1/ps."""

    steps: int
    timestep_fs: float
    temperature_K: float
    friction_per_ps: float = 1.0
    report_interval: int = 1000
    platform: str = "CPU"
    seed: Optional[int] = None
    minimize: bool = True
    minimize_max_iterations: int = 0
    minimize_ml_region: bool = False


@dataclass(frozen=True)
class RestraintConfig:
    """[[restraints]]: a flat-bottom distance restraint, E = (k/2) (r - max_distance)^2 beyond max_distance
    (kJ/mol, nm), e.g. to keep a gas-phase complex from coming apart at high temperature."""

    atoms: tuple[int, int]
    max_distance_nm: float
    force_constant: float = 10000.0


@dataclass(frozen=True)
class OutputConfig:
    """[output]: where the trajectory (.dcd or .h5), the CSV log and the checkpoint go; ``velocities``
    also stores velocities (nm/ps) in an .h5 trajectory, for power spectra. Optional CSV reports written
    with every frame: ``embedding`` (what an electrostatic or buffer embedding sees: MM molecules, energy
    parts, ML charges and dipole; with ``dipole_derivative`` its exact time derivative, for IR spectra) and
    ``uncertainty`` (a committee model's spread on the ML region)."""

    directory: Path
    trajectory: str = "trajectory.dcd"
    log: str = "log.csv"
    velocities: bool = False
    embedding: Optional[str] = None
    dipole_derivative: bool = False
    uncertainty: Optional[str] = None

    @property
    def trajectory_path(self) -> Path:
        return self.directory / self.trajectory

    @property
    def log_path(self) -> Path:
        return self.directory / self.log


@dataclass(frozen=True)
class RunConfig:
    """A whole run configuration; build it with :func:`load_config` or :func:`parse_config`."""

    system: SystemConfig
    ml: MLConfig
    md: MDConfig
    output: OutputConfig
    source: Optional[Path] = None
    restraints: tuple[RestraintConfig, ...] = ()

    def with_overrides(self, steps: Optional[int] = None, directory: Optional[Union[str, Path]] = None) -> "RunConfig":
        """A copy with ``md.steps`` and/or ``output.directory`` replaced (command-line overrides)."""
        md, output = self.md, self.output
        if steps is not None:
            md = dataclasses.replace(md, steps=_positive_int(steps, "md", "steps"))
        if directory is not None:
            output = dataclasses.replace(output, directory=Path(directory).resolve())
        return dataclasses.replace(self, md=md, output=output)

    def identity(self) -> dict[str, Any]:
        """The settings a run must keep to be continued: everything but ``md.steps``,
        ``md.platform``, ``ml.cuda_graphs`` and ``ml.compiled`` (how, not what, is computed) and the
        locations. The structure counts by its file's SHA-256, the model by its parameters' content
        hash (so re-saving the same model does not matter)."""
        data = dataclasses.asdict(self)
        del data["source"], data["md"]["steps"], data["md"]["platform"], data["output"]["directory"]
        del data["ml"]["cuda_graphs"], data["ml"]["compiled"]
        restraints = data.pop("restraints")
        if restraints:  # kept out when absent, so runs from before restraints existed continue
            data["md"]["restraints"] = restraints
        data["system"]["pdb"] = _sha256(self.system.pdb)
        data["ml"]["model"] = read_metadata(self.ml.model)["content_hash"]
        return _jsonable(data)


def load_config(path: Union[str, Path]) -> RunConfig:
    """Read and validate a run configuration TOML file.

    Tables and keys (defaults in brackets; ``*`` required):

    - ``[system]``: ``pdb``\\*, ``nonbonded_method``\\* (PME, NoCutoff, CutoffPeriodic,
      CutoffNonPeriodic), ``forcefield`` [amber14-all.xml, amber14/tip3p.xml], ``cutoff_nm``
      [1.0], ``constraints`` [HBonds; None, AllBonds, HAngles], ``rigid_water`` [true]
    - ``[ml]``: ``atoms``\\* (MDTraj selection or list of indices), ``model``\\* (mlmm model
      file), ``embedding`` [mechanical], ``transport`` [torch], ``cuda_graphs`` [false: capture
      the ML force in a CUDA graph on the CUDA platform], ``compiled`` [false: with transport
      "python", compile the ML force ahead of time], ``[ml.options]`` (embedding options, see
      :func:`mlmm.create_mixed_system`)
    - ``[md]``: ``steps``\\*, ``timestep_fs``\\*, ``temperature_K``\\*, ``friction_per_ps`` [1.0],
      ``report_interval`` [1000], ``platform`` [CPU; Reference, CUDA], ``seed`` [random],
      ``minimize`` [true], ``minimize_max_iterations`` [0: until converged to 10 kJ/mol/nm],
      ``minimize_ml_region`` [false: the ML atoms stay at their input positions while the MM
      environment is minimised; a network is only trusted near its training geometries, and a
      minimiser's long trial steps can carry the ML region far outside them]
    - ``[output]``: ``directory``\\*, ``trajectory`` [trajectory.dcd; .dcd or .h5], ``log`` [log.csv],
      ``velocities`` [false; true stores velocities in an .h5 trajectory, for power spectra], ``embedding``
      [none; a CSV file name: with every frame, the embedding's MM molecules, energy parts, ML charges and
      dipole (:class:`mlmm.EmbeddingReporter`; electrostatic and buffer embeddings)],
      ``dipole_derivative`` [false; true adds the dipole's exact time derivative to it],
      ``uncertainty`` [none; a CSV file name: with every frame, the committee model's energy and force
      spread on the ML region (:class:`mlmm.UncertaintyReporter`)]. Like the log, these reports continue
      with a resumed run without losing or repeating a row.
    - ``[[restraints]]`` (optional, repeatable): ``atoms``\\* (two atom indices), ``max_distance_nm``\\*,
      ``force_constant`` [10000 kJ/mol/nm^2]: a flat-bottom harmonic wall on their distance

    Raises ValueError naming the table and key for missing, unknown or invalid entries.
    """
    return _read_toml(path, "a run configuration", lambda data, source: parse_config(data, source.parent, source))


def parse_config(data: dict[str, Any], base_dir: Union[str, Path], source: Optional[Path] = None) -> RunConfig:
    """Validate a configuration already read into a dict; input paths are relative to ``base_dir``."""
    base_dir = Path(base_dir)
    _check_keys(data, {"system", "ml", "md", "output", "restraints"}, "the top level", tables=True)
    ml, output = _parse_ml(_table(data, "ml"), base_dir), _parse_output(_table(data, "output"))
    if output.embedding and ml.embedding not in ("electrostatic", "buffer"):
        raise ValueError(f"[output] embedding = {output.embedding!r} reports what an electrostatic or buffer "
                         f"embedding sees; [ml] embedding is {ml.embedding!r}. Remove the key, or use one of those "
                         "schemes.")
    return RunConfig(system=parse_system(_table(data, "system"), base_dir), ml=ml, md=_parse_md(_table(data, "md")),
                     output=output, source=source, restraints=_parse_restraints(data.get("restraints", [])))


def parse_system(table: dict[str, Any], base_dir: Path) -> SystemConfig:
    """Validate a ``[system]`` table (also used by ``mlmm export`` for its options)."""
    _check_keys(table, {f.name for f in dataclasses.fields(SystemConfig)}, "[system]")
    forcefield = _get(table, "system", "forcefield", list, list(DEFAULT_FORCEFIELD))
    if not forcefield or not all(isinstance(name, str) for name in forcefield):
        raise ValueError(f"[system] forcefield = {forcefield!r} must be a non-empty list of OpenMM force-field "
                         f"files, e.g. {list(DEFAULT_FORCEFIELD)}.")
    cutoff = float(_get(table, "system", "cutoff_nm", (int, float), 1.0))
    if cutoff <= 0:
        raise ValueError(f"[system] cutoff_nm = {cutoff} must be positive (nm).")
    return SystemConfig(
        pdb=_existing(base_dir, _get(table, "system", "pdb", str), "system", "pdb"),
        nonbonded_method=_choice(table, "system", "nonbonded_method", NONBONDED_METHODS),
        forcefield=tuple(str(base_dir / name) if (base_dir / name).is_file() else name for name in forcefield),
        cutoff_nm=cutoff,
        constraints=_choice(table, "system", "constraints", CONSTRAINTS, "HBonds"),
        rigid_water=_get(table, "system", "rigid_water", bool, True))


def _parse_ml(table: dict[str, Any], base_dir: Path) -> MLConfig:
    _check_keys(table, {f.name for f in dataclasses.fields(MLConfig)}, "[ml]")
    atoms = _get(table, "ml", "atoms", (str, list))
    if isinstance(atoms, list):
        if not atoms or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in atoms):
            raise ValueError(f"[ml] atoms = {atoms!r} must be an MDTraj selection string or a non-empty list of "
                             "atom indices (integers >= 0).")
        atoms = tuple(atoms)
    elif not atoms.strip():
        raise ValueError("[ml] atoms is an empty string; give an MDTraj selection such as 'resname ALA'.")
    return MLConfig(atoms=atoms, model=_existing(base_dir, _get(table, "ml", "model", str), "ml", "model"),
                    embedding=_choice(table, "ml", "embedding", EMBEDDINGS, "mechanical"),
                    transport=_choice(table, "ml", "transport", TRANSPORTS, "torch"),
                    cuda_graphs=_get(table, "ml", "cuda_graphs", bool, False),
                    compiled=_get(table, "ml", "compiled", bool, False),
                    options=dict(_get(table, "ml", "options", dict, {})))


def _parse_md(table: dict[str, Any]) -> MDConfig:
    _check_keys(table, {f.name for f in dataclasses.fields(MDConfig)}, "[md]")
    seed = _get(table, "md", "seed", int, None)
    if seed is not None and not 0 <= seed < 2**31:
        raise ValueError(f"[md] seed = {seed} must lie in 0..2147483647 (leave it out for a random seed).")
    iterations = _get(table, "md", "minimize_max_iterations", int, 0)
    if iterations < 0:
        raise ValueError(f"[md] minimize_max_iterations = {iterations} must be >= 0 (0: until converged).")
    return MDConfig(
        steps=_positive_int(_get(table, "md", "steps", int), "md", "steps"),
        timestep_fs=_positive_float(table, "timestep_fs"),
        temperature_K=_positive_float(table, "temperature_K"),
        friction_per_ps=_positive_float(table, "friction_per_ps", 1.0),
        report_interval=_positive_int(_get(table, "md", "report_interval", int, 1000), "md", "report_interval"),
        platform=_choice(table, "md", "platform", PLATFORMS, "CPU"),
        seed=seed,
        minimize=_get(table, "md", "minimize", bool, True),
        minimize_max_iterations=iterations,
        minimize_ml_region=_get(table, "md", "minimize_ml_region", bool, False))


def _parse_restraints(tables: Any) -> tuple[RestraintConfig, ...]:
    if not isinstance(tables, list) or not all(isinstance(table, dict) for table in tables):
        raise ValueError("restraints must be an array of tables ([[restraints]] with atoms, max_distance_nm, "
                         "force_constant).")
    restraints = []
    for table in tables:
        _check_keys(table, {f.name for f in dataclasses.fields(RestraintConfig)}, "[[restraints]]")
        atoms = _get(table, "restraints", "atoms", list)
        if len(atoms) != 2 or not all(isinstance(a, int) and not isinstance(a, bool) and a >= 0 for a in atoms) \
                or atoms[0] == atoms[1]:
            raise ValueError(f"[[restraints]] atoms = {atoms!r} must be two different atom indices (0-based).")
        distance = float(_get(table, "restraints", "max_distance_nm", (int, float)))
        constant = float(_get(table, "restraints", "force_constant", (int, float), 10000.0))
        if not distance > 0 or not constant > 0:
            raise ValueError(f"[[restraints]] max_distance_nm = {distance} and force_constant = {constant} must be "
                             "positive (nm, kJ/mol/nm^2).")
        restraints.append(RestraintConfig((atoms[0], atoms[1]), distance, constant))
    return tuple(restraints)


def _parse_output(table: dict[str, Any]) -> OutputConfig:
    _check_keys(table, {f.name for f in dataclasses.fields(OutputConfig)}, "[output]")
    trajectory = _get(table, "output", "trajectory", str, "trajectory.dcd")
    if Path(trajectory).suffix.lower() not in TRAJECTORY_FORMATS:
        raise ValueError(f"[output] trajectory = {trajectory!r} must end in one of {TRAJECTORY_FORMATS} "
                         "(DCD or MDTraj HDF5).")
    files = {"trajectory": trajectory, "log": _get(table, "output", "log", str, "log.csv"),
             "embedding": _get(table, "output", "embedding", str, None),
             "uncertainty": _get(table, "output", "uncertainty", str, None)}
    for key, name in files.items():
        if name is not None and Path(name).name != name:
            raise ValueError(f"[output] {key} = {name!r} must be a file name; the folder is [output] directory.")
    named = [name for name in files.values() if name is not None]
    if len(set(named)) != len(named):
        raise ValueError(f"[output] files must differ: {files}")
    velocities = _get(table, "output", "velocities", bool, False)
    if velocities and Path(trajectory).suffix.lower() != ".h5":
        raise ValueError(f"[output] velocities = true needs an HDF5 trajectory (a name ending in .h5), not "
                         f"{trajectory!r}: DCD files hold positions only.")
    dipole_derivative = _get(table, "output", "dipole_derivative", bool, False)
    if dipole_derivative and files["embedding"] is None:
        raise ValueError("[output] dipole_derivative = true is a column of the embedding report: name its file "
                         "with [output] embedding.")
    return OutputConfig(directory=Path(_get(table, "output", "directory", str)).resolve(), velocities=velocities,
                        dipole_derivative=dipole_derivative, **files)


@dataclass(frozen=True)
class EnsembleConfig:
    """An ensemble of independent replicas of one run (see :func:`load_ensemble`)."""

    run: RunConfig
    directory: Path
    seeds: tuple[int, ...]
    temperatures_K: tuple[float, ...]
    scheduler: Optional[str] = None
    workers: int = 2
    threads_per_worker: int = 1
    source: Optional[Path] = None


def load_ensemble(path: Union[str, Path]) -> EnsembleConfig:
    """Read and validate an ensemble TOML file: every (temperature, seed) pair is one replica of a run.

    - ``[ensemble]``: ``run``\\* (run configuration TOML, relative to this file), ``directory``\\*
      (replicas go to DIRECTORY/T<temperature>K-seed<seed>, relative to the launch folder),
      ``seeds``\\* (list of integers), ``temperatures_K`` [the run's temperature], ``steps``
      [the run's steps]
    - ``[dask]`` (optional): ``scheduler`` [none: a LocalCluster on this machine; else the address
      of a Dask scheduler, e.g. "tcp://10.0.0.1:8786"], ``workers`` [2; LocalCluster processes],
      ``threads_per_worker`` [1; CPU threads of each replica's OpenMM platform and torch]
    """
    return _read_toml(path, "an ensemble configuration", _parse_ensemble)


def _read_toml(path: Union[str, Path], what: str, parse: Callable[[dict[str, Any], Path], Any]) -> Any:
    """``parse(data, resolved path)`` of a TOML file; every error names the file."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file {str(path)!r} does not exist; pass the path of {what} TOML file.")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{path}: not valid TOML ({error}).") from None
    try:
        return parse(data, path.resolve())
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def _parse_ensemble(data: dict[str, Any], source: Path) -> EnsembleConfig:
    _check_keys(data, {"ensemble", "dask"}, "the top level", tables=True)
    table, dask = _table(data, "ensemble"), data.get("dask", {})
    _check_keys(table, {"run", "directory", "seeds", "temperatures_K", "steps"}, "[ensemble]")
    _check_keys(dask, {"scheduler", "workers", "threads_per_worker"}, "[dask]")
    run = load_config(_existing(source.parent, _get(table, "ensemble", "run", str), "ensemble", "run"))
    if "steps" in table:
        run = run.with_overrides(steps=_get(table, "ensemble", "steps", int))
    seeds = _get(table, "ensemble", "seeds", list)
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**31 for s in seeds) \
            or len(set(seeds)) != len(seeds):
        raise ValueError(f"[ensemble] seeds = {seeds!r} must be distinct integers in 0..2147483647, one per replica.")
    temperatures = _get(table, "ensemble", "temperatures_K", list, [run.md.temperature_K])
    if not temperatures or not all(isinstance(t, (int, float)) and not isinstance(t, bool) and t > 0
                                   for t in temperatures) or len(set(temperatures)) != len(temperatures):
        raise ValueError(f"[ensemble] temperatures_K = {temperatures!r} must be distinct positive numbers (K).")
    return EnsembleConfig(
        run=run, directory=Path(_get(table, "ensemble", "directory", str)).resolve(), seeds=tuple(seeds),
        temperatures_K=tuple(float(t) for t in temperatures), scheduler=_get(dask, "dask", "scheduler", str, None),
        workers=_positive_int(_get(dask, "dask", "workers", int, 2), "dask", "workers"),
        threads_per_worker=_positive_int(_get(dask, "dask", "threads_per_worker", int, 1), "dask",
                                         "threads_per_worker"),
        source=source)


def _table(data: dict[str, Any], name: str) -> dict[str, Any]:
    if name not in data:
        raise ValueError(f"missing table [{name}]; see mlmm.config.load_config for its keys.")
    if not isinstance(data[name], dict):
        raise ValueError(f"{name} must be a table ([{name}]), got {data[name]!r}.")
    return data[name]


def _check_keys(table: dict[str, Any], allowed: set[str], where: str, tables: bool = False) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        kind = "table" if tables else "key"
        raise ValueError(f"unknown {kind}(s) {unknown} in {where}; allowed: {sorted(allowed)}. Check the spelling.")


def _get(table: dict[str, Any], section: str, key: str, kind: Any, default: Any = _REQUIRED) -> Any:
    if key not in table:
        if default is _REQUIRED:
            raise ValueError(f"missing key [{section}] {key}; see mlmm.config.load_config for what it means.")
        return default
    value = table[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise ValueError(f"[{section}] {key} = {value!r} has type {type(value).__name__}; expected {names}.")
    return value


def _choice(table: dict[str, Any], section: str, key: str, choices: tuple[str, ...], default: Any = _REQUIRED) -> str:
    value = _get(table, section, key, str, default)
    if value not in choices:
        raise ValueError(f"[{section}] {key} = {value!r} is not one of {list(choices)}.")
    return value


def _positive_int(value: Any, section: str, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"[{section}] {key} = {value!r} must be a positive integer.")
    return value


def _positive_float(table: dict[str, Any], key: str, default: Any = _REQUIRED) -> float:
    value = float(_get(table, "md", key, (int, float), default))
    if not value > 0:
        raise ValueError(f"[md] {key} = {value} must be positive.")
    return value


def _existing(base_dir: Path, name: str, section: str, key: str) -> Path:
    path = (base_dir / name).resolve()
    if not path.is_file():
        raise ValueError(f"[{section}] {key} = {name!r} not found (looked for {path}); input paths are relative "
                         "to the config file's folder.")
    return path


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value) if isinstance(value, Path) else value
