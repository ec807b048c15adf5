"""Training: batched frames, a tiny fit, exact resume after interruption, transfer and delta learning."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mlmm.data.dataset import Dataset
from mlmm.potentials import HDNNP, PaiNN, PhysNet, SchNet, load_potential, read_metadata
from mlmm.training import models
from mlmm.training.active import active_learning
from mlmm.potentials.neighbors import member_pairs_within, neighbor_list, pair_vectors
from mlmm.training.batching import frame_outputs
from mlmm.training.config import make_config
from mlmm.training.delta import subtract_low_level
from mlmm.training.trainer import Trainer, load_training_data, split_frames, train
from mlmm.training.widening import widen_features


def harmonic_water(positions: torch.Tensor) -> torch.Tensor:
    """Analytic reference: harmonic O-H stretches (0.0957 nm) and H-O-H bend (104.5 deg), kJ/mol."""
    oh1, oh2 = positions[..., 1, :] - positions[..., 0, :], positions[..., 2, :] - positions[..., 0, :]
    r1, r2 = oh1.norm(dim=-1), oh2.norm(dim=-1)
    angle = torch.acos((oh1 * oh2).sum(-1) / (r1 * r2))
    return 2.0e5 * ((r1 - 0.0957) ** 2 + (r2 - 0.0957) ** 2) + 150.0 * (angle - 1.8238) ** 2 - 2.0e5


def water_dataset(n_frames: int, seed: int = 0, noise: float = 0.004) -> Dataset:
    rng = np.random.default_rng(seed)
    equilibrium = np.array([[0.0, 0.0, 0.0], [0.0957, 0.0, 0.0], [-0.0240, 0.0926, 0.0]])
    positions = torch.tensor(equilibrium + rng.normal(0, noise, (n_frames, 3, 3)), requires_grad=True)
    energies = harmonic_water(positions)
    forces = -torch.autograd.grad(energies.sum(), positions)[0]
    return Dataset(species=[8, 1, 1], positions=positions.detach().numpy(), energies=energies.detach().numpy(),
                   forces=forces.numpy(), frame_source=["random"] * n_frames,
                   provenance={"level_of_theory": "harmonic test model"})


def config_for(tmp_path, epochs: int = 40, **training):
    water_dataset(160).save(tmp_path / "water.h5")
    raw = {"data": {"datasets": ["water.h5"], "split": [0.7, 0.15, 0.15], "seed": 3},
           "model": {"family": "physnet", "elements": ["H", "O"], "options": {"n_features": 16, "n_basis": 8}},
           "training": {"epochs": epochs, "batch_size": 16, "learning_rate": 1e-2, "ema_decay": 0.9,
                        "threads": 1, **training},
           "output": {"directory": "run"}}
    return make_config(raw, tmp_path)


@pytest.mark.parametrize("spread", [0.15, 0.5])
@pytest.mark.parametrize("family, options", [(PhysNet, {}), (PhysNet, {"coulomb_cutoff": 0.6}), (PaiNN, {}),
                                             (SchNet, {}), (HDNNP, {})],
                         ids=["PhysNet", "PhysNet-coulomb-cutoff", "PaiNN", "SchNet", "HDNNP"])
def test_batched_frames_equal_one_frame_at_a_time(family, options, spread):
    """Frames batched along the member axis against one frame at a time. With ``spread`` = 0.5 nm
    most pairs lie beyond the cutoff, so a lone frame gets narrowed (geometry-dependent) lists,
    and in the batch PhysNet and PaiNN narrow each frame's list to that frame's own pairs
    (member_pairs_within; the other families keep every pair), with a Coulomb cutoff that pairs
    cross from frame to frame."""
    torch.manual_seed(0)
    model = family(["H", "C", "O"], n_members=2, **options).double()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.2)  # non-zero output layers, so every path is exercised
    species = torch.tensor([6, 8, 8, 1, 1, 6, 8, 8, 1, 1])
    positions = torch.randn(3, 10, 3, dtype=torch.float64) * spread
    narrowed = [neighbor_list(x, model.cutoff, 9, None, compact=True)[0].shape[1] for x in positions]
    assert (max(narrowed) < 9) == (spread > 0.3)
    all_pairs = neighbor_list(positions[0], float("inf"), 9)[0]
    vectors = pair_vectors(positions, all_pairs, torch.zeros(10, 9, 3, dtype=torch.float64))
    per_frame = member_pairs_within(all_pairs, vectors, vectors.norm(dim=-1), model.cutoff)[0]
    assert (per_frame.dim() == 3) == (spread > 0.3)  # the batch's own lists, [frames, atoms, W < 9]
    batched = frame_outputs(model, species, positions)
    for b in range(3):
        x = positions[b].clone().requires_grad_(True)
        energies = model.evaluate(species, x)["energy"]
        forces = torch.stack([-torch.autograd.grad(energies[m], x, retain_graph=True)[0] for m in range(2)])
        torch.testing.assert_close(batched["energy"][:, b], energies.detach(), rtol=1e-12, atol=1e-9)
        torch.testing.assert_close(batched["forces"][:, b], forces, rtol=1e-10, atol=1e-8)


def test_a_tiny_training_run_learns_the_reference_and_writes_its_outputs(tmp_path):
    config = config_for(tmp_path, epochs=60)
    metrics = train(config, progress=False)
    run = tmp_path / "run"
    for name in ("model.pt", "metrics.json", "log.csv", "learning_curve.png", "split.json", "checkpoint.pt"):
        assert (run / name).exists(), name
    history = list(open(run / "log.csv"))[1:]
    first_forces_mae = float(history[0].split(",")[-1])
    # the fit must be much better than after one epoch and than predicting zero forces
    data = water_dataset(160)
    zero_force_mae = np.abs(data.forces).mean()
    assert metrics["test"]["forces_mae"] < 0.25 * min(first_forces_mae, zero_force_mae)
    assert metrics["test"]["energy_mae"] < 0.25 * np.abs(data.energies - data.energies.mean()).mean()
    split = json.loads((run / "split.json").read_text())
    assert sorted(split["train"] + split["validation"] + split["test"]) == list(range(160))
    module, metadata = load_potential(run / "model.pt")
    assert metadata["extra"]["split"] == split and metadata["extra"]["metrics"]["test"] == metrics["test"]
    # the loss weights as trained, charge_change resolved to the charge weight it defaults to
    assert metadata["extra"]["loss_weights"] == {"energy": 1.0, "force": 0.01, "dipole": 0.0, "charge": 0.0,
                                                 "charge_change": 0.0, "field_energy": 0.0, "coupling_energy": 0.0}
    x = torch.tensor(data.positions[split["test"][0]])
    assert float(module(torch.tensor([8, 1, 1]), x).detach()) == pytest.approx(data.energies[split["test"][0]],
                                                                        abs=20 * metrics["test"]["energy_mae"])


def test_training_only_frames_join_the_training_share_and_leave_validation_and_test_alone(tmp_path):
    """The same datasets and seed give the same validation and test frames with or without
    ``training_only`` data; its frames follow those of ``datasets`` and are all trained on, and
    ``delta_from`` names a low level for each dataset of both lists."""
    plain = config_for(tmp_path, epochs=2)
    water_dataset(30, seed=5).save(tmp_path / "more.h5")
    raw = {"data": {"datasets": ["water.h5"], "split": [0.7, 0.15, 0.15], "seed": 3, "training_only": ["more.h5"]},
           "model": {"family": "physnet", "elements": ["H", "O"], "options": {"n_features": 16, "n_basis": 8}},
           "training": {"epochs": 2, "batch_size": 16, "threads": 1}, "output": {"directory": "more-run"}}
    extended = make_config(raw, tmp_path)
    assert extended.fingerprint() != plain.fingerprint()
    train(extended, progress=False)
    split = json.loads((tmp_path / "more-run" / "split.json").read_text())
    data, n_training_only = load_training_data(extended)
    assert n_training_only == 30 and data.n_frames == 190
    assert np.array_equal(data.energies[160:], water_dataset(30, seed=5).energies)
    without = split_frames(160, [0.7, 0.15, 0.15], 3)
    assert split["validation"] == without["validation"] and split["test"] == without["test"]
    assert split["train"] == without["train"] + list(range(160, 190))
    with pytest.raises(ValueError, match="one low-level dataset per dataset"):
        make_config({"data": {**raw["data"], "delta_from": ["water.h5"]}}, tmp_path)
    # delta_from names the low levels of datasets, then of training_only: here the same files, so zero labels
    delta = make_config({"data": {**raw["data"], "delta_from": ["water.h5", "more.h5"]}}, tmp_path)
    differences, n_training_only = load_training_data(delta)
    assert n_training_only == 30 and differences.n_frames == 190
    assert np.abs(differences.energies).max() == 0 and np.abs(differences.forces).max() == 0


def test_an_electrostatic_model_file_records_both_recipes_and_is_rebuilt(tmp_path):
    """An electrostatic embedding network trained with a ``vacuum_model`` is written together with
    it; the file records both networks' recipes, and eager_potential rebuilds the pair with the
    file's energy in a field."""
    from mlmm.data.dataset import load_dataset
    from mlmm.potentials import ElectrostaticPotential

    data = Path(__file__).resolve().parents[1] / "systems" / "water"
    for name in ("water-tip3p-gfn2", "water-tip3p-gfn2-vacuum"):
        load_dataset(data / "embedding" / "data" / f"{name}.h5").subset(np.arange(20)).save(tmp_path / f"{name}.h5")
    config = make_config({"data": {"datasets": ["water-tip3p-gfn2.h5"], "delta_from": ["water-tip3p-gfn2-vacuum.h5"],
                                   "split": [0.8, 0.1, 0.1]},
                          "model": {"family": "electrostatic", "elements": ["H", "O"], "vacuum_model":
                                    str(data / "model" / "model.pt"), "options": {"n_features": 8, "n_basis": 8}},
                          "training": {"epochs": 2, "batch_size": 8, "threads": 1}, "output": {"directory": "run"}},
                         tmp_path)
    train(config, progress=False)
    scripted, metadata = load_potential(tmp_path / "run" / "model.pt")
    assert metadata["extra"]["vacuum_model"] == read_metadata(data / "model" / "model.pt")["extra"]["model"]
    assert metadata["extra"]["model"]["family"] == "electrostatic"
    eager = models.eager_potential(tmp_path / "run" / "model.pt")
    assert isinstance(eager, ElectrostaticPotential)
    species = torch.tensor([8, 1, 1])
    x = torch.tensor([[0.0, 0.0, 0.0], [0.0957, 0.0, 0.0], [-0.024, 0.0927, 0.0]], dtype=torch.float64)
    mm_x = torch.tensor([[0.3, 0.1, 0.0], [0.0, -0.35, 0.1]], dtype=torch.float64)
    mm_q = torch.tensor([0.4, -0.8], dtype=torch.float64)
    with torch.no_grad():
        assert float(eager.energy_in_field(species, x, mm_x, mm_q, 0.0)[0]) == pytest.approx(
            float(scripted.energy_in_field(species, x, mm_x, mm_q, 0.0)[0]), abs=1e-8)
    # another vacuum network (a committee of four): the embedding energy stays, the vacuum energy is the new one's
    other = data / "active-learning" / "iteration-0" / "model.pt"
    models.rescript(tmp_path / "run" / "model.pt", tmp_path / "paired.pt", vacuum=other)
    paired, paired_metadata = load_potential(tmp_path / "paired.pt")
    other_module, other_metadata = load_potential(other)
    with torch.no_grad():
        assert float(paired(species, x)) == float(other_module(species, x))
        embedding_energy = float(scripted.energy_in_field(species, x, mm_x, mm_q, 0.0)[0] - scripted(species, x))
        assert float(paired.energy_in_field(species, x, mm_x, mm_q, 0.0)[0] - paired(species, x)) == pytest.approx(
            embedding_energy, abs=1e-10)
    assert paired_metadata["extra"]["vacuum_model"] == other_metadata["extra"]["model"]
    assert paired_metadata["extra"]["vacuum_model_file"]["content_hash"] == other_metadata["content_hash"]
    assert paired_metadata["extra"]["metrics"] == metadata["extra"]["metrics"]
    with pytest.raises(ValueError, match="not trained with a vacuum model"):
        models.rescript(other, tmp_path / "refused.pt", vacuum=other)
    with pytest.raises(ValueError, match="is not a vacuum potential"):
        models.rescript(tmp_path / "run" / "model.pt", tmp_path / "refused.pt", vacuum=tmp_path / "paired.pt")


def test_an_interrupted_run_resumes_to_the_same_result(tmp_path, monkeypatch):
    config = config_for(tmp_path, epochs=6)
    reference = train(config, progress=False)
    reference_log = (tmp_path / "run" / "log.csv").read_text().splitlines()
    (tmp_path / "run" / "checkpoint.pt").unlink()

    original = Trainer._train_epoch

    def interrupt_at_epoch_4(self):
        if self.epoch == 3:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(Trainer, "_train_epoch", interrupt_at_epoch_4)
    with pytest.raises(KeyboardInterrupt):
        train(config, progress=False)
    assert len((tmp_path / "run" / "log.csv").read_text().splitlines()) == 1 + 3
    monkeypatch.setattr(Trainer, "_train_epoch", original)
    resumed = train(config, progress=False)
    assert resumed["test"] == reference["test"]  # bitwise: optimizer, EMA, RNG and schedule were restored
    resumed_log = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert [row.split(",")[2:] for row in resumed_log] == [row.split(",")[2:] for row in reference_log]


def test_a_snapshot_of_a_running_training_is_the_model_of_a_run_stopped_there(tmp_path, monkeypatch):
    """``snapshot`` reads the checkpoint of an unfinished run (3 of 6 epochs) and writes the model the
    run would write had it been configured for 3 epochs, leaving the run's own files alone."""
    for name in ("six", "three"):
        (tmp_path / name).mkdir()
    config = config_for(tmp_path / "six", epochs=6)
    with pytest.raises(ValueError, match="no checkpoint"):
        train(config, progress=False, snapshot=tmp_path / "snapshot")
    original = Trainer._train_epoch

    def interrupt_at_epoch_4(self):
        if self.epoch == 3:
            raise KeyboardInterrupt
        return original(self)

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "_train_epoch", interrupt_at_epoch_4)
        with pytest.raises(KeyboardInterrupt):
            train(config, progress=False)
    with pytest.raises(ValueError, match="directory of its own"):
        train(config, progress=False, snapshot=tmp_path / "six" / "run")
    checkpoint = (tmp_path / "six" / "run" / "checkpoint.pt").read_bytes()
    snapshot = train(config, progress=False, snapshot=tmp_path / "snapshot")
    assert (tmp_path / "six" / "run" / "checkpoint.pt").read_bytes() == checkpoint
    assert not (tmp_path / "six" / "run" / "model.pt").exists()
    stopped = train(config_for(tmp_path / "three", epochs=3), progress=False)
    assert snapshot["test"] == stopped["test"] and snapshot["epochs"] == 3
    x, species = torch.tensor(water_dataset(160).positions[0]), torch.tensor([8, 1, 1])
    energies = [float(load_potential(path)[0](species, x).detach())
                for path in (tmp_path / "snapshot" / "model.pt", tmp_path / "three" / "run" / "model.pt")]
    assert energies[0] == energies[1]
    for name in ("split.json", "log.csv"):
        assert (tmp_path / "snapshot" / name).read_text() == (tmp_path / "six" / "run" / name).read_text()


def test_the_model_is_compiled_before_the_first_epoch(tmp_path, monkeypatch):
    """A model TorchScript cannot compile fails before any training, and model.pt holds the code
    compiled at the start: the end of a run needs no compiler (editing the source during a long
    run once broke its final compile)."""
    config = config_for(tmp_path, epochs=3)

    def refuse(*args, **kwargs):
        raise RuntimeError("TorchScript refuses this model")

    with monkeypatch.context() as patch:
        patch.setattr(torch.jit, "script", refuse)
        with pytest.raises(RuntimeError, match="refuses"):
            train(config, progress=False)
    assert not (tmp_path / "run" / "log.csv").exists() and not (tmp_path / "run" / "checkpoint.pt").exists()

    original = Trainer._train_epoch
    x, species, at_start = torch.tensor(water_dataset(160).positions[0]), torch.tensor([8, 1, 1]), []

    def compiler_gone_after_start(self):
        monkeypatch.setattr(torch.jit, "script", refuse)
        if not at_start:
            at_start.append(float(self.compiled(species, x).detach()))
        return original(self)

    monkeypatch.setattr(Trainer, "_train_epoch", compiler_gone_after_start)
    trainer = Trainer(config, progress=False)
    trainer.run()
    module, _ = load_potential(tmp_path / "run" / "model.pt")
    saved = float(module(species, x).detach())
    assert saved == pytest.approx(float(trainer.model(species, x).detach()), abs=1e-9)  # the trained weights
    assert abs(saved - at_start[0]) > 1e-3  # not those the copy was compiled with


def test_a_checkpoint_of_another_configuration_is_refused(tmp_path):
    train(config_for(tmp_path, epochs=2), progress=False)
    with pytest.raises(ValueError, match="different configuration"):
        train(config_for(tmp_path, epochs=2, learning_rate=5e-3), progress=False)


def test_a_run_stopped_by_its_budget_goes_on_with_a_larger_one(tmp_path):
    """A run stopped by ``max_minutes`` (after its first epoch) or by ``epochs`` resumes when the
    configuration raises the budget, to the result of a run given the larger budget at once; a
    finished run given the same budget again trains no further."""
    for name in ("five", "parts"):
        (tmp_path / name).mkdir()
    reference = train(config_for(tmp_path / "five", epochs=5), progress=False)
    first = train(config_for(tmp_path / "parts", epochs=5, max_minutes=1e-9), progress=False)
    assert first["epochs"] == 1
    assert train(config_for(tmp_path / "parts", epochs=3), progress=False)["epochs"] == 3
    resumed = train(config_for(tmp_path / "parts", epochs=5), progress=False)
    assert resumed["epochs"] == 5 and resumed["test"] == reference["test"]  # bitwise
    again = train(config_for(tmp_path / "parts", epochs=5), progress=False)
    assert again["test"] == reference["test"]
    assert len((tmp_path / "parts" / "run" / "log.csv").read_text().splitlines()) == 1 + 5


def test_transfer_learning_keeps_frozen_layers_and_rescales_rates(tmp_path):
    train(config_for(tmp_path, epochs=3), progress=False)
    pretrained = models.rebuild(tmp_path / "run" / "model.pt")
    shifted = water_dataset(60, seed=5)
    shifted.energies = shifted.energies + 1234.0  # another level of theory: another energy zero
    shifted.save(tmp_path / "high.h5")
    raw = {"data": {"datasets": ["high.h5"], "split": [0.6, 0.2, 0.2]},
           "training": {"epochs": 3, "batch_size": 8, "threads": 1},
           "transfer": {"initial_model": "run/model.pt", "freeze": ["embedding", "blocks.0"],
                        "learning_rate_scale": {"blocks.1.filter": 0.1}},
           "output": {"directory": "fine"}}
    metrics = train(make_config(raw, tmp_path), progress=False)
    tuned = models.rebuild(tmp_path / "fine" / "model.pt")
    before, after = dict(pretrained.named_parameters()), dict(tuned.named_parameters())
    for name in before:
        changed = not torch.equal(before[name], after[name])
        assert changed != (name.startswith("embedding") or name.startswith("blocks.0")), name
    assert metrics["test"]["energy_mae"] < 50.0  # the 1234 kJ/mol offset was absorbed by the energy shifts
    assert read_metadata(tmp_path / "fine" / "model.pt")["extra"]["model"]["family"] == "physnet"
    groups = models.parameter_groups(models.rebuild(tmp_path / "run" / "model.pt"), 1e-3, [],
                                     {"blocks.1.filter": 0.1})
    assert sorted(g["lr"] for g in groups) == pytest.approx([1e-4, 1e-3])
    with pytest.raises(ValueError, match="no parameter name starts with 'nonsense'"):
        models.parameter_groups(pretrained, 1e-3, ["nonsense"], {})


def test_a_widened_network_computes_what_it_was_trained_to_and_trains_on(tmp_path):
    """widen_features adds features whose weights into the trained ones start at zero: energies,
    charges and forces of three waters are unchanged to rounding; training then uses the new
    features, and the model file records the new width."""
    train(config_for(tmp_path, epochs=3), progress=False)
    trained = models.rebuild(tmp_path / "run" / "model.pt").double()
    wide = widen_features(trained, 24)
    assert wide.hyperparameters["n_features"] == 24 and sum(p.numel() for p in wide.parameters()) > sum(
        p.numel() for p in trained.parameters())
    species = torch.tensor([8, 1, 1] * 3)
    positions = torch.tensor(np.random.default_rng(2).uniform(0.0, 0.5, (9, 3)), requires_grad=True)
    outputs = []
    for network in (trained, wide):
        energy, charges = network.energy_and_charges(species, positions, 0.0)
        outputs.append((energy, charges, torch.autograd.grad(energy, positions)[0]))
    assert abs(float(outputs[0][0].detach())) > 1.0  # a non-trivial energy (kJ/mol)
    for narrow_output, wide_output in zip(*outputs):
        torch.testing.assert_close(wide_output, narrow_output, rtol=1e-12, atol=1e-10)
    committee = PhysNet(["H", "O"], n_features=8, n_basis=8, total_charge=1.0, n_members=2).double()
    for block in committee.blocks:  # PhysNet starts from zero outputs; give the members some
        torch.nn.init.normal_(block.output.weight, std=0.5)
    assert float(committee.evaluate(species, positions.detach())["energy"].std()) > 0.01  # distinct members
    wide_committee = widen_features(committee, 12)
    assert (wide_committee.n_members, wide_committee.default_total_charge) == (2, 1.0)
    for narrow_output, wide_output in zip(committee.evaluate(species, positions.detach()).values(),
                                          wide_committee.evaluate(species, positions.detach()).values()):
        torch.testing.assert_close(wide_output, narrow_output, rtol=1e-12, atol=1e-10)
    with pytest.raises(ValueError, match="cannot bring it to 8"):
        widen_features(trained, 8)
    with pytest.raises(ValueError, match="implemented for PhysNet networks, not 'schnet'"):
        widen_features(SchNet(["H", "O"]), 64)

    raw = {"data": {"datasets": ["water.h5"], "split": [0.7, 0.15, 0.15], "seed": 3},
           "training": {"epochs": 2, "batch_size": 16, "threads": 1},
           "transfer": {"initial_model": "run/model.pt", "widen_features": 24}, "output": {"directory": "wide"}}
    train(make_config(raw, tmp_path), progress=False)
    assert read_metadata(tmp_path / "wide" / "model.pt")["extra"]["model"]["options"]["n_features"] == 24
    tuned = models.rebuild(tmp_path / "wide" / "model.pt")
    assert tuned.hyperparameters["n_features"] == 24
    assert float(tuned.blocks[0].self_dense.weight[0, 16:, :16].abs().max()) > 0.0  # new features now feed the old


def test_widening_to_the_radial_basis_size_keeps_the_filters():
    """The filters map the radial basis (not features) onto the features: when the basis has as many
    functions as the widened network has features, they must still be copied whole, not cut."""
    network = PhysNet(["H", "O"], n_features=8, n_basis=12).double()
    for block in network.blocks:  # PhysNet starts from zero outputs
        torch.nn.init.normal_(block.output.weight, std=0.5)
    species = torch.tensor([8, 1, 1] * 3)
    positions = torch.tensor(np.random.default_rng(4).uniform(0.0, 0.5, (9, 3)))
    torch.testing.assert_close(widen_features(network, 12).evaluate(species, positions)["energy"],
                               network.evaluate(species, positions)["energy"], rtol=1e-12, atol=1e-10)


def test_delta_learning_targets_are_high_minus_low_on_matched_frames():
    high = water_dataset(10)
    low = water_dataset(10).subset([7, 2, 5])
    low.energies, low.forces = low.energies * 0.5, low.forces * 0.5
    delta = subtract_low_level(high, low)
    assert delta.n_frames == 3
    np.testing.assert_allclose(np.sort(delta.energies), np.sort(0.5 * high.energies[[2, 5, 7]]))
    np.testing.assert_allclose(delta.forces, 0.5 * high.forces[[2, 5, 7]])


def test_bad_configurations_are_named():
    with pytest.raises(ValueError, match=r"unknown keys in \[training\]: \['epoch'\]"):
        make_config({"data": {"datasets": ["x.h5"]}, "training": {"epoch": 3}})
    with pytest.raises(ValueError, match="split must be three"):
        make_config({"data": {"datasets": ["x.h5"], "split": [0.5, 0.5]}})
    with pytest.raises(ValueError, match="unknown model family 'allegro'"):
        models.build("allegro", ["H"], {})


class HarmonicWaterCalculator:
    """The analytic water model as a reference calculator (what active learning labels with)."""

    program, level_of_theory, program_version, provides_mm_forces = "test", "harmonic test model", "1", False

    def settings(self) -> dict:
        return {}

    def compute(self, species, positions, total_charge=0, multiplicity=1, mm_positions=None, mm_charges=None):
        x = torch.tensor(positions, requires_grad=True)
        energy = harmonic_water(x)
        forces = -torch.autograd.grad(energy, x)[0]
        return {"energy": float(energy.detach()), "forces": forces.numpy(), "charges": np.zeros(3),
                "dipole": np.zeros(3)}


def test_active_learning_adds_flagged_frames_until_few_are_flagged(tmp_path):
    water_dataset(30, seed=1, noise=0.002).save(tmp_path / "initial.h5")  # narrow start
    raw = {"data": {"datasets": ["initial.h5"], "split": [0.8, 0.2, 0.0]},
           "model": {"family": "physnet", "elements": ["H", "O"],
                     "options": {"n_features": 16, "n_basis": 8, "n_members": 3}},
           "training": {"epochs": 40, "batch_size": 8, "learning_rate": 1e-2, "ema_decay": 0.9, "threads": 1},
           "output": {"directory": "al"}}

    def explore(committee, iteration):  # wider than the initial data, as hot MD would be
        return water_dataset(60, seed=100 + iteration, noise=0.006).subset(np.arange(60))

    reports = active_learning(make_config(raw, tmp_path), explore, HarmonicWaterCalculator(), threshold=150.0,
                              target_fraction=0.1, max_iterations=3, max_new_frames=40, n_workers=0,
                              progress=False)
    assert reports[0]["flagged_fraction"] > 0.5  # the narrow committee disagrees on wider geometries
    assert reports[1]["flagged_fraction"] < 0.5 * reports[0]["flagged_fraction"]  # the labels it asked for helped
    for before, after in zip(reports, reports[1:]):
        assert after["training_frames"] > before["training_frames"]  # 80 % of the labelled frames train
    assert len(reports) == 3 or reports[-1]["flagged_fraction"] < 0.1
    for k, report in enumerate(reports):
        assert json.loads((tmp_path / "al" / f"iteration-{k}" / "report.json").read_text()) == report
