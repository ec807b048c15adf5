"""Committees (query by committee) as one batched model.

Every mlmm network carries a member axis on all its parameters, so a committee of M
models is a single model with ``n_members = M``: one forward evaluates all members
(batched matrix products), and ``energy_and_uncertainty`` gives the mean energy, sigma_E
and per-atom sigma_F from one backward pass. Members trained separately are joined with
:func:`stack_members` and taken apart with :func:`select_member`.
"""

from __future__ import annotations

import copy
from typing import Sequence

import torch

from mlmm.potentials.base import NeuralPotential


def _check_compatible(members: Sequence[NeuralPotential]) -> None:
    first = members[0]
    for i, other in enumerate(members[1:], start=1):
        if type(other) is not type(first) or other.hyperparameters != first.hyperparameters \
                or other.supported_elements != first.supported_elements:
            raise ValueError(f"member {i} ({type(other).__name__} {other.hyperparameters}) differs in architecture "
                             f"or elements from member 0 ({type(first).__name__} {first.hyperparameters})")
        for name, buffer in first.named_buffers():
            if not torch.equal(buffer, dict(other.named_buffers())[name]):
                raise ValueError(f"member {i} has a different {name!r} (energy shifts, input scaling and other "
                                 "buffers must be shared by all members)")


def stack_members(members: Sequence[NeuralPotential]) -> NeuralPotential:
    """Join models of one architecture into a committee whose members are theirs, in order."""
    if len(members) == 0:
        raise ValueError("a committee needs at least one member")
    _check_compatible(members)
    committee = copy.deepcopy(members[0])
    parameters = [dict(m.named_parameters()) for m in members]
    with torch.no_grad():
        for name, parameter in committee.named_parameters():
            parameter.set_(torch.cat([p[name].detach() for p in parameters], dim=0).clone())
    committee.n_members = sum(m.n_members for m in members)
    return committee


def select_member(committee: NeuralPotential, index: int) -> NeuralPotential:
    """A single-member copy of member ``index`` of ``committee``."""
    if not 0 <= index < committee.n_members:
        raise ValueError(f"member index {index} is outside 0..{committee.n_members - 1}")
    member = copy.deepcopy(committee)
    with torch.no_grad():
        for parameter in member.parameters():
            parameter.set_(parameter[index:index + 1].clone())
    member.n_members = 1
    return member
