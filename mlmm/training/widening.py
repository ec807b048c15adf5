"""Widen a trained PhysNet to more features without changing what it computes.

A network limited by its size (training and test errors alike) can go on from where it is
rather than from scratch: :func:`widen_features` returns a PhysNet with ``n_features``
features whose first features and all outputs equal the trained network's, energies, charges
and forces to rounding.

Every dense layer maps features to features (x W + b, W [members, in, out]). The widened
layers keep the trained W in their leading block; the weights from a new feature to a trained
one (and to the two outputs E_i, q_i) start at zero, so the trained features never see the new
ones, while the weights into the new features keep their fresh initialisation. Activations,
the gates and the neighbour gathering act on each feature alone, so the trained features, and
with them the outputs, are unchanged. Training then grows the zero weights from their
gradients, which the new features' non-zero values make non-zero.
"""

from __future__ import annotations

import torch

from mlmm.potentials import NeuralPotential
from mlmm.training.models import build


def widen_features(model: NeuralPotential, n_features: int, seed: int = 1) -> NeuralPotential:
    """A PhysNet of ``n_features`` features computing what the trained ``model`` computes.

    Each member of a committee is widened alike. ``seed`` fixes the fresh initialisation of the
    weights into the new features (the global random state is left as it was). Raises ValueError
    for a family other than PhysNet or fewer features than the model has.
    """
    if model.family != "physnet":
        raise ValueError(f"widening is implemented for PhysNet networks, not {model.family!r}")
    old = int(model.hyperparameters["n_features"])
    if n_features < old:
        raise ValueError(f"the network has {old} features; widening cannot bring it to {n_features} "
                         f"(give widen_features at least {old})")
    options = dict(model.hyperparameters, n_features=n_features, total_charge=model.default_total_charge,
                   n_members=model.n_members, max_neighbors=model.max_neighbors)
    dtype = next(model.parameters()).dtype
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        wide = build(model.family, model.supported_elements, options).to(dtype)
    state = wide.state_dict()
    for name, trained in model.state_dict().items():
        fresh = state[name]
        if fresh.shape == trained.shape:
            fresh.copy_(trained)
            continue
        fresh[tuple(slice(0, size) for size in trained.shape)] = trained
        if fresh.dim() == 3 and name.endswith(".weight") and fresh.shape[1] != trained.shape[1]:
            fresh[:, old:, :trained.shape[2]] = 0.0  # no path from a new feature to a trained one
    wide.load_state_dict(state)
    return wide
