"""Training configurations: one TOML file read into validated dataclasses.

Example (all keys with their defaults are the dataclass fields below)::

    [data]
    datasets = ["water-gfn2.h5"]      # mlmm dataset files, joined
    split = [0.8, 0.1, 0.1]           # train, validation, test fractions
    training_only = []                # datasets joined to the training share only, after the split
    seed = 1

    [model]
    family = "physnet"                # physnet | painn | schnet | hdnnp | electrostatic
    elements = ["H", "O"]
    options = { n_features = 64 }     # constructor arguments of the family

    # family "electrostatic" (QM/MM minus vacuum data, delta_from and charges_from = "low"), or buffer
    # data less the vacuum energy of the ML region (delta_from, VacuumAnchoredBuffer):
    # vacuum_model = "model.pt"       # the vacuum potential written with it into model.pt

    [training]
    epochs = 500
    batch_size = 32
    learning_rate = 1e-3
    force_weight = 0.01               # nm^2: a 10 kJ/mol/nm force error weighs as 1 kJ/mol

    [transfer]                        # optional: start from a trained model
    initial_model = "model.pt"
    freeze = ["embedding"]            # parameter-name prefixes kept fixed
    learning_rate_scale = { "blocks.0" = 0.1 }
    widen_features = 64               # PhysNet: go on with more features, same function at the start

    [output]
    directory = "."

Paths in [data] and [transfer] are relative to the TOML file's folder, as is the output
directory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
from pathlib import Path
from typing import Dict, List, Optional


@dataclasses.dataclass
class DataConfig:
    datasets: List[str]
    split: List[float] = dataclasses.field(default_factory=lambda: [0.8, 0.1, 0.1])
    seed: int = 1
    max_frames: Optional[int] = None  # use at most this many frames (learning curves, subsets)
    # low-level datasets of the same frames, one per dataset of ``datasets`` and then of ``training_only``:
    # learn high - low
    delta_from: Optional[List[str]] = None
    charges_from: str = "high"  # with delta_from: reference charges from the "high" or "low" level
    # datasets added to the training share after ``datasets`` is split: more training data while the
    # validation and test frames stay those of ``datasets``
    training_only: List[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class ModelConfig:
    family: str = "physnet"
    elements: List[str] = dataclasses.field(default_factory=list)
    options: Dict = dataclasses.field(default_factory=dict)
    vacuum_model: Optional[str] = None  # electrostatic or anchored buffer networks: the vacuum potential


@dataclasses.dataclass
class TrainingSettings:
    epochs: int = 500
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    lr_factor: float = 0.5  # learning rate x lr_factor after lr_patience epochs without improvement
    lr_patience: int = 20
    min_learning_rate: float = 1e-5
    early_stopping_patience: int = 60
    ema_decay: float = 0.99
    energy_weight: float = 1.0  # (kJ/mol)^-2
    force_weight: float = 0.01  # nm^2 (kJ/mol)^-2
    dipole_weight: float = 0.0  # (e nm)^-2 (kJ/mol)^-2 ... relative weight of the dipole error
    charge_weight: float = 0.0  # e^-2, on per-atom reference charges
    # e^-2, on the buffer atoms' charge changes of buffer data (default: charge_weight); coupled to the
    # outer potential phi_a (kJ/mol/e) of every cluster atom, uncorrelated errors dq_a cost an energy
    # error of variance sum_a phi_a^2 <dq^2>: that sum is the weight that makes both count alike
    charge_change_weight: Optional[float] = None
    # (kJ/mol)^-2, buffer data labelled in a field: on the energy plus the Coulomb energy of the scheme's
    # coupled charges with the outer point charges, the cluster's energy in the field that the scheme reproduces
    field_energy_weight: float = 0.0
    # (kJ/mol)^-2, the same data: on the error of the coupled charges' Coulomb energy with the outer point
    # charges alone, the part of the field-energy error the charges make, which the energy's larger error
    # otherwise dominates in the field-energy term
    coupling_energy_weight: float = 0.0
    seed: int = 1
    threads: int = 2
    max_minutes: Optional[float] = None  # stop (and keep the best model) after this wall time
    dtype: str = "float32"

    def loss_weights(self) -> Dict[str, float]:
        """The weight of each term of the loss (units above), charge_change_weight resolved to its
        default; the trainer uses them and records them in the model file (``extra["loss_weights"]``)."""
        return {"energy": self.energy_weight, "force": self.force_weight, "dipole": self.dipole_weight,
                "charge": self.charge_weight,
                "charge_change": self.charge_weight if self.charge_change_weight is None else self.charge_change_weight,
                "field_energy": self.field_energy_weight, "coupling_energy": self.coupling_energy_weight}


@dataclasses.dataclass
class TransferConfig:
    initial_model: str
    freeze: List[str] = dataclasses.field(default_factory=list)
    learning_rate_scale: Dict[str, float] = dataclasses.field(default_factory=dict)
    widen_features: Optional[int] = None  # mlmm.training.widening.widen_features


@dataclasses.dataclass
class TrainingConfig:
    data: DataConfig
    model: ModelConfig
    training: TrainingSettings
    transfer: Optional[TransferConfig]
    output: Path
    source: Optional[Path] = None

    def fingerprint(self, budget: bool = True) -> str:
        """Hash of everything that determines the result. With ``budget=False`` the stopping budget
        (``epochs``, ``max_minutes``) is left out: a checkpoint resumes a run of the same fingerprint,
        so a run stopped by its budget goes on when given a larger one."""
        content = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("output", "source")}
        if not budget:
            for limit in ("epochs", "max_minutes"):
                del content["training"][limit]
        if not content["data"]["training_only"]:  # configurations without it keep their fingerprint
            del content["data"]["training_only"]
        if content["training"]["charge_change_weight"] is None:  # likewise
            del content["training"]["charge_change_weight"]
        for weight in ("field_energy_weight", "coupling_energy_weight"):  # likewise
            if not content["training"][weight]:
                del content["training"][weight]
        if content["transfer"] is not None and content["transfer"]["widen_features"] is None:  # likewise
            del content["transfer"]["widen_features"]
        text = json.dumps(content, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


_SECTIONS = {"data": DataConfig, "model": ModelConfig, "training": TrainingSettings, "transfer": TransferConfig}


def _section(raw: dict, name: str, cls):
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"unknown keys in [{name}]: {sorted(unknown)}; known keys are {sorted(known)}")
    try:
        return cls(**raw)
    except TypeError as error:
        raise ValueError(f"[{name}]: {error}") from None


def make_config(raw: dict, base: Path = Path("."), source: Optional[Path] = None) -> TrainingConfig:
    """Validate a configuration dict (as read from TOML); relative paths are taken from ``base``."""
    unknown = set(raw) - set(_SECTIONS) - {"output"}
    if unknown:
        raise ValueError(f"unknown sections {sorted(unknown)}; known: {sorted(_SECTIONS) + ['output']}")
    if "data" not in raw:
        raise ValueError("a training configuration needs a [data] section with 'datasets'")
    data = _section(raw["data"], "data", DataConfig)
    data.datasets = [str(base / p) for p in data.datasets]
    data.training_only = [str(base / p) for p in data.training_only]
    if data.delta_from is not None:
        data.delta_from = [str(base / p) for p in data.delta_from]
        if len(data.delta_from) != len(data.datasets) + len(data.training_only):
            raise ValueError(f"[data] delta_from must name one low-level dataset per dataset, those of datasets "
                             f"and then those of training_only: {len(data.datasets) + len(data.training_only)}, "
                             f"got {len(data.delta_from)}")
    if len(data.split) != 3 or min(data.split) < 0 or abs(sum(data.split) - 1.0) > 1e-9 or data.split[0] == 0:
        raise ValueError(f"[data] split must be three non-negative fractions (train, validation, test) summing "
                         f"to 1 with a training share, got {data.split}")
    model = _section(raw.get("model", {}), "model", ModelConfig)
    if model.vacuum_model is not None:
        if data.delta_from is None:
            raise ValueError("[model] vacuum_model needs [data] delta_from: the network learns the reference less "
                             "the vacuum level that the vacuum model adds back")
        model.vacuum_model = str(base / model.vacuum_model)
    training = _section(raw.get("training", {}), "training", TrainingSettings)
    if training.batch_size < 1 or training.epochs < 1 or training.learning_rate <= 0:
        raise ValueError("[training] epochs, batch_size and learning_rate must be positive")
    if training.dtype not in ("float32", "float64"):
        raise ValueError(f"[training] dtype must be 'float32' or 'float64', got {training.dtype!r}")
    transfer = None
    if "transfer" in raw:
        transfer = _section(raw["transfer"], "transfer", TransferConfig)
        transfer.initial_model = str(base / transfer.initial_model)
    output = raw.get("output", {})
    if set(output) - {"directory"}:
        raise ValueError(f"unknown keys in [output]: {sorted(set(output) - {'directory'})}")
    return TrainingConfig(data, model, training, transfer, base / output.get("directory", "."), source)


def load_training_config(path) -> TrainingConfig:
    """Read a training TOML file (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training configuration {path} does not exist")
    with open(path, "rb") as f:
        try:
            raw = tomllib.load(f)
        except tomllib.TOMLDecodeError as error:
            raise ValueError(f"{path} is not valid TOML: {error}") from None
    return make_config(raw, path.parent, path)
