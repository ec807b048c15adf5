"""Network potentials (PhysNet- and PaiNN-style, SchNet, HDNNP-wACSF): symmetry, forces, smoothness,
charges, periodicity.

All checks are against independent references: rotated/permuted copies of the input,
central finite differences, sum q_i r_i, and an explicit replicated cluster.
"""

import math

import pytest
import torch

from mlmm.potentials import HDNNP, PaiNN, PhysNet, SchNet, predict

ELEMENTS = ["H", "C", "N", "O"]
# Ethanol-like molecule plus a water (nm); two sets of like atoms to permute.
SPECIES = torch.tensor([6, 6, 8, 1, 1, 1, 1, 1, 1, 8, 1, 1])
POSITIONS = torch.tensor([
    [0.000, 0.000, 0.000], [0.152, 0.000, 0.000], [0.200, 0.135, 0.000], [-0.036, -0.103, 0.004],
    [-0.039, 0.050, 0.090], [-0.036, 0.052, -0.089], [0.190, -0.052, 0.089], [0.188, -0.054, -0.088],
    [0.297, 0.133, 0.003], [0.150, 0.390, 0.050], [0.180, 0.300, 0.030], [0.060, 0.395, 0.020],
], dtype=torch.float64)
FAMILIES = {"physnet": PhysNet, "painn": PaiNN, "schnet": SchNet, "hdnnp": HDNNP}
CHARGE_FAMILIES = ("physnet", "painn")  # charges, Coulomb term, total charge
SMALL = {"physnet": dict(n_features=16, n_basis=8), "painn": dict(n_features=16, n_basis=8),
         "schnet": dict(n_features=16, n_basis=8),
         "hdnnp": dict(n_radial=6, angular_etas=(4.0,), hidden=(8,))}


def make_model(family: str, seed: int = 0, **options) -> torch.nn.Module:
    """A float64 model with random weights (PhysNet's zero-initialised output layers randomised too)."""
    torch.manual_seed(seed)
    model = FAMILIES[family](ELEMENTS, **{**SMALL[family], **options})
    for name, parameter in model.named_parameters():
        if name.endswith("output.weight"):
            torch.nn.init.normal_(parameter, std=0.3)
    return model.double()


def energy_and_forces(model, species, positions, cell=None, total_charge=None):
    x = positions.clone().requires_grad_(True)
    energy = model.evaluate(species, x, cell, total_charge)["energy"].mean(0)
    return energy.detach(), -torch.autograd.grad(energy, x)[0]


def random_rotation(seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    return q if torch.det(q) > 0 else -q


@pytest.fixture(params=list(FAMILIES))
def family(request):
    return request.param


def test_rotation_translation_permutation_invariance(family):
    model = make_model(family)
    energy, forces = energy_and_forces(model, SPECIES, POSITIONS)
    rotation = random_rotation(1)
    moved = POSITIONS @ rotation.T + torch.tensor([0.7, -1.3, 2.1], dtype=torch.float64)
    energy_moved, forces_moved = energy_and_forces(model, SPECIES, moved)
    assert abs(energy_moved - energy) <= 1e-5 * abs(energy) + 1e-10
    torch.testing.assert_close(forces_moved, forces @ rotation.T, rtol=1e-5, atol=1e-8)
    order = torch.tensor([1, 0, 2, 5, 3, 4, 8, 6, 7, 9, 11, 10])  # swap C's, permute H's within the molecule
    assert torch.equal(SPECIES[order], SPECIES)
    energy_permuted, forces_permuted = energy_and_forces(model, SPECIES, POSITIONS[order])
    assert abs(energy_permuted - energy) <= 1e-5 * abs(energy) + 1e-10
    torch.testing.assert_close(forces_permuted, forces[order], rtol=1e-5, atol=1e-8)


def test_forces_are_minus_the_gradient(family):
    """Autograd forces against central finite differences (h = 1e-5 nm, float64)."""
    model = make_model(family, coulomb_cutoff=0.6) if family in CHARGE_FAMILIES else make_model(family)
    _, forces = energy_and_forces(model, SPECIES, POSITIONS)
    h = 1e-5
    for atom, axis in [(0, 0), (2, 1), (4, 2), (9, 0), (11, 1)]:
        plus, minus = POSITIONS.clone(), POSITIONS.clone()
        plus[atom, axis] += h
        minus[atom, axis] -= h
        numeric = -(model(SPECIES, plus) - model(SPECIES, minus)).item() / (2 * h)
        assert abs(numeric - forces[atom, axis].item()) <= 1e-6 * forces.abs().max().item()


def test_energy_and_forces_continuous_across_the_cutoff(family):
    """A hydrogen moved through r_c = 0.5 nm of the molecule's nearest atom: E and F have no jump.

    Over a 2e-7 nm step the energy may change only by the work of the force (PhysNet's Coulomb
    term reaches beyond r_c, so its force there is not zero), and the force by rounding: the
    cutoff function is C2, so any step at r_c would be a jump.
    """
    model = make_model(family)
    species = torch.cat([SPECIES[:9], torch.tensor([1])])
    nearest = POSITIONS[2]  # the O; every other atom of the molecule is farther from the probe
    direction = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    steps = []
    for offset in (-1e-7, 1e-7):
        probe = nearest + (model.cutoff + offset) * direction
        steps.append(energy_and_forces(model, species, torch.cat([POSITIONS[:9], probe[None]])))
    (e_in, f_in), (e_out, f_out) = steps
    work = -(f_in[-1] @ direction) * 2e-7
    assert abs(e_out - e_in - work) < 1e-9 * max(1.0, abs(e_in))
    assert (f_out - f_in).abs().max() < 1e-6 * max(1.0, f_in.abs().max().item())


def test_polynomial_cutoff_value_and_slope_vanish():
    from mlmm.potentials.layers import polynomial_cutoff
    r = torch.tensor([0.0, 0.5 - 1e-6, 0.5, 0.6], dtype=torch.float64, requires_grad=True)
    f = polynomial_cutoff(r, 0.5)
    (slope,) = torch.autograd.grad(f.sum(), r)
    assert f[0] == 1.0 and f[2] == 0.0 and f[3] == 0.0
    assert abs(f[1].item()) < 1e-15 and abs(slope[1].item()) < 1e-9 and slope[2] == 0.0


@pytest.mark.parametrize("charge_family", CHARGE_FAMILIES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("total_charge", [0.0, -1.0, 1.0])
def test_total_charge_conserved(charge_family, dtype, total_charge):
    model = make_model(charge_family).to(dtype)
    charges = model.evaluate(SPECIES, POSITIONS.to(dtype), None, total_charge)["charges"]
    assert charges.dtype == dtype
    assert (charges.double().sum(-1) - total_charge).abs().max() <= 1e-6
    assert charges.std() > 1e-3  # the charges are predicted, not uniform


@pytest.mark.parametrize("charge_family", CHARGE_FAMILIES)
def test_dipole_is_sum_of_charge_times_position_and_rotates(charge_family):
    model = make_model(charge_family)
    outputs = model.evaluate(SPECIES, POSITIONS, None, 0.0)
    expected = (outputs["charges"][0, :, None] * POSITIONS).sum(0)
    torch.testing.assert_close(outputs["dipole"][0], expected, rtol=1e-12, atol=1e-14)
    rotation = random_rotation(3)
    rotated = model.evaluate(SPECIES, POSITIONS @ rotation.T, None, 0.0)["dipole"][0]
    torch.testing.assert_close(rotated, rotation @ outputs["dipole"][0], rtol=1e-6, atol=1e-12)
    assert outputs["dipole"][0].norm() > 1e-4


CELL = torch.tensor([[1.2, 0.0, 0.0], [0.3, 1.1, 0.0], [-0.2, 0.4, 1.15]], dtype=torch.float64)
CELL_SPECIES = torch.tensor([8, 1, 1, 6, 7, 1, 1, 6])


def cell_positions() -> torch.Tensor:
    """Eight atoms in the triclinic cell, some bonded only through images, two outside the cell."""
    fractional = torch.tensor([[0.05, 0.1, 0.1], [0.12, 0.18, 0.1], [0.02, 0.17, 0.2], [0.9, 0.05, 0.08],
                               [0.5, 0.5, 0.5], [1.55, 0.6, -0.08], [0.48, 0.38, 1.05], [0.6, 0.55, 0.45]],
                              dtype=torch.float64)
    return fractional @ CELL


def replicate(positions: torch.Tensor, reach: int) -> torch.Tensor:
    """The cell's atoms first, then every image n_a a + n_b b + n_c c with |n| <= reach."""
    shifts = [torch.tensor([i, j, k], dtype=torch.float64) @ CELL
              for i in range(-reach, reach + 1) for j in range(-reach, reach + 1) for k in range(-reach, reach + 1)
              if (i, j, k) != (0, 0, 0)]
    return torch.cat([positions] + [positions + s for s in shifts])


def test_periodic_cell_equals_replicated_cluster(family):
    """Atomic energies of the cell's atoms in a periodic evaluation equal those of the same atoms
    at the centre of an explicit 5x5x5 cluster, which holds all atoms within 2 cell widths (more
    than the receptive field: up to 3 x 0.5 nm of message passing plus the 0.5 nm Coulomb cutoff).

    PhysNet's uniform charge correction depends on the whole system; the finite cluster's edge
    atoms have different raw charges, so the cluster's total charge is set such that its
    correction equals the periodic one (fixed by the first atom, then tested on all others).
    """
    options = dict(max_neighbors=24)
    if family in CHARGE_FAMILIES:
        options["coulomb_cutoff"] = 0.5
    model = make_model(family, **options)
    positions = cell_positions()
    n = positions.shape[0]
    periodic = model.evaluate(CELL_SPECIES, positions, CELL, 0.0)
    cluster_positions = replicate(positions, 2)
    cluster_species = CELL_SPECIES.repeat(cluster_positions.shape[0] // n)
    total_charge = 0.0
    if family in CHARGE_FAMILIES:
        neutral = model.evaluate(cluster_species, cluster_positions, None, 0.0)["charges"][0]
        total_charge = cluster_positions.shape[0] * (periodic["charges"][0, 0] - neutral[0]).item()
    cluster = model.evaluate(cluster_species, cluster_positions, None, total_charge)
    torch.testing.assert_close(cluster["atomic_energies"][0, :n], periodic["atomic_energies"][0],
                               rtol=1e-9, atol=1e-9)
    if family in CHARGE_FAMILIES:
        torch.testing.assert_close(cluster["charges"][0, :n], periodic["charges"][0], rtol=1e-9, atol=1e-12)
    assert periodic["energy"][0].item() == pytest.approx(periodic["atomic_energies"][0].sum().item(), rel=1e-12)
    # The periodic result really uses images: the same atoms without the cell differ.
    assert abs(model.evaluate(CELL_SPECIES, positions)["energy"][0] - periodic["energy"][0]) > 1e-3


def test_float32_matches_float64_and_script_round_trip(family, tmp_path):
    model = make_model(family)
    energy64, forces64 = energy_and_forces(model, SPECIES, POSITIONS)
    model32 = make_model(family).float()
    energy32, forces32 = energy_and_forces(model32, SPECIES, POSITIONS.float())
    assert energy32.dtype == torch.float32
    assert abs(energy32.double() - energy64) <= 1e-5 * abs(energy64) + 1e-4
    torch.testing.assert_close(forces32.double(), forces64, rtol=1e-3, atol=1e-3)
    path = tmp_path / "model.pt"
    torch.jit.save(torch.jit.script(model), str(path))
    loaded = torch.jit.load(str(path))
    for _ in range(3):  # the profiling executor recompiles on the second and third call
        energy_loaded, forces_loaded = energy_and_forces(loaded, SPECIES, POSITIONS)
        torch.testing.assert_close(energy_loaded, energy64, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(forces_loaded, forces64, rtol=1e-12, atol=1e-12)


def test_scripted_model_keeps_gradients_after_a_call_without_them(family):
    scripted = torch.jit.script(make_model(family))
    with torch.no_grad():
        scripted(SPECIES, POSITIONS)
    _, forces = energy_and_forces(scripted, SPECIES, POSITIONS)
    assert forces.abs().max() > 0


def test_predict_returns_consistent_outputs():
    model = make_model("physnet", n_members=3)
    result = predict(torch.jit.script(model), SPECIES, POSITIONS, total_charge=1.0)
    assert result["forces"].shape == (12, 3) and result["force_std"].shape == (12,)
    assert result["charges"].sum().item() == pytest.approx(1.0, abs=1e-9)
    expected = model.evaluate(SPECIES, POSITIONS, None, 1.0)["energy"].mean()
    assert result["energy"].item() == pytest.approx(expected.item(), rel=1e-12)
    assert result["energy_std"] > 0 and math.isfinite(result["energy_std"].item())
