"""The mean of potentials of different architectures (mlmm.potentials.mean) against its members."""

import json

import numpy as np
import pytest
import torch

import mlmm
from mlmm.cli import main
from mlmm.potentials import (ElectrostaticPotential, PhysNet, VacuumAnchoredBuffer, average_potentials, load_potential,
                             save_potential)
from mlmm.potentials.mean import BufferPotentialMean, PotentialMean, error_weights, save_mean
from conftest import evaluate
from test_buffer import ML_GROUP, WATER, waters
from test_electrostatic import random_head
from test_networks import POSITIONS, SPECIES, make_model


@pytest.fixture(scope="module")
def members():
    """A PhysNet and a PaiNN with random weights (different parameter shapes: no batched committee)."""
    return [make_model("physnet", seed=1), make_model("painn", seed=2)]


def _energy_and_forces(function, positions):
    x = positions.clone().requires_grad_(True)
    energy = function(x)
    return energy.detach(), -torch.autograd.grad(energy, x)[0]


def test_the_mean_is_the_mean_of_its_members_energies_forces_and_charges(members, tmp_path):
    """Energy, forces, charges and weighted (buffer) energies of the mean, eager and saved, equal the
    averages of each member's own; the charges keep the total charge."""
    mean = average_potentials(members)
    assert isinstance(mean, BufferPotentialMean) and mean.supported_elements == [1, 6, 7, 8]
    saved, _ = load_potential(save_potential(mean, tmp_path / "mean.pt"))
    weights = torch.linspace(1.0, 0.2, len(SPECIES), dtype=torch.float64)
    for model in (mean, saved):
        energy, forces = _energy_and_forces(lambda x: model(SPECIES, x), POSITIONS)
        member_results = [_energy_and_forces(lambda x: m(SPECIES, x), POSITIONS) for m in members]
        assert energy.item() == pytest.approx(np.mean([e.item() for e, _ in member_results]), abs=1e-10)
        assert torch.allclose(forces, sum(f for _, f in member_results) / 2, atol=1e-9)
        assert abs(member_results[0][0] - member_results[1][0]) > 1.0  # the members differ

        e, q = model.energy_and_charges(SPECIES, POSITIONS, 1.0)
        member_charged = [m.energy_and_charges(SPECIES, POSITIONS, 1.0) for m in members]
        assert e.item() == pytest.approx(np.mean([c[0].item() for c in member_charged]), abs=1e-10)
        assert torch.allclose(q, (member_charged[0][1] + member_charged[1][1]) / 2, atol=1e-12)
        assert q.sum().item() == pytest.approx(1.0, abs=1e-10)

        e_w, q_w = model.weighted_energy_and_charges(SPECIES, POSITIONS, weights, 0.0)
        member_weighted = [m.weighted_energy_and_charges(SPECIES, POSITIONS, weights, 0.0) for m in members]
        assert e_w.item() == pytest.approx(np.mean([w[0].item() for w in member_weighted]), abs=1e-10)
        assert torch.allclose(q_w, (member_weighted[0][1] + member_weighted[1][1]) / 2, atol=1e-12)


def test_a_weighted_mean_weighs_its_members_energies_forces_and_charges(members, tmp_path):
    """Weights 3 : 1 (normalized to 0.75 / 0.25): energy, forces, charges and weighted buffer energies of the
    mean, eager and saved through `mlmm average --weights`, are the weighted sums of the members' own."""
    paths = [save_potential(m, tmp_path / f"member{k}.pt") for k, m in enumerate(members)]
    assert main(["average", *map(str, paths), "--output", str(tmp_path / "mean.pt"), "--weights", "3", "1"]) == 0
    saved, metadata = load_potential(tmp_path / "mean.pt")
    assert [m["weight"] for m in metadata["extra"]["members"]] == [0.75, 0.25]
    weights = torch.linspace(1.0, 0.2, len(SPECIES), dtype=torch.float64)
    for model in (average_potentials(members, [3.0, 1.0]), saved):
        energy, forces = _energy_and_forces(lambda x: model(SPECIES, x), POSITIONS)
        (e_a, f_a), (e_b, f_b) = [_energy_and_forces(lambda x: m(SPECIES, x), POSITIONS) for m in members]
        assert energy.item() == pytest.approx(0.75 * e_a.item() + 0.25 * e_b.item(), abs=1e-10)
        assert torch.allclose(forces, 0.75 * f_a + 0.25 * f_b, atol=1e-9)
        e, q = model.energy_and_charges(SPECIES, POSITIONS, 1.0)
        (e_a, q_a), (e_b, q_b) = [m.energy_and_charges(SPECIES, POSITIONS, 1.0) for m in members]
        assert e.item() == pytest.approx(0.75 * e_a.item() + 0.25 * e_b.item(), abs=1e-10)
        assert torch.allclose(q, 0.75 * q_a + 0.25 * q_b, atol=1e-12) and q.sum().item() == pytest.approx(1.0)
        e_w, q_w = model.weighted_energy_and_charges(SPECIES, POSITIONS, weights, 0.0)
        (e_a, q_a), (e_b, q_b) = [m.weighted_energy_and_charges(SPECIES, POSITIONS, weights, 0.0) for m in members]
        assert e_w.item() == pytest.approx(0.75 * e_a.item() + 0.25 * e_b.item(), abs=1e-10)
        assert torch.allclose(q_w, 0.75 * q_a + 0.25 * q_b, atol=1e-12)
    for bad in ([1.0], [1.0, -1.0], [1.0, float("nan")]):
        with pytest.raises(ValueError, match="positive finite weights"):
            average_potentials(members, bad)


def test_fitted_weights_minimize_the_squared_error_of_the_mean(members, tmp_path, capsys):
    """error_weights against a brute-force scan of the mean's squared error over the weight of the first
    member; refused where the least-squares weight of a member is not positive; `mlmm average --fit-weights`
    reads the members' errors from their evaluation files and stores the fitted weights."""
    rng = np.random.default_rng(0)
    common = rng.normal(size=200)
    errors = np.stack([common + rng.normal(0.3, 1.0, 200), 0.5 * common + rng.normal(-0.2, 2.0, 200)])
    weights = error_weights(errors)
    scan = np.linspace(0.0, 1.0, 100001)
    squared = [np.mean((w * errors[0] + (1 - w) * errors[1]) ** 2) for w in scan]
    assert weights.sum() == pytest.approx(1.0) and weights[0] == pytest.approx(scan[int(np.argmin(squared))], abs=2e-5)
    assert 0.5 < weights[0] < 0.95  # neither member alone
    with pytest.raises(ValueError, match="no positive weight"):
        error_weights([errors[0], 1.5 * errors[0] + rng.normal(0.0, 0.01, 200)])
    with pytest.raises(ValueError, match="two or more members"):
        error_weights(errors[:1])
    with pytest.raises(ValueError, match="linearly dependent"):
        error_weights([errors[0], errors[0]])
    paths = [save_potential(m, tmp_path / f"member{k}.pt") for k, m in enumerate(members)]
    files = []
    for k, e in enumerate(errors):
        files.append(tmp_path / f"errors{k}.json")
        files[-1].write_text(json.dumps({"energy_errors": e.tolist()}))
    capsys.readouterr()
    assert main(["average", *map(str, paths), "--output", str(tmp_path / "mean.pt"),
                 "--fit-weights", *map(str, files)]) == 0
    assert "fitted on 200 frames" in capsys.readouterr().out
    _, metadata = load_potential(tmp_path / "mean.pt")
    assert [m["weight"] for m in metadata["extra"]["members"]] == pytest.approx(weights.tolist(), rel=1e-12)
    assert main(["average", *map(str, paths), "--output", str(tmp_path / "mean.pt"), "--fit-weights",
                 str(files[0])]) == 1


def test_the_spread_of_the_members_is_the_uncertainty_of_the_mean(members, tmp_path):
    """energy_and_uncertainty: the sample standard deviation over the members of their energies and of
    each atom's force vector (eager and saved), what the UncertaintyReporter writes."""
    mean = average_potentials(members)
    results = [_energy_and_forces(lambda x: m(SPECIES, x), POSITIONS) for m in members]
    energies = torch.stack([e for e, _ in results])
    forces = torch.stack([f for _, f in results])
    expected_sigma_f = torch.sqrt(((forces - forces.mean(0)) ** 2).sum(0).sum(-1) / (len(members) - 1))
    saved, _ = load_potential(save_potential(mean, tmp_path / "mean.pt"))
    for model in (mean, saved):
        energy, sigma_e, sigma_f = model.energy_and_uncertainty(SPECIES, POSITIONS)
        assert energy.item() == pytest.approx(energies.mean().item(), abs=1e-10)
        assert sigma_e.item() == pytest.approx(abs(energies[0] - energies[1]).item() / 2 ** 0.5, rel=1e-10)
        assert torch.allclose(sigma_f, expected_sigma_f, atol=1e-9) and sigma_f.min() > 0
    mlmm.UncertaintyReporter(tmp_path / "uncertainty.csv", 10, saved, range(len(SPECIES)))


def test_the_mean_buffer_embedding_is_the_mean_of_the_members_embeddings(members, tmp_path, capsys):
    """embedding='buffer' (ML water, one water inside the buffer, one in its switching shell, one beyond it)
    with the file `mlmm average` writes: the scheme is linear in the network's energies and charges, so its
    energy and the forces on every atom are the means of the schemes run with each member."""
    paths = [save_potential(m, tmp_path / f"member{k}.pt", extra={"buffer_outer_coupling": "charge-difference"})
             for k, m in enumerate(members)]
    assert main(["average", *map(str, paths), "--output", str(tmp_path / "mean" / "model.pt")]) == 0
    _, metadata = load_potential(tmp_path / "mean" / "model.pt")
    assert [m["architecture"]["family"] for m in metadata["extra"]["members"]] == ["physnet", "painn"]
    assert metadata["extra"]["buffer_outer_coupling"] == "charge-difference"
    capsys.readouterr()
    assert main(["info", str(tmp_path / "mean" / "model.pt")]) == 0
    members_line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("members"))
    first = metadata["extra"]["members"][0]
    assert f"member0.pt (physnet, hash {first['content_hash'][:12]}, weight 0.5)" in members_line

    topology, mm_system = waters(4)
    tilt = np.array([[0.0, 0.0, 0.0], [0.0, 0.0957, 0.0], [0.0927, 0.0, 0.024]])
    positions = np.vstack([WATER] + [tilt + [0.0, 0.0, z] for z in (0.28, 0.43, 0.7)])
    results = []
    for path in [*paths, tmp_path / "mean" / "model.pt"]:
        system = mlmm.create_mixed_system(topology, mm_system, [0, 1, 2], str(path), embedding="buffer",
                                          buffer_cutoff=0.5, buffer_switch_distance=0.35, cutoff=1.0,
                                          switch_distance=0.9, force_group=ML_GROUP)
        results.append(evaluate(system, positions, groups={ML_GROUP}))
    (e_a, f_a), (e_b, f_b), (e_mean, f_mean) = results
    assert abs(e_a - e_b) > 1.0
    assert e_mean == pytest.approx((e_a + e_b) / 2, abs=1e-8)
    assert np.allclose(f_mean, (f_a + f_b) / 2, atol=1e-6) and np.abs(f_a - f_b).max() > 1.0


def test_anchored_members_share_their_vacuum_potential(members):
    """Vacuum-anchored buffer networks on one vacuum potential average to that potential anchoring the mean
    of their networks; on different ones they are refused."""
    vacuum = make_model("physnet", seed=5)
    anchored = [VacuumAnchoredBuffer(vacuum, m) for m in members]
    mean = average_potentials(anchored)
    assert isinstance(mean, VacuumAnchoredBuffer) and isinstance(mean.network, BufferPotentialMean)
    expected = np.mean([m(SPECIES, POSITIONS).item() for m in anchored])
    assert mean(SPECIES, POSITIONS).item() == pytest.approx(expected, abs=1e-10)
    with pytest.raises(ValueError, match="different vacuum potentials"):
        average_potentials([anchored[0], VacuumAnchoredBuffer(make_model("physnet", seed=6), members[1])])
    with pytest.raises(ValueError, match="all or none"):
        average_potentials([anchored[0], members[1]])


def test_members_without_charges_average_their_energies_only(members):
    """A SchNet predicts no charges, so its mean with a PhysNet exports the energy alone."""
    mean = average_potentials([members[0], make_model("schnet", seed=3)])
    assert type(mean) is PotentialMean and not hasattr(mean, "energy_and_charges")
    torch.jit.script(mean)


def test_bad_means_are_refused(members, tmp_path):
    with pytest.raises(ValueError, match="at least two members"):
        average_potentials(members[:1])
    with pytest.raises(ValueError, match="share no element"):
        average_potentials([members[0], PhysNet(["S"], n_features=8, n_basis=4).double()])
    with pytest.raises(ValueError, match="electrostatic embedding models cannot be averaged"):
        average_potentials([members[0], ElectrostaticPotential(members[0], random_head())])
    paths = [save_potential(m, tmp_path / f"m{k}.pt", extra={"buffer_outer_coupling": c})
             for k, (m, c) in enumerate(zip(members, ["ml-charges", "charge-difference"]))]
    with pytest.raises(ValueError, match="different outer couplings"):
        save_mean(paths, tmp_path / "mean.pt")
