"""The two ways an embedding module reaches OpenMM: TorchForce (TorchScript) and PythonForce (eager).

Both call the module with openmm-torch's convention: ``module(positions)`` or
``module(positions, boxvectors)`` when periodic, followed by the values of the force's
global parameters (0-d tensors) in order.
"""

from __future__ import annotations

import copy
import io
import logging
from typing import Optional, Sequence, Tuple

import openmm
import openmm.unit as u
import torch

from mlmm.bridge.ahead_of_time import EnergyAndGradient, compile_energy_and_gradient, energy_and_gradient

TRANSPORTS = ("torch", "python")
LAMBDA = "lambda_interpolate"


class _SimtkNotice(logging.Filter):
    """Drops the notice that the deprecated ``simtk.openmm`` namespace logs when openmmtorch imports it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "simtk.openmm" not in record.getMessage()


def _import_openmmtorch():
    """The openmmtorch module, imported without the deprecation notice its import of ``simtk.openmm`` logs
    (in every process that builds a TorchForce, Dask workers included)."""
    notice = _SimtkNotice()
    logging.getLogger().addFilter(notice)
    try:
        import openmmtorch
    finally:
        logging.getLogger().removeFilter(notice)
    return openmmtorch


class PeriodicLambdaScaled(torch.nn.Module):
    """lambda * E for a periodic module: forward(positions, boxvectors, lambda_interpolate)."""

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.module = module

    def forward(self, positions: torch.Tensor, boxvectors: torch.Tensor,
                lambda_interpolate: torch.Tensor) -> torch.Tensor:
        return lambda_interpolate.to(positions.dtype) * self.module(positions, boxvectors)


class LambdaScaled(torch.nn.Module):
    """lambda * E for a non-periodic module: forward(positions, lambda_interpolate)."""

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.module = module

    def forward(self, positions: torch.Tensor, lambda_interpolate: torch.Tensor) -> torch.Tensor:
        return lambda_interpolate.to(positions.dtype) * self.module(positions, None)


def scaled_by_lambda(module: torch.nn.Module, periodic: bool) -> torch.nn.Module:
    """Wrap an embedding module so its energy is multiplied by ``lambda_interpolate``."""
    return PeriodicLambdaScaled(module) if periodic else LambdaScaled(module)


class EagerComputation:
    """PythonForce callback: energy (kJ/mol) and forces (kJ/mol/nm) of an eager module.

    With ``compiled``, the module's energy and gradient are compiled ahead of time by
    AOTInductor (:mod:`mlmm.bridge.ahead_of_time`) at the first call, for that call's number of
    particles, which takes tens of seconds; the module must keep fixed shapes
    (:func:`mlmm.potentials.neighbors.static_shapes`). Where the compiled energy is not finite
    (the fixed shapes could not hold the geometry: more MM molecules inside the cutoff than the
    capacity gathered, or more neighbours than the network's lists hold), that call runs the eager
    module instead, whose CPU paths follow the geometry.

    Picklable, so systems holding it can be copied (``copy.deepcopy``) and serialized
    (``openmm.XmlSerializer``): a module that holds TorchScript (a model loaded from a file) is
    pickled as the TorchScript of the whole module, which pickle cannot otherwise write; an
    eager module as itself. The compiled library is not pickled; a copy compiles again.
    """

    def __init__(self, module: torch.nn.Module, periodic: bool, parameters: Sequence[str] = (),
                 compiled: bool = False):
        self.module = module
        self.periodic = periodic
        self.parameters = list(parameters)
        self.compiled = compiled
        self._compiled_function: Optional[EnergyAndGradient] = None

    def __getstate__(self) -> dict:
        state = {**self.__dict__, "_compiled_function": None}
        if any(isinstance(part, torch.jit.ScriptModule) for part in self.module.modules()):
            saved = io.BytesIO()
            torch.jit.save(torch.jit.script(self.module), saved)
            state["module"] = saved.getvalue()
        return state

    def __setstate__(self, state: dict) -> None:
        if isinstance(state["module"], bytes):
            state = {**state, "module": torch.jit.load(io.BytesIO(state["module"]))}
        self.__dict__.update(state)

    def energy_and_gradient(self, positions: torch.Tensor, *rest: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(energy, gradient with respect to ``positions``) of ``module(positions, *rest)``."""
        if not self.compiled:
            return energy_and_gradient(self.module, positions, *rest)
        if self._compiled_function is None:
            self._compiled_function = compile_energy_and_gradient(without_parameter_gradients(self.module),
                                                                  (positions, *rest))
        energy, gradient = self._compiled_function(positions, *rest)
        if not bool(torch.isfinite(energy)):
            return energy_and_gradient(self.module, positions, *rest)
        return energy, gradient

    def __call__(self, state: openmm.State):
        arguments = [state_positions(state)]
        if self.periodic:
            arguments.append(torch.tensor(state.getPeriodicBoxVectors().value_in_unit(u.nanometer),
                                          dtype=torch.float64))
        values = state.getParameters()
        arguments += [torch.tensor(float(values[name]), dtype=torch.float64) for name in self.parameters]
        energy, gradient = self.energy_and_gradient(*arguments)
        return float(energy), gradient.neg_().numpy()  # the gradient is ours to negate in place


def state_positions(state: openmm.State) -> torch.Tensor:
    """The positions [n, 3] (nm, float64) of ``state`` in a new tensor.

    Filled by the call ``State.getPositions(asNumpy=True)`` makes internally, without its unit
    wrapping and attribute lookups: 5 instead of 80 us for 2600 atoms, which matters once per
    MD step.
    """
    positions = torch.empty(state._getNumParticles(), 3, dtype=torch.float64)
    state._getVectorAsNumpy(openmm.State.Positions, positions.numpy())
    return positions


def without_parameter_gradients(module: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``module`` whose parameters do not require gradients: forces need the gradient
    with respect to the positions only, and the copy leaves the caller's module trainable."""
    with torch.no_grad():  # copies of a ScriptModule's parameters would otherwise not be leaves
        copied = copy.deepcopy(module)
    for parameter in copied.parameters():
        parameter.requires_grad_(False)
    return copied


def inference_script(module: torch.nn.Module) -> torch.jit.ScriptModule:
    """A TorchScript copy of ``module`` whose parameters do not require gradients.

    TorchForce computes forces with ``energy.backward()``, which would also accumulate
    parameter gradients that MD never uses.
    """
    copied = without_parameter_gradients(module)
    return copied if isinstance(copied, torch.jit.ScriptModule) else torch.jit.script(copied)


def make_force(module: torch.nn.Module, periodic: bool, transport: str,
               parameters: Optional[dict[str, float]] = None, cuda_graphs: bool = False,
               compiled: bool = False) -> openmm.Force:
    """Wrap ``module`` in an OpenMM force of the requested transport.

    Parameters
    ----------
    module : torch.nn.Module
        Called as described in the module docstring.
    periodic : bool
        Whether the force uses periodic boundary conditions (passes the box).
    transport : str
        "torch" (openmmtorch.TorchForce running TorchScript) or "python" (openmm.PythonForce).
    parameters : dict, optional
        Global parameters (name -> default value) passed to the module after the box.
    cuda_graphs : bool
        Capture the TorchForce's forward and backward in a CUDA graph on the CUDA platform
        (openmm-torch's ``useCUDAGraphs``); other platforms ignore it. TorchForce only.
    compiled : bool
        Run the module's energy and gradient compiled ahead of time by AOTInductor (see
        :class:`EagerComputation`). PythonForce only: TorchForce runs TorchScript, which cannot
        hold compiled code.
    """
    parameters = dict(parameters or {})
    if compiled and transport != "python":
        raise ValueError("compiled=True needs transport='python': openmm.PythonForce runs the module compiled by "
                         "AOTInductor, TorchForce runs TorchScript.")
    if transport == "torch":
        force = _import_openmmtorch().TorchForce(inference_script(module))
        for name, default in parameters.items():
            force.addGlobalParameter(name, default)
        force.setProperty("useCUDAGraphs", "true" if cuda_graphs else "false")
    elif transport == "python":
        if cuda_graphs:
            raise ValueError("cuda_graphs=True needs transport='torch' (openmm-torch captures the graph); "
                             "openmm.PythonForce runs eager Python on the host.")
        force = openmm.PythonForce(EagerComputation(module, periodic, list(parameters), compiled), parameters)
    else:
        raise ValueError(f"transport={transport!r} is not one of {TRANSPORTS}; use 'torch' (TorchForce, default) "
                         "or 'python' (openmm.PythonForce).")
    force.setUsesPeriodicBoundaryConditions(periodic)
    return force
