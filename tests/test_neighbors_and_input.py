"""Neighbour list against brute force, and clear errors for bad input to the network potentials."""

import itertools

import pytest
import torch

from mlmm.potentials import PaiNN, PhysNet, SchNet, predict
from mlmm.potentials.neighbors import neighbor_list, pair_vectors

CELL = torch.tensor([[2.0, 0.0, 0.0], [0.7, 1.8, 0.0], [-0.6, 0.5, 1.7]], dtype=torch.float64)


def brute_force_pairs(positions, cutoff, cell):
    """All (i, j, r_ij) within cutoff, scanning the 27 neighbouring images explicitly."""
    pairs = {}
    for i, j in itertools.permutations(range(positions.shape[0]), 2):
        for shift in itertools.product((-1, 0, 1), repeat=3):
            image = positions[j] + torch.tensor(shift, dtype=torch.float64) @ cell
            distance = torch.linalg.norm(image - positions[i]).item()
            if distance < cutoff:
                pairs[(i, j)] = distance
    return pairs


@pytest.mark.parametrize("max_neighbors", [100, 20])
def test_periodic_neighbor_list_matches_brute_force(max_neighbors):
    generator = torch.Generator().manual_seed(5)
    positions = (torch.rand(60, 3, generator=generator, dtype=torch.float64) * 3.0 - 0.5) @ CELL / 2.0
    neighbors, mask, shifts, overflow = neighbor_list(positions, 0.6, max_neighbors, CELL)
    assert neighbors.shape == (60, min(max_neighbors, 59))
    assert not overflow
    vectors = pair_vectors(positions, neighbors, shifts)
    found = {(i, int(neighbors[i, k])): torch.linalg.norm(vectors[i, k]).item()
             for i in range(60) for k in range(neighbors.shape[1]) if mask[i, k]}
    expected = brute_force_pairs(positions, 0.6, CELL)
    assert found.keys() == expected.keys()
    assert max(abs(found[p] - expected[p]) for p in expected) < 1e-12


def test_neighbor_list_memory_is_linear_in_atoms_and_overflow_is_reported():
    positions = torch.rand(400, 3, dtype=torch.float64) * 3.0
    neighbors, _, shifts, overflow = neighbor_list(positions, 0.5, 32, None)
    assert neighbors.shape == (400, 32) and shifts.shape == (400, 32, 3)
    assert not overflow  # 400 atoms in 27 nm^3: about 4 neighbours each within 0.5 nm
    assert neighbor_list(positions, 1.5, 32, None)[3]  # ~210 each: more than 32
    model = SchNet(["H"], cutoff=1.5, max_neighbors=32).double()
    with pytest.raises(RuntimeError, match="max_neighbors=32"):
        model(torch.ones(400, dtype=torch.long), positions)


def test_compact_neighbor_list_holds_every_pair_within_the_cutoff_and_no_more_columns():
    generator = torch.Generator().manual_seed(3)
    positions = torch.rand(80, 3, generator=generator, dtype=torch.float64) * 1.6
    neighbors, mask, shifts, overflow = neighbor_list(positions, 0.5, 128, None, compact=True)
    counts = ((torch.cdist(positions, positions) < 0.5).sum(1) - 1)
    assert neighbors.shape == (80, int(counts.max())) and int(counts.max()) < 79 and not overflow
    vectors = pair_vectors(positions, neighbors, shifts)
    found = {(i, int(neighbors[i, k])): torch.linalg.norm(vectors[i, k]).item()
             for i in range(80) for k in range(neighbors.shape[1]) if mask[i, k]}
    expected = brute_force_pairs(positions, 0.5, torch.eye(3, dtype=torch.float64) * 100.0)
    assert found.keys() == expected.keys()
    assert neighbor_list(positions, 0.5, 8, None, compact=True)[3]  # capacity still bounds the list


def test_physnet_message_list_of_a_sparse_cluster_changes_no_energy_or_force(monkeypatch):
    """A 64-atom cluster (1.1 nm across, most pairs beyond the 0.5 nm cutoff): the separate short
    message-passing list against message passing over the all-pairs Coulomb list."""
    torch.manual_seed(1)
    model = PhysNet(["H", "O"], n_features=16, n_basis=8).double()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.2)
    generator = torch.Generator().manual_seed(4)
    positions = torch.rand(64, 3, generator=generator, dtype=torch.float64) * 1.1
    species = torch.tensor([8, 1, 1] * 21 + [8])
    weights = torch.rand(64, generator=generator, dtype=torch.float64)

    def energy_and_forces(module):
        x = positions.clone().requires_grad_(True)
        energy = module(species, x) + module.weighted_energy_and_charges(species, x, weights, 0.0)[0]
        return energy.detach(), -torch.autograd.grad(energy, x)[0]

    all_pairs = torch.linalg.norm(positions.unsqueeze(0) - positions.unsqueeze(1), dim=-1)
    assert model.short_list_pays(all_pairs[~torch.eye(64, dtype=torch.bool)].reshape(1, 64, 63))
    scripted = torch.jit.script(model)
    short_energy, short_forces = energy_and_forces(scripted)
    monkeypatch.setattr(model, "short_list_pays", lambda r: False)
    energy, forces = energy_and_forces(model)
    torch.testing.assert_close(short_energy, energy, rtol=1e-12, atol=1e-9)
    torch.testing.assert_close(short_forces, forces, rtol=1e-10, atol=1e-9)


SPECIES = torch.tensor([8, 1, 1])
WATER = torch.tensor([[0.0, 0.0, 0.0], [0.0957, 0.0, 0.0], [-0.024, 0.0927, 0.0]])


@pytest.mark.parametrize("species, positions, cell, error, message", [
    (torch.tensor([8, 1, 17]), WATER, None, ValueError, "atom 2 is Cl .* not support"),
    (SPECIES, WATER * torch.tensor([[1.0], [float("nan")], [1.0]]), None, ValueError, "atom 1 are not finite"),
    (SPECIES, WATER + torch.tensor([[0.0, 0.0, float("inf")], [0, 0, 0], [0, 0, 0]]), None, ValueError,
     "atom 0 are not finite"),
    (SPECIES, WATER * 0.05, None, ValueError, r"atoms \d and \d are .* nm apart"),
    (SPECIES, WATER[:2], None, ValueError, "species has 3 atoms but positions has 2"),
    (SPECIES, WATER[:, :2], None, TypeError, r"shape \(n, 3\)"),
    (SPECIES.double(), WATER, None, TypeError, "int64"),
    (SPECIES, WATER.long(), None, TypeError, "floating-point"),
    ([8, 1, 1], WATER, None, TypeError, "torch tensors"),
    (SPECIES, WATER, torch.eye(3) * 0.8, ValueError, "no Coulomb cutoff"),
])
def test_bad_input_is_refused_with_a_clear_error(species, positions, cell, error, message):
    with pytest.raises(error, match=message):
        predict(PhysNet(["H", "O"]), species, positions, cell)


def test_cell_too_small_or_not_reduced():
    model = PhysNet(["H", "O"], coulomb_cutoff=0.6)
    with pytest.raises(ValueError, match="exceeds half the smallest cell width"):
        predict(model, SPECIES, WATER, torch.eye(3) * 1.0)
    with pytest.raises(ValueError, match="reduced"):
        predict(model, SPECIES, WATER, torch.tensor([[2.0, 0.0, 0.0], [1.5, 2.0, 0.0], [0.0, 0.0, 2.0]]))


def test_unknown_element_and_bad_options_at_construction():
    with pytest.raises(ValueError, match="unknown element symbol 'Xx'"):
        PhysNet(["H", "Xx"])
    with pytest.raises(ValueError, match="D2 dispersion has parameters for H..Ar only"):
        PhysNet(["H", "Br"], dispersion_s6=0.75)
    with pytest.raises(ValueError, match="coulomb_cutoff"):
        PhysNet(["H"], cutoff=0.5, coulomb_cutoff=0.3)
    with pytest.raises(ValueError, match="n_modules must be at least 1, got 0"):
        PaiNN(["H"], n_modules=0)
