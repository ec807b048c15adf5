"""Train a network potential from a :class:`~mlmm.training.config.TrainingConfig`.

What one run writes into the output directory:

- ``split.json``: the train/validation/test frame indices (also stored in the model);
- ``checkpoint.pt``: everything needed to resume, rewritten atomically after every epoch;
- ``log.csv``: one row per epoch (learning rate, training loss, validation MAEs);
- ``model.pt``: the best weights by validation loss (EMA weights), in float64, with the
  configuration fingerprint, loss weights, split, dataset provenance and test errors in its metadata;
- ``metrics.json``: test-set errors (all frames and per frame source);
- ``learning_curve.png``.

Running the same configuration again resumes from the checkpoint; a finished run is not
repeated, and a run stopped by its budget (``epochs``, ``max_minutes``) goes on when the
configuration gives it a larger one. Validation uses the exponential moving average (EMA) of
the weights; the learning rate drops on a validation plateau and training stops early when
validation has not improved for ``early_stopping_patience`` epochs.
"""

from __future__ import annotations

import copy
import csv
import json
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from mlmm.data.calculators import BufferDifference
from mlmm.data.dataset import Dataset, concatenate, load_dataset
from mlmm.potentials import ElectrostaticEmbedding, load_potential, read_metadata, save_potential
from mlmm.training import models
from mlmm.training.batching import buffer_frame_outputs, frame_outputs
from mlmm.training.config import TrainingConfig
from mlmm.training.delta import subtract_low_level
from mlmm.training.metrics import SHARED_TENSORS, errors, frame_tensors, loss, predict_frames
from mlmm.training.widening import widen_features

LOG_COLUMNS = ["epoch", "seconds", "learning_rate", "train_loss", "validation_loss", "validation_energy_mae",
               "validation_forces_mae"]


def load_training_data(config: TrainingConfig) -> Tuple[Dataset, int]:
    """The labelled frames of the configured datasets (minus the low level for delta learning), followed
    by those of the ``training_only`` datasets, and the number of the latter."""
    datasets = [load_dataset(p).labelled() for p in config.data.datasets + config.data.training_only]
    if config.data.delta_from:
        datasets = [subtract_low_level(d, load_dataset(p).labelled(), charges_from=config.data.charges_from)
                    for d, p in zip(datasets, config.data.delta_from)]
    data = concatenate(datasets)
    if data.energies is None or data.forces is None:
        raise ValueError("training needs energies and forces in every dataset")
    return data, sum(d.n_frames for d in datasets[len(config.data.datasets):])


def split_frames(n_frames: int, fractions, seed: int, max_train: Optional[int] = None,
                 n_training_only: int = 0) -> Dict[str, list]:
    """Random disjoint train/validation/test indices of the first ``n_frames - n_training_only`` frames;
    ``max_train`` caps that training share, to which the last ``n_training_only`` frames are added."""
    n_training_only = int(n_training_only)
    n_frames = int(n_frames) - n_training_only
    order = np.random.default_rng(seed).permutation(n_frames)
    n_train = int(round(fractions[0] * n_frames))
    n_validation = int(round(fractions[1] * n_frames))
    if n_train < 1 or (fractions[1] > 0 and n_validation < 1):
        raise ValueError(f"{n_frames} frames are too few for the split {list(fractions)}")
    split = {"train": order[:n_train], "validation": order[n_train:n_train + n_validation],
             "test": order[n_train + n_validation:]}
    if max_train is not None:
        split["train"] = split["train"][:max_train]
    split["train"] = np.concatenate([split["train"], np.arange(n_frames, n_frames + n_training_only)])
    return {key: sorted(int(i) for i in value) for key, value in split.items()}


class Trainer:
    """One training run (see the module docstring); :meth:`run` returns the test errors."""

    def __init__(self, config: TrainingConfig, progress: bool = True):
        self.config = config
        self.settings = config.training
        self.progress = progress
        self.output = Path(config.output)
        self.dtype = torch.float64 if self.settings.dtype == "float64" else torch.float32
        self.weights = self.settings.loss_weights()

    # -- setup ---------------------------------------------------------------------------------
    def _prepare(self) -> None:
        torch.manual_seed(self.settings.seed)
        self.data, n_training_only = load_training_data(self.config)
        self.split = split_frames(self.data.n_frames, self.config.data.split, self.config.data.seed,
                                  self.config.data.max_frames, n_training_only)
        self.subsets = {key: self.data.subset(value) for key, value in self.split.items()}
        data = self.config.data
        self.provenance = [load_dataset(path).provenance for path in data.datasets + data.training_only]
        self.coupling = buffer_outer_coupling(self.provenance)
        in_field = {"field_energy_weight": self.settings.field_energy_weight,
                    "coupling_energy_weight": self.settings.coupling_energy_weight}
        for name, weight in in_field.items():
            if weight > 0 and (self.data.outer_potential is None or self.coupling is None):
                raise ValueError(f"{name} is for buffer data labelled in a field (BufferDifference with outer "
                                 "point charges): every dataset needs outer_potential and mm_outer_potential, which "
                                 "without_outer_charges keeps; rewrite the datasets with it or set the weight to 0")
        train = self.subsets["train"]
        if self.config.transfer is not None:
            self.model = models.rebuild(self.config.transfer.initial_model).to(self.dtype)
            if self.config.transfer.widen_features is not None:
                self.model = widen_features(self.model, self.config.transfer.widen_features, self.settings.seed)
            predicted = predict_frames(self.model, train)["energy"]
            models.shift_energy_offset(self.model, train, predicted)
            transfer = self.config.transfer
            groups = models.parameter_groups(self.model, self.settings.learning_rate, transfer.freeze,
                                             transfer.learning_rate_scale)
        else:
            spec = self.config.model
            self.model = models.build(spec.family, spec.elements, spec.options).to(self.dtype)
            models.fit_energy_scaling(self.model, train)
            models.set_input_scaling(self.model, train)
            groups = models.parameter_groups(self.model, self.settings.learning_rate, [], {})
        self.optimizer = torch.optim.Adam(groups, lr=self.settings.learning_rate,
                                          weight_decay=self.settings.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, factor=self.settings.lr_factor, patience=self.settings.lr_patience,
            min_lr=self.settings.min_learning_rate)
        self.ema = copy.deepcopy(self.model)
        self.best_state = copy.deepcopy(self.ema.state_dict())
        self.tensors = {key: frame_tensors(subset, self.dtype) for key, subset in self.subsets.items()}
        self.generator = torch.Generator().manual_seed(self.settings.seed)
        self.epoch, self.best_loss, self.bad_epochs, self.history, self.elapsed = 0, float("inf"), 0, [], 0.0

    def _model_recipe(self) -> dict:
        if self.config.transfer is not None:
            recipe = read_metadata(self.config.transfer.initial_model)["extra"]["model"]
            if self.config.transfer.widen_features is not None:
                recipe = dict(recipe, options=dict(recipe["options"], n_features=self.config.transfer.widen_features))
            return recipe
        spec = self.config.model
        return {"family": spec.family, "elements": list(spec.elements), "options": dict(spec.options)}

    # -- checkpoints ---------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.output / "checkpoint.pt"

    def _save_checkpoint(self) -> None:
        state = {"fingerprint": self.config.fingerprint(budget=False), "epoch": self.epoch,
                 "model": self.model.state_dict(), "ema": self.ema.state_dict(), "best_state": self.best_state,
                 "best_loss": self.best_loss, "bad_epochs": self.bad_epochs, "history": self.history,
                 "elapsed": self.elapsed, "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "generator": self.generator.get_state(),
                 "split": self.split}
        tmp = self.checkpoint_path.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(self.checkpoint_path)

    def _resume(self) -> None:
        """Load the checkpoint if there is one."""
        if not self.checkpoint_path.exists():
            return
        state = torch.load(self.checkpoint_path, weights_only=False)
        if state["fingerprint"] != self.config.fingerprint(budget=False):
            raise ValueError(f"{self.checkpoint_path} belongs to a different configuration; use another output "
                             "directory or delete the checkpoint to start over")
        if state["split"] != self.split:
            raise ValueError(f"{self.checkpoint_path} was made with a different train/validation/test split "
                             "(did the datasets change?); delete it to start over")
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["generator"])
        for key in ("epoch", "best_state", "best_loss", "bad_epochs", "history", "elapsed"):
            setattr(self, key, state[key])

    # -- training ------------------------------------------------------------------------------
    def _train_epoch(self) -> float:
        train = self.tensors["train"]
        order = torch.randperm(len(train["positions"]), generator=self.generator)
        total, batches = 0.0, 0
        for batch_indices in order.split(self.settings.batch_size):
            batch = {key: value[batch_indices] for key, value in train.items() if key not in SHARED_TENSORS}
            charge = float(self.data.total_charge)
            if "buffer_species" in train:
                outputs = buffer_frame_outputs(self.model, train["species"], batch["positions"], batch["mm_positions"],
                                               train["buffer_species"], batch["mm_mask"], charge)
            else:
                environment = {key: batch[key] for key in ("mm_positions", "mm_charges")
                               if key in batch and self.model.uses_environment}
                outputs = frame_outputs(self.model, train["species"], batch["positions"], charge, **environment)
            value = loss(outputs, batch, self.weights, self.coupling)
            self.optimizer.zero_grad(set_to_none=True)
            value.backward()
            self.optimizer.step()
            self._update_ema()
            total, batches = total + float(value.detach()), batches + 1
        return total / batches

    @torch.no_grad()
    def _update_ema(self) -> None:
        decay = self.settings.ema_decay
        for average, current in zip(self.ema.parameters(), self.model.parameters()):
            if not current.requires_grad:  # frozen: d*x + (1-d)*x need not round back to x
                continue
            average.mul_(decay).add_(current, alpha=1.0 - decay)

    def _validate(self) -> Dict[str, float]:
        subset = self.subsets["validation"] if self.subsets["validation"].n_frames else self.subsets["train"]
        tensors = self.tensors["validation"] if self.subsets["validation"].n_frames else self.tensors["train"]
        predicted = predict_frames(self.ema, subset, batch_size=256)
        outputs = {key: torch.as_tensor(value).unsqueeze(0) for key, value in predicted.items()}
        batch = {key: value.double() if value.is_floating_point() else value for key, value in tensors.items()
                 if key not in SHARED_TENSORS}
        value = float(loss({k: v.double() for k, v in outputs.items()}, batch, self.weights, self.coupling))
        metrics = errors(self.ema, subset, predicted=predicted)
        return {"validation_loss": value, "validation_energy_mae": metrics["energy_mae"],
                "validation_forces_mae": metrics["forces_mae"]}

    def run(self) -> Dict:
        """Train (or resume), then write the model, metrics, log and learning curve; return the metrics."""
        self.output.mkdir(parents=True, exist_ok=True)
        self._build()
        (self.output / "split.json").write_text(json.dumps(self.split))
        self._resume()
        self._loop()
        return self._finish()

    def snapshot(self, directory) -> Dict:
        """Write the best weights so far, as ``run`` would at the end (model.pt, metrics.json, split.json,
        log.csv, learning curve), into ``directory``, reading the checkpoint of a run that may still be
        going; return the metrics. The run's own directory is left as it is."""
        if not self.checkpoint_path.exists():
            raise ValueError(f"no checkpoint at {self.checkpoint_path}: the run has not finished an epoch yet")
        if Path(directory).resolve() == self.output.resolve():
            raise ValueError(f"a snapshot goes into a directory of its own, not the run's ({self.output})")
        self._build()
        self._resume()
        self.output = Path(directory)
        self.output.mkdir(parents=True, exist_ok=True)
        (self.output / "split.json").write_text(json.dumps(self.split))
        self._write_log()
        return self._finish()

    def _build(self) -> None:
        """The network, optimizer, data tensors and the compiled copy that model.pt will hold."""
        torch.set_num_threads(self.settings.threads)
        self._prepare()
        # Compiled now, not after hours of training: a model TorchScript cannot compile fails at once,
        # and the file written at the end holds the code the run started with, even if the source
        # files change while it runs.
        self.compiled = torch.jit.script(self._deployable(copy.deepcopy(self.model).double()))

    def _loop(self) -> None:
        from rich.progress import Progress

        start = time.perf_counter() - self.elapsed
        with Progress(disable=not self.progress) as bar:
            task = bar.add_task("training", total=self.settings.epochs, completed=self.epoch)
            while not self._stopped():
                train_loss = self._train_epoch()
                row = {"epoch": self.epoch + 1, "train_loss": train_loss, **self._validate(),
                       "learning_rate": self.optimizer.param_groups[0]["lr"]}
                self.scheduler.step(row["validation_loss"])
                if row["validation_loss"] < self.best_loss:
                    self.best_loss, self.bad_epochs = row["validation_loss"], 0
                    self.best_state = copy.deepcopy(self.ema.state_dict())
                else:
                    self.bad_epochs += 1
                self.epoch += 1
                self.elapsed = time.perf_counter() - start
                row["seconds"] = self.elapsed
                self.history.append(row)
                self._save_checkpoint()
                self._write_log()
                bar.update(task, completed=self.epoch, description=(
                    f"training: val E MAE {row['validation_energy_mae']:.3g} kJ/mol, "
                    f"F MAE {row['validation_forces_mae']:.3g} kJ/mol/nm"))

    def _stopped(self) -> bool:
        """Whether the run is over: all epochs done, validation stalled (early stopping) or the
        wall-time budget spent."""
        over_time = self.settings.max_minutes is not None and self.elapsed > 60 * self.settings.max_minutes
        return (self.epoch >= self.settings.epochs or self.bad_epochs >= self.settings.early_stopping_patience
                or over_time)

    def _deployable(self, network: torch.nn.Module) -> torch.nn.Module:
        """What model.pt holds: the network, or with a ``vacuum_model`` the pair
        (:func:`mlmm.training.models.with_vacuum`)."""
        if self.config.model.vacuum_model is None:
            return network
        if not isinstance(network, ElectrostaticEmbedding) and self.data.mm_species is None:
            raise ValueError("[model] vacuum_model is for an electrostatic embedding network (family = "
                             "'electrostatic') or a buffer network (datasets of E(I u B) - E(B) clusters)")
        return models.with_vacuum(load_potential(self.config.model.vacuum_model)[0], network)

    def _write_log(self) -> None:
        with open(self.output / "log.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, LOG_COLUMNS)
            writer.writeheader()
            for row in self.history:
                writer.writerow({key: row[key] for key in LOG_COLUMNS})

    def _finish(self) -> Dict:
        from mlmm.training.plots import plot_learning_curve

        self.model.load_state_dict(self.best_state)
        final = self.model.double()
        metrics = {"test": errors(final, self.subsets["test"]) if self.subsets["test"].n_frames else {},
                   "validation": errors(final, self.subsets["validation"]) if self.subsets["validation"].n_frames
                   else {},
                   "train": errors(final, self.subsets["train"]), "epochs": self.epoch,
                   "training_seconds": round(self.elapsed, 1)}
        test = self.subsets["test"]
        if test.n_frames and test.frame_source is not None:
            metrics["test_by_source"] = {source: errors(final, test.subset(test.frame_source == source))
                                         for source in sorted(set(test.frame_source))}
        (self.output / "metrics.json").write_text(json.dumps(metrics, indent=2))
        final = self._deployable(final)
        self.compiled.load_state_dict(final.state_dict())
        extra = {"model": self._model_recipe(), "split": self.split, "metrics": metrics,
                 "datasets": self.provenance, "training_config": self.config.fingerprint(),
                 "delta_from": self.config.data.delta_from, "loss_weights": self.weights}
        if self.coupling is not None:
            extra["buffer_outer_coupling"] = self.coupling
        if self.config.model.vacuum_model is not None:  # its recipe, so that eager_potential can rebuild both
            extra["vacuum_model"] = read_metadata(self.config.model.vacuum_model).get("extra", {}).get("model")
        save_potential(final, self.output / "model.pt", compiled=self.compiled, extra=extra)
        plot_learning_curve(self.history, self.output / "learning_curve.png")
        return metrics


def buffer_outer_coupling(provenance: List[dict]) -> Optional[str]:
    """How the buffer labels of the datasets (their ``provenance`` records) left the outer charges to the
    scheme (:data:`~mlmm.embedding.modules.OUTER_COUPLINGS`), None for other data; datasets labelled
    for different couplings cannot train one network (ValueError)."""
    couplings = {record.get("calculator", {}).get("outer_coupling", "ml-charges") for record in provenance
                 if record.get("program") == BufferDifference.program}
    if len(couplings) > 1:
        raise ValueError(f"the buffer datasets were labelled for different outer couplings {sorted(couplings)}; "
                         "relabel them for one")
    return couplings.pop() if couplings else None


def train(config: TrainingConfig, progress: bool = True, snapshot: Optional[Path] = None) -> Dict:
    """Run (or resume) the training described by ``config``; return its metrics. With ``snapshot``, write
    the best model so far into that directory instead (:meth:`Trainer.snapshot`) and train nothing."""
    trainer = Trainer(config, progress)
    return trainer.run() if snapshot is None else trainer.snapshot(snapshot)
