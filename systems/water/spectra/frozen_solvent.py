"""Harmonic solvent shifts of the water molecule in frozen TIP3P environments: the electrostatic model
against GFN2-xTB QM/MM, which it was trained on.

The test snapshots of the embedding model (../embedding/data/water-tip3p-gfn2.h5, its split's test frames:
one water and the switched point charges of the TIP3P waters around it) are each taken as a fixed cage.
In each, the water is optimised and its harmonic frequencies computed, once with the model
(../embedding/model/model.pt: energy in the field, Hessian by autograd) and once with GFN2-xTB with the
same point charges (xtb-python, Hessian by central differences of its gradients), both with the TIP3P
oxygen-oxygen Lennard-Jones term the embedding keeps from the force field (without it the water falls onto a
point charge); the relaxed shift of each mode is its frequency at the water's minimum in the cage minus
that at the same method's vacuum minimum, the unrelaxed shift its frequency in the cage minus in vacuum,
both at the snapshot's geometry (the field's direct effect on the curvature, without the geometry it
induces). This separates what the reference method gives for the solvent shift from what the network
learned of it, without dynamics.
Writes frozen-solvent.json. Run from the repository root (about 5 min):
    .venv/bin/python systems/water/spectra/frozen_solvent.py
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from mlmm.data.calculators import XTBCalculator
from mlmm.data.dataset import load_dataset
from mlmm.data.sampling import hessian, normal_modes, optimize, potential_forces
from mlmm.potentials import load_potential

HERE = Path(__file__).resolve().parent
EMBEDDING = HERE.parent / "embedding"
MASSES = {1: 1.008, 8: 15.999}
MODES = ("bend", "symmetric stretch", "antisymmetric stretch")
#: kJ/mol/nm: the optimisations' convergence (GFN2-xTB's gradients are converged to about 0.01)
FMAX = 0.05
#: amber14 TIP3P oxygen Lennard-Jones sigma (nm) and epsilon (kJ/mol); its hydrogens have none
SIGMA_O, EPSILON_O = 0.315061, 0.636386


def oxygen_repulsion(positions: torch.Tensor, mm_oxygens: torch.Tensor) -> torch.Tensor:
    """TIP3P Lennard-Jones energy (kJ/mol) of the water's oxygen (atom 0) with the MM oxygens (nm)."""
    s6 = (SIGMA_O / torch.linalg.norm(mm_oxygens - positions[0], dim=1)) ** 6
    return (4.0 * EPSILON_O * (s6 * s6 - s6)).sum()


class InCage(torch.nn.Module):
    """The electrostatic model's energy (kJ/mol) of the water in fixed point charges (nm, e), plus the
    oxygen-oxygen Lennard-Jones term (the MM oxygens: the negative charges)."""

    def __init__(self, model, mm_positions: np.ndarray, mm_charges: np.ndarray):
        super().__init__()
        self.model = model
        self.mm_positions = torch.as_tensor(mm_positions, dtype=torch.float64)
        self.mm_charges = torch.as_tensor(mm_charges, dtype=torch.float64)
        self.mm_oxygens = self.mm_positions[self.mm_charges < 0]

    def forward(self, species: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        energy = self.model.energy_in_field(species, positions, self.mm_positions, self.mm_charges, 0.0)[0]
        return energy + oxygen_repulsion(positions, self.mm_oxygens)


def xtb_forces(calculator: XTBCalculator, species, mm_positions=None, mm_charges=None):
    """Force function (kJ/mol, kJ/mol/nm) of GFN2-xTB in the given point charges with the oxygen-oxygen
    Lennard-Jones term (:class:`InCage`), or in vacuum."""
    mm_oxygens = None if mm_positions is None else torch.as_tensor(mm_positions[mm_charges < 0])

    def force_fn(x):
        result = calculator.compute(species, x, mm_positions=mm_positions, mm_charges=mm_charges)
        energy, forces = float(result["energy"]), result["forces"]
        if mm_oxygens is not None:
            x_t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
            repulsion = oxygen_repulsion(x_t, mm_oxygens)
            energy, forces = energy + float(repulsion), forces - torch.autograd.grad(repulsion, x_t)[0].numpy()
        return energy, forces
    return force_fn


def frequencies(force_fn, species, positions: np.ndarray, relax: bool) -> np.ndarray:
    """Harmonic wavenumbers (cm^-1; Hessian by central differences of the forces) at the minimum near
    ``positions`` (``relax``) or at ``positions`` themselves (rigid-body motions projected out)."""
    if relax:
        positions = optimize(positions, force_fn, fmax=FMAX)
    return normal_modes(hessian(positions, force_fn), [MASSES[z] for z in species], positions)[0]


def summary(shifts: dict) -> dict:
    """Per mode: mean and standard deviation of the shifts of both methods, and the model's errors."""
    model, reference = np.array(shifts["model"]), np.array(shifts["GFN2-xTB"])
    rows = {}
    for m, mode in enumerate(MODES):
        error = model[:, m] - reference[:, m]
        rows[mode] = {"model_mean": float(model[:, m].mean()), "model_sd": float(model[:, m].std()),
                      "reference_mean": float(reference[:, m].mean()), "reference_sd": float(reference[:, m].std()),
                      "mae": float(np.abs(error).mean()), "mean_error": float(error.mean()),
                      "correlation": float(np.corrcoef(model[:, m], reference[:, m])[0, 1])}
    return rows


def stretch_band_centroids(path: Path, low: float = 3200.0, high: float = 4000.0) -> dict:
    """First moments (cm^-1) of the IR and power spectra of a spectrum CSV of this folder between ``low``
    and ``high``: the MD's counterpart of the stretch shift."""
    table = np.genfromtxt(path, delimiter=",", names=True)
    wavenumbers = table["wavenumber_cm1"]
    inside = (wavenumbers >= low) & (wavenumbers <= high)
    return {name: float((wavenumbers[inside] * table[column][inside]).sum() / table[column][inside].sum())
            for name, column in (("ir", "ir_e2_nm2_ps2_per_cm1"), ("power", "power_dof_per_cm1"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, help="only the first FRAMES test frames (default all 50)")
    args = parser.parse_args()
    frames = load_dataset(EMBEDDING / "data" / "water-tip3p-gfn2.h5")
    test = json.loads((EMBEDDING / "model" / "split.json").read_text())["test"][:args.frames]
    model, _ = load_potential(EMBEDDING / "model" / "model.pt")
    calculator = XTBCalculator()
    species = frames.species.tolist()
    vacuum = {"model": potential_forces(model, species), "GFN2-xTB": xtb_forces(calculator, species)}
    start = frames.positions[test[0]].astype(np.float64)
    minima = {name: frequencies(force_fn, species, start, relax=True) for name, force_fn in vacuum.items()}
    relaxed, unrelaxed = {name: [] for name in vacuum}, {name: [] for name in vacuum}
    for k in test:
        mask = frames.mm_mask[k]
        mm_x, mm_q = frames.mm_positions[k][mask].astype(np.float64), frames.mm_charges[k][mask].astype(np.float64)
        x = frames.positions[k].astype(np.float64)
        cage = {"model": potential_forces(InCage(model, mm_x, mm_q), species),
                "GFN2-xTB": xtb_forces(calculator, species, mm_x, mm_q)}
        for name in vacuum:
            relaxed[name].append(frequencies(cage[name], species, x, relax=True) - minima[name])
            unrelaxed[name].append(frequencies(cage[name], species, x, relax=False)
                                   - frequencies(vacuum[name], species, x, relax=False))
        print(f"frame {k}: relaxed shifts (cm^-1) model {np.round(relaxed['model'][-1], 1).tolist()}, GFN2-xTB "
              f"{np.round(relaxed['GFN2-xTB'][-1], 1).tolist()}")
    result = {"frames": len(test), "vacuum_minimum_cm-1": {name: dict(zip(MODES, values.tolist()))
                                                           for name, values in minima.items()},
              "relaxed": summary(relaxed), "unrelaxed": summary(unrelaxed)}
    print(f"{len(test)} frozen TIP3P cages; shift (cm^-1), mean +- sd over the cages")
    for kind, explanation in (("relaxed", "the water's minimum in the cage - its vacuum minimum"),
                              ("unrelaxed", "in the cage - in vacuum, both at the snapshot's geometry")):
        print(f"{kind}: {explanation}")
        for mode, row in result[kind].items():
            print(f"  {mode}: model {row['model_mean']:+.1f} +- {row['model_sd']:.1f}, GFN2-xTB "
                  f"{row['reference_mean']:+.1f} +- {row['reference_sd']:.1f}; model - GFN2-xTB MAE {row['mae']:.1f}, "
                  f"mean {row['mean_error']:+.1f}, r = {row['correlation']:.2f}")
    result["md_stretch_band_centroids_cm-1"] = {name: stretch_band_centroids(HERE / f"{name}.csv")
                                                for name in ("gas-300K", "solvated")}
    print("MD stretch band centroids (3200-4000 cm^-1):", result["md_stretch_band_centroids_cm-1"])
    (HERE / "frozen-solvent.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
