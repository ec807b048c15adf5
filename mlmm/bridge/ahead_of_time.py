"""Ahead-of-time compilation of an embedding module's energy and gradient (AOTInductor).

The module's forward pass and the backward pass that gives the forces are traced together
into one graph of aten operations (``make_fx``), with the fixed-shape code paths
(:func:`mlmm.potentials.neighbors.fixed_shape_tracing`), and compiled by AOTInductor into a
shared library. Calling it runs generated C++ with no Python in between: no autograd engine,
no guards, no per-operation dispatch from Python, which on CPU is most of a small network's
cost (the formic acid dimer's network: 0.18 ms per energy and gradient against 0.99 ms for
TorchScript on an idle machine, 0.37 against 2.3-2.6 next to other jobs;
benchmarks/results/embeddings.md).

The graph is specialised to the shapes of the example arguments (the number of particles) and
to the module's parameters, which become constants.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path
from typing import Callable, Sequence, Tuple

import torch
from torch.fx.experimental.proxy_tensor import make_fx

from mlmm.potentials.neighbors import fixed_shape_tracing

EnergyAndGradient = Callable[..., Tuple[torch.Tensor, torch.Tensor]]


def energy_and_gradient(module: torch.nn.Module, positions: torch.Tensor, *rest: torch.Tensor
                        ) -> Tuple[torch.Tensor, torch.Tensor]:
    """(energy, gradient with respect to ``positions``) of ``module(positions, *rest)``, a 0-d energy."""
    positions = positions.detach().requires_grad_(True)
    with torch.enable_grad():
        energy = module(positions, *rest)
        (gradient,) = torch.autograd.grad(energy, positions)
    return energy.detach(), gradient


def energy_and_gradient_graph(module: torch.nn.Module, arguments: Sequence[torch.Tensor]) -> torch.fx.GraphModule:
    """:func:`energy_and_gradient` of ``module`` traced into one graph of aten operations.

    ``module`` must not need parameter gradients (see
    :func:`mlmm.bridge.transports.without_parameter_gradients`) and must take only fixed-shape
    paths under :func:`~mlmm.potentials.neighbors.fixed_shape_tracing`; a data-dependent step
    (``.item()``, ``nonzero``) raises here rather than being frozen into the graph.
    """
    with fixed_shape_tracing():
        return make_fx(functools.partial(energy_and_gradient, module))(*arguments)


def compile_energy_and_gradient(module: torch.nn.Module, arguments: Sequence[torch.Tensor]) -> EnergyAndGradient:
    """``f(*arguments) -> (energy, gradient)``: :func:`energy_and_gradient_graph` compiled by AOTInductor.

    A module with ``energy_terms()`` (modules of the same arguments whose energies sum to its own) is
    compiled term by term and ``f`` sums them. Takes tens of seconds per term and needs a C++
    compiler; the result runs on the device and with the dtypes and shapes of ``arguments``.
    """
    terms = module.energy_terms() if hasattr(module, "energy_terms") else [module]
    compiled = [_compiled_term(term, arguments) for term in terms]
    return compiled[0] if len(compiled) == 1 else functools.partial(_summed, compiled)


def _compiled_term(module: torch.nn.Module, arguments: Sequence[torch.Tensor]) -> EnergyAndGradient:
    """One module's energy and gradient compiled, checked against its traced graph (:func:`check_compiled`)."""
    graph = energy_and_gradient_graph(module, arguments)
    program = torch.export.export(graph, tuple(arguments), strict=False)
    with tempfile.TemporaryDirectory(prefix="mlmm-aot-") as directory:
        package = torch._inductor.aoti_compile_and_package(program, package_path=str(Path(directory) / "force.pt2"))
        compiled = torch._inductor.aoti_load_package(package)
    check_compiled(graph(*arguments), compiled(*arguments))
    return compiled


def _summed(functions: Sequence[EnergyAndGradient], *arguments: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """The sum of the (energy, gradient) pairs of ``functions``."""
    energy, gradient = functions[0](*arguments)
    for function in functions[1:]:
        term_energy, term_gradient = function(*arguments)
        energy, gradient = energy + term_energy, gradient + term_gradient
    return energy, gradient


def check_compiled(traced: Tuple[torch.Tensor, torch.Tensor], compiled: Tuple[torch.Tensor, torch.Tensor],
                   tolerance: float = 1e-6) -> None:
    """Raise unless the compiled (energy, gradient) equal those of the traced graph run op by op,
    within ``tolerance`` relative to the energy and to the largest gradient component: a guard
    against compiler errors (Inductor in torch 2.12 miscompiles the gradient of the electrostatic
    model's two networks in one graph, by up to 1.5e3 kJ/mol/nm, hence its ``energy_terms``)."""
    energy_error = abs(float(compiled[0]) - float(traced[0]))
    gradient_error = float((compiled[1] - traced[1]).abs().max())
    gradient_scale = max(float(traced[1].abs().max()), 1.0)
    if energy_error > tolerance * max(abs(float(traced[0])), 1.0) or gradient_error > tolerance * gradient_scale:
        raise RuntimeError(f"the compiled force disagrees with the traced module (energy off by {energy_error:.3g} "
                           f"kJ/mol, gradient by {gradient_error:.3g} kJ/mol/nm of {gradient_scale:.3g}): a compiler "
                           "error; run this module without compiled=True (transport='torch').")
