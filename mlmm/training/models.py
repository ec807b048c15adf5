"""Build, rebuild and prepare networks for training: construction from a config, energy scaling, transfer.

A trained model file records the constructor arguments it was built with
(``extra["model"]``), so :func:`rebuild` gives back the eager (trainable) network that
fine-tuning and committee training start from (and :func:`eager_potential` the eager module of
any trained model file, e.g. for ahead-of-time compilation, or to save it with the current code:
:func:`rescript`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import numpy as np
import torch

from mlmm.data.dataset import Dataset
from mlmm.potentials import (FAMILIES, HDNNP, ElectrostaticEmbedding, ElectrostaticPotential, NeuralPotential,
                             VacuumAnchoredBuffer, load_potential, read_metadata, save_potential)
from mlmm.potentials.io import content_hash


def build(family: str, elements, options: Dict) -> NeuralPotential:
    """A freshly initialised network of ``family`` for ``elements`` with constructor ``options``."""
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; choose one of {sorted(FAMILIES)}")
    if not elements:
        raise ValueError("[model] elements is empty; list the elements of the ML region, e.g. ['H', 'O']")
    try:
        return FAMILIES[family](list(elements), **options)
    except TypeError as error:
        raise ValueError(f"[model] options do not fit {family}: {error}") from None


def with_vacuum(vacuum: torch.nn.Module, network: torch.nn.Module) -> torch.nn.Module:
    """What a model file trained with a vacuum model holds: the :class:`~mlmm.potentials.ElectrostaticPotential`
    of an electrostatic embedding network, or the :class:`~mlmm.potentials.VacuumAnchoredBuffer` of a buffer
    network, with the vacuum potential."""
    if isinstance(network, ElectrostaticEmbedding):
        return ElectrostaticPotential(vacuum, network)
    return VacuumAnchoredBuffer(vacuum, network)


def rebuild(path) -> NeuralPotential:
    """The eager network stored in an mlmm model file written by the trainer (for a model written with
    its vacuum model, the trained network alone: the electrostatic embedding or the buffer difference)."""
    scripted, metadata = load_potential(path)
    recipe = metadata.get("extra", {}).get("model")
    if recipe is None:
        raise ValueError(f"{path} does not record how its network was built (no extra['model']); only models "
                         "written by mlmm's trainer can be rebuilt (fine-tuned, compiled, rescripted)")
    if metadata["extra"].get("vacuum_model") is not None:
        scripted = scripted.embedding if metadata.get("embedding_scheme") == "electrostatic" else scripted.network
    return _with_weights(build(recipe["family"], recipe["elements"], recipe["options"]), scripted)


def eager_potential(path) -> torch.nn.Module:
    """The eager module of an mlmm model file written by the trainer: its network (:func:`rebuild`), or
    for a model file written with its vacuum model the :class:`~mlmm.potentials.ElectrostaticPotential`
    (electrostatic embedding) or :class:`~mlmm.potentials.VacuumAnchoredBuffer` (buffer) of both
    networks, rebuilt from the recipes in ``extra["vacuum_model"]`` and ``extra["model"]``.

    The module keeps the file's metadata as ``file_metadata``, so that the embeddings know what it was
    trained for (:func:`mlmm.potentials.contract.describe`; e.g. a buffer network's outer coupling)."""
    metadata = read_metadata(path)
    extra = metadata.get("extra", {})
    electrostatic = metadata.get("embedding_scheme") == "electrostatic"
    if not electrostatic and extra.get("vacuum_model") is None:
        module = rebuild(path)
    else:
        if extra.get("model") is None or extra.get("vacuum_model") is None:
            raise ValueError(f"{path} does not record how both its networks were built (extra['model'] and "
                             "extra['vacuum_model'], written by mlmm's trainer when the vacuum model records its "
                             "own)")
        networks = [build(recipe["family"], recipe["elements"], recipe["options"])
                    for recipe in (extra["vacuum_model"], extra["model"])]
        module = _with_weights(with_vacuum(*networks), load_potential(path)[0])
    module.file_metadata = metadata
    return module


def rescript(path, output, vacuum=None) -> None:
    """Write the trained model file ``path`` again, as ``output``, with this mlmm's code.

    A model file holds the TorchScript code of the mlmm that saved it; this rebuilds its eager module
    (:func:`eager_potential`) and saves it with the same parameters (the content hash is checked),
    name and ``extra`` metadata, so that fixes to the code reach the model (e.g. GPU paths free of
    host synchronisation, which CUDA graphs need).

    With ``vacuum`` (a vacuum model file written by the trainer), a model trained with a vacuum model
    (electrostatic embedding or vacuum-anchored buffer network) is written with that vacuum network
    instead, e.g. one refined by active learning since. Such a network learns a difference of reference
    energies (E(QM/MM) - E(QM), or E(I u B) - E(B) - E(I)) and never evaluates its vacuum network, so its
    parameters, test errors and loss weights hold unchanged; the file records the new vacuum network's
    recipe and its file (``extra["vacuum_model_file"]``: path as given and content hash). Both parts' parameters
    are checked against their files.
    """
    metadata = read_metadata(path)
    if vacuum is None:
        potential, extra = eager_potential(path), metadata.get("extra")
    else:
        potential, extra = _paired_with(path, vacuum, metadata)
    # a new pair takes its elements and cutoff from its parts (save_potential's defaults)
    elements, cutoff = (metadata["supported_elements"], metadata.get("cutoff_nm")) if vacuum is None else (None, None)
    save_potential(potential, output, elements, cutoff, metadata.get("name"), extra)
    written, _ = load_potential(output)
    if vacuum is None:
        faithful = content_hash(written) == metadata["content_hash"]
    else:  # each part as in its file: the vacuum network by its file's hash, the network as rebuilt from its file
        part = "embedding" if isinstance(potential, ElectrostaticPotential) else "network"
        faithful = (content_hash(getattr(written, part)) == content_hash(getattr(potential, part))
                    and content_hash(written.vacuum) == extra["vacuum_model_file"]["content_hash"])
    if not faithful:
        raise RuntimeError(f"{output} does not hold the parameters of {path}; not a faithful copy")


def _paired_with(path, vacuum, metadata: dict):
    """The eager network of the model file ``path`` (trained with a vacuum model) with the vacuum network of
    the model file ``vacuum``, and the ``extra`` metadata that records the pair."""
    extra = metadata.get("extra", {})
    if extra.get("vacuum_model") is None:
        raise ValueError(f"{path} was not trained with a vacuum model (no extra['vacuum_model']); only an "
                         "electrostatic embedding or vacuum-anchored buffer network can take another one")
    vacuum_metadata = read_metadata(vacuum)
    if vacuum_metadata.get("embedding_scheme") is not None or vacuum_metadata.get("extra", {}).get("vacuum_model"):
        raise ValueError(f"{vacuum} is not a vacuum potential (it was trained for an embedding scheme)")
    network, vacuum_network = rebuild(path), rebuild(vacuum)
    missing = sorted(set(network.supported_elements) - set(vacuum_network.supported_elements))
    if missing:
        raise ValueError(f"{vacuum} does not support the atomic numbers {missing}, which {path}'s network does")
    record = {"file": str(vacuum), "content_hash": vacuum_metadata["content_hash"]}
    extra = dict(extra, vacuum_model=vacuum_metadata["extra"]["model"], vacuum_model_file=record)
    return with_vacuum(vacuum_network, network), extra


def _with_weights(model: torch.nn.Module, scripted: torch.jit.ScriptModule) -> torch.nn.Module:
    """``model`` with the parameters and buffers of ``scripted``, in their dtype (cast before loading, so that
    the values are copied exactly rather than rounded through the model's initial dtype)."""
    state = scripted.state_dict()
    model = model.to(next(tensor.dtype for tensor in state.values() if tensor.is_floating_point()))
    model.load_state_dict(state)
    return model


def composition(species: np.ndarray, elements: List[int]) -> np.ndarray:
    """Counts of each of ``elements`` in ``species``."""
    return np.array([(species == z).sum() for z in elements], dtype=float)


def fit_energy_scaling(model: NeuralPotential, dataset: Dataset) -> None:
    """Per-element shifts from a least-squares fit of the energies on the composition; scale from the rest.

    With one composition (one molecule) the minimum-norm solution spreads the mean energy
    over the atoms. The scale is the per-atom spread of the remaining energies, so the
    network's outputs start at order one.
    """
    counts = composition(dataset.species, model.supported_elements)
    counts = np.broadcast_to(counts, (dataset.n_frames, len(counts)))
    shifts = np.linalg.lstsq(counts, dataset.energies, rcond=None)[0]
    residual = dataset.energies - counts @ shifts
    scale = max(float(residual.std()) / np.sqrt(dataset.n_atoms), 1.0)
    model.set_energy_scaling(dict(zip(model.supported_elements, shifts)), scale)


def shift_energy_offset(model: NeuralPotential, dataset: Dataset, predicted: np.ndarray) -> None:
    """Move the energy zero of a pretrained model to a new reference (e.g. xTB -> DFT).

    Adds the mean of (reference - predicted) energy, spread evenly over the atoms, to the
    shifts of the elements present; energy differences and forces are unchanged.
    """
    offset = float(np.mean(dataset.energies - predicted)) / dataset.n_atoms
    present = {int(z) for z in dataset.species}
    with torch.no_grad():
        for z in present:
            model.energy_shift[model.supported_elements.index(z)] += offset


def set_input_scaling(model: NeuralPotential, dataset: Dataset) -> None:
    """HDNNP only: standardise its descriptors on the training frames."""
    if not isinstance(model, HDNNP):
        return
    species = torch.as_tensor(dataset.species)
    with torch.no_grad():
        descriptors = torch.cat([model.descriptors(species, torch.as_tensor(x, dtype=model.energy_shift.dtype))
                                 for x in dataset.positions[:200]])
    model.set_input_scaling(descriptors.mean(0), descriptors.std(0))


def parameter_groups(model: NeuralPotential, learning_rate: float, freeze: List[str],
                     learning_rate_scale: Dict[str, float]) -> List[dict]:
    """Optimizer groups for transfer learning: frozen prefixes get no gradient, others a scaled rate."""
    names = [name for name, _ in model.named_parameters()]
    for prefix in list(freeze) + list(learning_rate_scale):
        if not any(name.startswith(prefix) for name in names):
            raise ValueError(f"no parameter name starts with {prefix!r}; names are like {names[:6]}")
    groups: Dict[float, list] = {}
    for name, parameter in model.named_parameters():
        if any(name.startswith(prefix) for prefix in freeze):
            parameter.requires_grad_(False)
            continue
        scale = next((s for prefix, s in learning_rate_scale.items() if name.startswith(prefix)), 1.0)
        groups.setdefault(scale, []).append(parameter)
    if not groups:
        raise ValueError("every parameter is frozen; nothing would be trained")
    return [{"params": params, "lr": learning_rate * scale, "scale": scale} for scale, params in groups.items()]
