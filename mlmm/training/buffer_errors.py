"""How well a buffer-embedding network reproduces the QM interaction of the ML region with its solvent.

On solvent snapshots (ML region I with a labelled gas-phase twin, and an MM environment of one
neutral solvent stored molecule by molecule with its embedding-switched charges), the buffer B
is every molecule whose anchor (first atom) lies within the buffer cutoff of I and the outer
region O the rest. Reference (a QM program with O as external point charges):

    E_int = E(I u B; O) - E(B; O) - E(I),

and its forces on the atoms of I minus the gas-phase forces. The buffer scheme, every buffer
molecule at full weight:

    E_NN(I u B) - E_NN(B) - E_NN(I) + k_e sum_a dq_a sum_{j in O} q_j / r_aj,

with the network's charges dq_a of its outer coupling
(:func:`~mlmm.data.calculators.coupled_charges`: I's charges in I u B shifted to I's total
charge, or the charge changes of every atom of I u B). The same expression with the QM program's
own vacuum cluster energies and charges (its "scheme limit") separates what the scheme's form
leaves out (O polarizing I u B beyond the fixed vacuum-cluster charges) from the network's error.
The limit's error, reference minus limit, is the outer polarization: a network trained in the
field of O can learn its mean, not the part that varies with where the molecules of O are, which
it does not see. Energies kJ/mol, forces kJ/mol/nm, lengths nm.

The other schemes are scored against the same reference (:func:`other_schemes`): I interacts with
B and O as point charges (the force field's charges of B, O's switched charges) by the scheme's
electrostatics (:mod:`mlmm.training.embedding_errors`), plus the force field's Lennard-Jones energy
of I with B, which those schemes keep and the buffer scheme replaces (I-O Lennard-Jones is in no
scheme's E_int, as O holds point charges only in the reference).
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence

import numpy as np
import torch

from mlmm.data.calculators import coupled_charges, outer_coulomb
from mlmm.data.dataset import Dataset
from mlmm.training.embedding_errors import (InteractionFn, coulomb_interaction, electrostatic_interaction,
                                            energy_and_forces, fixed_charges, interaction_errors, potential_charges)

#: Force-field Lennard-Jones energy (kJ/mol) of I with B: (I positions [n, 3], B positions [b, 3]) -> scalar.
LennardJonesFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def split_environment(positions: np.ndarray, mm_positions: np.ndarray, mm_charges: np.ndarray,
                      molecule_size: int, buffer_cutoff: float):
    """Buffer atoms [b, 3] and outer positions [o, 3] and charges [o] of one snapshot's environment."""
    molecules, charges = mm_positions.reshape(-1, molecule_size, 3), mm_charges.reshape(-1, molecule_size)
    nearest = np.linalg.norm(molecules[:, None, 0] - positions[None], axis=-1).min(1)
    inside = nearest < buffer_cutoff
    return molecules[inside].reshape(-1, 3), molecules[~inside].reshape(-1, 3), charges[~inside].reshape(-1)


def network_interaction(model, species: Sequence[int], buffer_species: Sequence[int], total_charge: float,
                        x_ml: np.ndarray, x_buffer: np.ndarray, x_outer: np.ndarray, q_outer: np.ndarray,
                        outer_coupling: str = "ml-charges"):
    """The buffer scheme's E_int (kJ/mol), its forces on I (kJ/mol/nm) and the network's coupled charges
    of I u B (e, as they enter the outer Coulomb term), every buffer molecule at weight 1."""
    n = len(species)
    x_ml = torch.tensor(x_ml, dtype=torch.float64, requires_grad=True)
    species_ml, species_buffer = torch.as_tensor(list(species)), torch.as_tensor(list(buffer_species))
    whole_x = torch.cat([x_ml, torch.as_tensor(x_buffer, dtype=torch.float64)])
    ones = torch.ones(len(whole_x), dtype=torch.float64)
    whole, charges = model.weighted_energy_and_charges(torch.cat([species_ml, species_buffer]), whole_x, ones,
                                                       total_charge)
    buffer, buffer_charges = model.weighted_energy_and_charges(species_buffer, whole_x[n:], ones[n:], 0.0) \
        if len(species_buffer) else (torch.zeros_like(whole), charges[n:] * 0.0)
    alone = model.weighted_energy_and_charges(species_ml, x_ml, ones[:n], total_charge)[0]
    coupled = coupled_charges(outer_coupling, charges.to(torch.float64), buffer_charges.to(torch.float64),
                              total_charge)
    energy = whole - buffer - alone + outer_coulomb(whole_x, coupled, x_outer, q_outer)
    (gradient,) = torch.autograd.grad(energy, x_ml)
    return float(energy.detach()), -gradient.numpy(), coupled.detach().numpy()


def lennard_jones_interaction(ml_sigma: Sequence[float], ml_epsilon: Sequence[float],
                              molecule_sigma: Sequence[float], molecule_epsilon: Sequence[float]) -> LennardJonesFn:
    """Lennard-Jones energy of the ML atoms with buffer molecules (Lorentz-Berthelot rules, no cutoff: the
    buffer lies well within the force field's), from the force field's sigma (nm) and epsilon (kJ/mol) of
    the ML atoms and of one solvent molecule's atoms, the buffer holding whole molecules in that order."""
    ml = [torch.as_tensor(list(v), dtype=torch.float64) for v in (ml_sigma, ml_epsilon)]
    molecule = [torch.as_tensor(list(v), dtype=torch.float64) for v in (molecule_sigma, molecule_epsilon)]

    def energy(x_ml: torch.Tensor, x_buffer: torch.Tensor) -> torch.Tensor:
        copies = x_buffer.shape[0] // molecule[0].shape[0]
        sigma = 0.5 * (ml[0].unsqueeze(1) + molecule[0].repeat(copies).unsqueeze(0))
        epsilon = torch.sqrt(ml[1].unsqueeze(1) * molecule[1].repeat(copies).unsqueeze(0))
        s6 = (sigma / torch.linalg.norm(x_ml.unsqueeze(1) - x_buffer.unsqueeze(0), dim=-1)) ** 6
        return (4.0 * epsilon * (s6 * s6 - s6)).sum()
    return energy


def solvated_force_field(pdb_path, forcefield_files: Sequence[str]):
    """(OpenMM system, ML atoms, atoms of one solvent molecule) of a solvated ML region's PDB file whose first
    chain is the ML region and whose second chain holds the solvent (as the systems' ``*-tip3p.pdb``)."""
    import openmm.app as app

    pdb = app.PDBFile(str(pdb_path))
    chains = list(pdb.topology.chains())
    if len(chains) < 2:
        raise ValueError(f"{pdb_path} has {len(chains)} chain(s); it needs the ML region as its first chain and "
                         "the solvent as its second")
    solvent = next(chains[1].residues())
    system = app.ForceField(*forcefield_files).createSystem(pdb.topology, nonbondedMethod=app.NoCutoff)
    return system, [a.index for a in chains[0].atoms()], [a.index for a in solvent.atoms()]


def other_schemes(system, ml_atoms: Sequence[int], molecule_atoms: Sequence[int], vacuum_model,
                  electrostatic_model, total_charge: float) -> tuple[Dict[str, InteractionFn], LennardJonesFn]:
    """The mechanical, mechanical-ml-charges and electrostatic schemes' electrostatics of I with its
    environment, and the Lennard-Jones energy of I with B, from an OpenMM ``system`` of the solvated ML
    region (its NonbondedForce gives the force field's charges of I and the Lennard-Jones parameters of I
    and of one solvent molecule, ``molecule_atoms``) and the trained models of the ML region alone
    (``vacuum_model``) and of its electrostatic embedding."""
    import openmm
    import openmm.unit as u

    nonbonded = next(f for f in system.getForces() if isinstance(f, openmm.NonbondedForce))

    def parameters(atoms):
        """Charges (e), sigma (nm) and epsilon (kJ/mol) of ``atoms``."""
        values = [nonbonded.getParticleParameters(i) for i in atoms]
        return [[value[k].value_in_unit(unit) for value in values]
                for k, unit in enumerate((u.elementary_charge, u.nanometer, u.kilojoule_per_mole))]

    ml_charges, ml_sigma, ml_epsilon = parameters(ml_atoms)
    _, molecule_sigma, molecule_epsilon = parameters(molecule_atoms)
    schemes = {"mechanical": coulomb_interaction(fixed_charges(ml_charges)),
               "mechanical-ml-charges": coulomb_interaction(potential_charges(vacuum_model, total_charge)),
               "electrostatic": electrostatic_interaction(electrostatic_model, total_charge)}
    return schemes, lennard_jones_interaction(ml_sigma, ml_epsilon, molecule_sigma, molecule_epsilon)


def scheme_interaction(interaction: InteractionFn, lennard_jones: LennardJonesFn, species: Sequence[int],
                       x_ml: np.ndarray, x_buffer: np.ndarray, x_environment: np.ndarray,
                       q_environment: np.ndarray) -> tuple[float, np.ndarray]:
    """E_int (kJ/mol) and forces on I (kJ/mol/nm) of a scheme whose I interacts with its environment (B and
    O) as point charges, plus the Lennard-Jones energy of I with B."""
    species, buffer = torch.as_tensor(list(species)), torch.as_tensor(x_buffer, dtype=torch.float64)
    environment = [torch.as_tensor(v, dtype=torch.float64) for v in (x_environment, q_environment)]
    return energy_and_forces(lambda x: interaction(species, x, *environment) + lennard_jones(x, buffer), x_ml)


def buffer_interaction_errors(model, snapshots: Dataset, vacuum: Dataset, frames: Sequence[int], calculator,
                              buffer_cutoff: float, molecule_species: Sequence[int],
                              outer_coupling: str = "ml-charges",
                              schemes: Optional[tuple[Dict[str, InteractionFn], LennardJonesFn]] = None
                              ) -> Dict[str, float]:
    """MAE, RMSE and mean (signed) error of the buffer scheme's E_int (kJ/mol), MAE and RMSE of its
    forces on I (kJ/mol/nm) on ``frames``.

    ``snapshots`` holds the solvent environments (switched charges), ``vacuum`` the labelled
    gas-phase twins of the same geometries; ``calculator`` (a
    :class:`~mlmm.data.calculators.ReferenceCalculator`) computes the reference. Also the
    energy MAE of the scheme limit (module docstring) against the reference, the network's energy
    MAE against that limit, and the MAE (e) of the network's coupled charges of I u B (those of
    ``outer_coupling``) against the QM program's, for I and for B (``buffer_charge_changes_mae``, 0
    for ``"ml-charges"``, which couples no charges of B). The standard deviation of the outer polarization (reference
    minus limit) over ``frames`` bounds the part a network of I u B alone cannot learn (some of it
    follows the geometry of I u B), with its correlation with the scheme's error; the network's MAE
    against the limit plus the mean outer polarization of ``frames`` is its error were the varying
    part known. The error splits into the coupling's charge error, the Coulomb energy with O of
    the network's coupled charges less the QM program's in the field (``coupling_charge_energy_*``),
    and the rest, the network's energies of the clusters and of I alone
    (``network_energy_error_mae``). With ``schemes`` (:func:`other_schemes`) the same errors of each of
    those schemes on the same reference (``other_schemes``: E_int mean error, MAE and RMSE, force MAE and
    RMSE on I).
    """
    size, charge = len(molecule_species), snapshots.total_charge
    reference, predicted, reference_forces, predicted_forces, limit, charge_errors = [], [], [], [], [], []
    change_errors, coupling_errors = [], []
    interactions, lennard_jones = schemes if schemes is not None else ({}, None)
    others = {name: ([], []) for name in interactions}  # E_int and forces on I of each other scheme
    for k in frames:
        real = snapshots.mm_mask[k]
        x_ml = snapshots.positions[k]
        x_buffer, x_outer, q_outer = split_environment(x_ml, snapshots.mm_positions[k][real],
                                                       snapshots.mm_charges[k][real], size, buffer_cutoff)
        buffer_species = list(molecule_species) * (len(x_buffer) // size)
        cluster_species, cluster = list(snapshots.species) + buffer_species, np.vstack([x_ml, x_buffer])
        whole = calculator.compute(cluster_species, cluster, charge, snapshots.multiplicity, x_outer, q_outer)
        buffer = calculator.compute(buffer_species, x_buffer, 0, 1, x_outer, q_outer)
        reference.append(whole["energy"] - buffer["energy"] - vacuum.energies[k])
        whole_alone = calculator.compute(cluster_species, cluster, charge, snapshots.multiplicity)
        buffer_alone = calculator.compute(buffer_species, x_buffer, 0, 1)
        qm_charges = coupled_charges(outer_coupling, whole_alone["charges"], buffer_alone["charges"], float(charge))
        limit.append(whole_alone["energy"] - buffer_alone["energy"] - vacuum.energies[k] + float(outer_coulomb(
            torch.as_tensor(cluster), torch.as_tensor(qm_charges), x_outer, q_outer)))
        reference_forces.append(whole["forces"][:len(x_ml)] - vacuum.forces[k])
        energy, forces, charges = network_interaction(model, snapshots.species, buffer_species, float(charge), x_ml,
                                                      x_buffer, x_outer, q_outer, outer_coupling)
        field_charges = coupled_charges(outer_coupling, whole["charges"], buffer["charges"], float(charge))
        coupling_errors.append(float(outer_coulomb(torch.as_tensor(cluster), torch.as_tensor(charges - field_charges),
                                                   x_outer, q_outer)))
        charge_errors.append((charges - qm_charges)[:len(x_ml)])
        change_errors.extend((charges - qm_charges)[len(x_ml):])
        predicted.append(energy)
        predicted_forces.append(forces)
        for name, interaction in interactions.items():
            scheme_energy, scheme_forces = scheme_interaction(
                interaction, lennard_jones, snapshots.species, x_ml, x_buffer, snapshots.mm_positions[k][real],
                snapshots.mm_charges[k][real])
            others[name][0].append(scheme_energy)
            others[name][1].append(scheme_forces)
    reference, predicted, limit = np.array(reference), np.array(predicted), np.array(limit)
    coupling = np.array(coupling_errors)
    polarization = reference - limit
    result = {"n_frames": len(reference), "frames": [int(k) for k in frames],
              "interaction_mean": float(reference.mean()),
              "interaction_std": float(reference.std()),
              **interaction_errors(predicted, reference, predicted_forces, reference_forces),
              "scheme_limit_energy_mae": float(np.abs(limit - reference).mean()),
              "scheme_limit_energy_mean_error": float((limit - reference).mean()),
              "network_vs_limit_energy_mae": float(np.abs(predicted - limit).mean()),
              "outer_polarization_std": float(polarization.std()),
              "error_polarization_correlation": float(np.corrcoef(predicted - reference, polarization)[0, 1]),
              "network_vs_mean_polarized_limit_energy_mae": float(
                  np.abs(predicted - limit - polarization.mean()).mean()),
              "coupling_charge_energy_mae": float(np.abs(coupling).mean()),
              "coupling_charge_energy_mean_error": float(coupling.mean()),
              "network_energy_error_mae": float(np.abs(predicted - reference - coupling).mean()),
              "charges_mae": float(np.abs(np.array(charge_errors)).mean()),
              "buffer_charge_changes_mae": float(np.abs(np.array(change_errors)).mean()),
              "energy_errors": (predicted - reference).tolist()}
    if others:
        result["other_schemes"] = {name: interaction_errors(energies, reference, forces, reference_forces)
                                   for name, (energies, forces) in others.items()}
    return result


def assess_buffer_model(snapshots_path, vacuum_path, model_directory, calculator, buffer_cutoff: float,
                        molecule_species: Sequence[int], held_out: bool = False,
                        schemes: Optional[tuple[Dict[str, InteractionFn], LennardJonesFn]] = None,
                        part: str = "test") -> Dict[str, float]:
    """:func:`buffer_interaction_errors` on the test snapshots of a buffer network's training run.

    The network was trained on buffer clusters made from the snapshots in ``snapshots_path`` in
    their order (followed by other frames, e.g. lone-molecule frames); its ``split.json`` selects
    the test snapshots. Writes ``model_directory/interaction.json`` and returns its content. With
    ``part="validation"`` the split's validation snapshots instead (``interaction-validation.json``:
    frames for choosing between or weighting models, :func:`mlmm.potentials.mean.error_weights`). With
    ``held_out``, ``snapshots_path`` holds snapshots of which none was used in training: all of them
    are assessed, written to ``model_directory/interaction-held-out.json``. ``schemes``: see
    :func:`buffer_interaction_errors`.
    """
    import json
    from pathlib import Path

    from mlmm.data.dataset import load_dataset
    from mlmm.potentials import load_potential

    if part not in ("test", "validation"):
        raise ValueError(f"part must be 'test' or 'validation', got {part!r}")
    directory = Path(model_directory)
    snapshots, vacuum = load_dataset(snapshots_path), load_dataset(vacuum_path)
    if held_out:
        frames, name = list(range(snapshots.n_frames)), "interaction-held-out.json"
    else:
        split = json.loads((directory / "split.json").read_text())
        frames = [k for k in split[part] if k < snapshots.n_frames]
        name = "interaction.json" if part == "test" else f"interaction-{part}.json"
    model, metadata = load_potential(directory / "model.pt")
    coupling = metadata.get("extra", {}).get("buffer_outer_coupling", "ml-charges")
    result = buffer_interaction_errors(model, snapshots, vacuum, frames, calculator, buffer_cutoff, molecule_species,
                                       coupling, schemes)
    result["outer_coupling"] = coupling
    (directory / name).write_text(json.dumps(result, indent=2))
    return result
