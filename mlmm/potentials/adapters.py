"""Third-party model families as mlmm potentials, found through the ``mlmm.adapters`` entry points.

An adapter distribution (e.g. ``plugins/mlmm-torchani``, ``plugins/mlmm-mace``) declares

    [project.entry-points."mlmm.adapters"]
    family = "package:from_file"

where ``from_file(path) -> torch.nn.Module`` reads that family's own model file and returns a
module following :mod:`mlmm.potentials.contract`. ``mlmm adapt FAMILY SOURCE OUTPUT.pt`` saves
it as an mlmm model file, which every mlmm tool then loads without the adapter.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Union

import torch

ADAPTER_GROUP = "mlmm.adapters"


def installed_adapters() -> dict[str, EntryPoint]:
    """The installed adapters by family name."""
    return {entry.name: entry for entry in entry_points(group=ADAPTER_GROUP)}


def adapt(family: str, source: Union[str, Path]) -> torch.nn.Module:
    """The mlmm potential of the ``family`` model in the file ``source``.

    Raises ValueError naming the installed families when ``family`` is not one of them.
    """
    adapters = installed_adapters()
    if family not in adapters:
        raise ValueError(f"no mlmm adapter for {family!r} is installed (installed: {sorted(adapters) or 'none'}); "
                         "install one from mlmm's plugins/ folder, e.g. pip install plugins/mlmm-torchani.")
    if not Path(source).is_file():
        raise ValueError(f"{str(source)!r} is not a file; give the {family} model file to adapt.")
    return adapters[family].load()(source)


def load_pickled_module(path: Union[str, Path], family: str) -> torch.nn.Module:
    """The module saved whole with ``torch.save(model, path)`` (unpickled: load only trusted files).

    Raises TypeError naming ``family`` when the file holds something else.
    """
    module = torch.load(str(path), map_location="cpu", weights_only=False)
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"{path} holds a {type(module).__name__}, not a {family} model; save the model object "
                        "itself with torch.save(model, path).")
    return module
