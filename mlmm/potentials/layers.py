"""Building blocks of the neural-network potentials: cutoffs, radial bases, member-batched layers.

Every learnable layer carries a leading *member* dimension M, so a committee of M models
runs as one batched evaluation (``torch.baddbmm``) instead of M separate ones; a single
model is M = 1. Activations are shaped [M, n, features]. All functions are TorchScript-able
and free of host synchronisation.
"""

from __future__ import annotations

import math

import torch

#: Periodic table symbols indexed by atomic number (index 0 unused).
ELEMENT_SYMBOLS = (
    "X H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se Br Kr "
    "Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd Tb Dy Ho Er Tm Yb Lu "
    "Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac Th Pa U Np Pu Am Cm Bk Cf Es Fm Md No Lr Rf Db Sg "
    "Bh Hs Mt Ds Rg Cn Nh Fl Mc Lv Ts Og").split()
MAX_ATOMIC_NUMBER = len(ELEMENT_SYMBOLS) - 1


def atomic_number(element) -> int:
    """Atomic number of ``element`` given as a symbol ("O") or a number (8)."""
    if isinstance(element, str):
        if element not in ELEMENT_SYMBOLS[1:]:
            raise ValueError(f"unknown element symbol {element!r}; use a symbol such as 'C' or an atomic number")
        return ELEMENT_SYMBOLS.index(element)
    z = int(element)
    if not 1 <= z <= MAX_ATOMIC_NUMBER:
        raise ValueError(f"atomic number {z} is outside 1..{MAX_ATOMIC_NUMBER}")
    return z


def smooth_switch(distance: torch.Tensor, switch_distance: float, cutoff: float) -> torch.Tensor:
    """C2 switch: 1 below ``switch_distance``, 0 from ``cutoff`` on (both in nm).

    S(x) = 1 - 10x^3 + 15x^4 - 6x^5 with x = (d - r_s)/(r_c - r_s), the polynomial OpenMM
    uses for its Lennard-Jones switch; value, slope and curvature vanish at the cutoff.
    """
    x = torch.clamp((distance - switch_distance) / (cutoff - switch_distance), 0.0, 1.0)
    return 1.0 - x * x * x * (10.0 - 15.0 * x + 6.0 * x * x)


def polynomial_cutoff(distance: torch.Tensor, cutoff: float) -> torch.Tensor:
    """Cutoff function f_c(r) = 1 - 10x^3 + 15x^4 - 6x^5, x = r/r_c, zero beyond r_c (nm).

    f_c(0) = 1 and value, slope and curvature vanish at r_c; cheaper than the cosine cutoff.
    """
    return smooth_switch(distance, 0.0, cutoff)


def shifted_softplus(x: torch.Tensor) -> torch.Tensor:
    """ln(1 + e^x) - ln 2: smooth, zero at zero (SchNet's and PhysNet's activation)."""
    return torch.nn.functional.softplus(x) - math.log(2.0)


def gather_neighbors(features: torch.Tensor, neighbors: torch.Tensor) -> torch.Tensor:
    """Features of each listed neighbour: [M, n, F] with ``neighbors`` [n, K] (one list for every
    member) or [M, n, K] (a list of each member's own, for frames batched along the member axis)
    -> [M, n, K, F]."""
    m, f = features.shape[0], features.shape[-1]
    n, k = neighbors.shape[-2], neighbors.shape[-1]
    if neighbors.dim() == 2:
        return features.index_select(1, neighbors.reshape(-1)).reshape(m, n, k, f)
    return features.gather(1, neighbors.reshape(m, n * k, 1).expand(m, n * k, f)).reshape(m, n, k, f)


class GaussianBasis(torch.nn.Module):
    """Gaussians exp(-(r - mu_k)^2 / (2 sigma^2)) on an even grid of ``n_basis`` centres in [0, r_c] nm.

    Returns [..., n_basis]; the width sigma equals the grid spacing.
    """

    def __init__(self, n_basis: int, cutoff: float):
        super().__init__()
        centres = torch.linspace(0.0, cutoff, n_basis)
        self.register_buffer("centres", centres)
        self.inv_two_sigma2 = 1.0 / (2.0 * float(centres[1] - centres[0]) ** 2)

    def forward(self, distance: torch.Tensor) -> torch.Tensor:
        diff = distance.unsqueeze(-1) - self.centres
        return torch.exp(-self.inv_two_sigma2 * diff * diff)


class ExpNormalBasis(torch.nn.Module):
    """PhysNet's basis f_c(r) exp(-beta (exp(-r/l) - mu_k)^2), l = 0.1 nm (PhysNet works in Angstrom).

    Centres mu_k are spaced evenly between exp(-r_c/l) and 1, beta = (2 (1 - exp(-r_c/l)) / n)^-2;
    the cutoff factor makes each function vanish smoothly at r_c. Returns [..., n_basis].
    """

    def __init__(self, n_basis: int, cutoff: float):
        super().__init__()
        self.length_unit = 0.1
        low = math.exp(-cutoff / self.length_unit)
        self.register_buffer("centres", torch.linspace(low, 1.0, n_basis))
        self.beta = (2.0 * (1.0 - low) / n_basis) ** -2
        self.cutoff = float(cutoff)

    def forward(self, distance: torch.Tensor) -> torch.Tensor:
        diff = torch.exp(-distance / self.length_unit).unsqueeze(-1) - self.centres
        return polynomial_cutoff(distance, self.cutoff).unsqueeze(-1) * torch.exp(-self.beta * diff * diff)


class MemberLinear(torch.nn.Module):
    """y = x W_m + b_m for each committee member m: x [M, ..., in] -> [M, ..., out].

    Weights are initialised independently per member (Glorot-uniform), biases at zero.
    """

    def __init__(self, n_members: int, n_in: int, n_out: int, bias: bool = True):
        super().__init__()
        bound = math.sqrt(6.0 / (n_in + n_out))
        self.weight = torch.nn.Parameter(torch.empty(n_members, n_in, n_out).uniform_(-bound, bound))
        self.bias = torch.nn.Parameter(torch.zeros(n_members, 1, n_out)) if bias else None
        self.n_out = n_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(x.shape[0], -1, x.shape[-1])
        bias = self.bias
        out = torch.bmm(flat, self.weight) if bias is None else torch.baddbmm(bias, flat, self.weight)
        shape = list(x.shape[:-1])
        shape.append(self.n_out)
        return out.reshape(shape)


class MemberResidual(torch.nn.Module):
    """x + W2 silu(W1 silu(x)): PhysNet's pre-activation residual block, per member."""

    def __init__(self, n_members: int, n_features: int):
        super().__init__()
        self.first = MemberLinear(n_members, n_features, n_features)
        self.second = MemberLinear(n_members, n_features, n_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.second(torch.nn.functional.silu(self.first(torch.nn.functional.silu(x))))


class ElementLinear(torch.nn.Module):
    """Element-specific dense layer: atom a of element e uses W_{m,e}; x [M, n, in] -> [M, n, out].

    The per-atom weights are gathered by element index, so networks of all elements run in
    one batched product without splitting atoms by element (no data-dependent shapes).
    """

    def __init__(self, n_members: int, n_elements: int, n_in: int, n_out: int):
        super().__init__()
        bound = math.sqrt(6.0 / (n_in + n_out))
        self.weight = torch.nn.Parameter(torch.empty(n_members, n_elements, n_in, n_out).uniform_(-bound, bound))
        self.bias = torch.nn.Parameter(torch.zeros(n_members, n_elements, n_out))

    def forward(self, x: torch.Tensor, element_index: torch.Tensor) -> torch.Tensor:
        return self.apply_weights(x, self.weight, self.bias, element_index)

    def standardized(self, x: torch.Tensor, element_index: torch.Tensor, mean: torch.Tensor,
                     std: torch.Tensor) -> torch.Tensor:
        """The layer applied to (x - mean) / std, with the scaling folded into the weights.

        Folding avoids an element-wise pass over the activations (and sidesteps a
        TorchScript profiling-executor fault that lost the positions' gradient when a
        standardised input fed this layer after a first call without gradients).
        """
        weight = self.weight / std.unsqueeze(-1)
        bias = self.bias - torch.matmul(mean, weight)
        return self.apply_weights(x, weight, bias, element_index)

    @staticmethod
    def apply_weights(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                      element_index: torch.Tensor) -> torch.Tensor:
        """x [M, n, in] times per-element weights [M, E, in, out] plus biases [M, E, out]."""
        w = weight.index_select(1, element_index)  # [M, n, in, out]
        m, n = w.shape[0], w.shape[1]
        product = torch.bmm(x.reshape(m * n, 1, -1), w.reshape(m * n, w.shape[2], w.shape[3]))
        return product.reshape(m, n, -1) + bias.index_select(1, element_index)
