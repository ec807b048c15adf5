"""Harmonic reference for the Fe-O bands: GFN2-xTB normal modes of Fe3+ water clusters.

Two clusters cut from fe-tip3p.pdb (build.py): the ion with its six first-shell waters
(Fe(H2O)6 3+) and the ion with every water whose oxygen lies within SECOND_SHELL_NM (first and
second shell, the buffer's full-weight region). Each is optimised with GFN2-xTB (charge +3,
sextet, flexible waters), the Hessian is taken by central differences of the forces
(mlmm.data.sampling) and each mode's Fe-O stretching character is the fraction of its
mass-weighted displacement in the span of the six first-shell Fe-O bond stretches.
Writes harmonic.json with, per cluster, the optimised first-shell Fe-O distances and the modes
below 1000 cm^-1 with their stretching character. Run from the repository root (about 10 min):
    .venv/bin/python systems/fe-hexaaqua/harmonic.py
"""

import json
import sys
from pathlib import Path

import numpy as np
import openmm.app as app

from mlmm.data.calculators import XTBCalculator
from mlmm.data.sampling import calculator_forces, hessian, normal_modes, optimize

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from build import BOX_NM, PDB, iron_and_oxygens, nearest_oxygens, oxygen_distances  # noqa: E402  (this folder)
from make_dataset import CHARGE, MULTIPLICITY  # noqa: E402

MASSES = {26: 55.845, 8: 15.999, 1: 1.008}
SECOND_SHELL_NM = 0.47  # oxygens within this distance of the ion form the larger cluster


def water_cluster(radius=None):
    """Atomic numbers and positions (nm) of Fe and its waters, nearest first, made whole around the ion.

    ``radius`` None: the six nearest waters; otherwise every water whose oxygen lies within
    ``radius`` nm of the ion.
    """
    pdb = app.PDBFile(str(PDB))
    x = np.array(pdb.getPositions(asNumpy=True).value_in_unit(pdb.positions.unit))
    iron, oxygens = iron_and_oxygens(pdb.topology)
    order = nearest_oxygens(x, BOX_NM, iron, oxygens)
    waters = order[:6] if radius is None else order[oxygen_distances(x, BOX_NM, iron, order) < radius]
    atoms = [iron] + [int(o) + k for o in waters for k in range(3)]
    cluster = x[atoms] - x[iron]
    cluster -= BOX_NM * np.round(cluster / BOX_NM)
    return np.array([26] + [8, 1, 1] * len(waters)), cluster


def stretch_character(modes: np.ndarray, positions: np.ndarray, masses: np.ndarray) -> np.ndarray:
    """Fraction (0..1) of each mode's mass-weighted displacement in the span of the six Fe-O stretches.

    A stretch b moves O_b along the bond and Fe against it; in mass-weighted coordinates its
    direction is M^-1/2 B_b (B_b: the gradient of the Fe-O distance). The fraction is |P e|^2 for
    the mode's normalised mass-weighted vector e and the projector P onto those six directions.
    """
    bonds = positions[1:19:3] - positions[0]
    bonds /= np.linalg.norm(bonds, axis=1, keepdims=True)
    directions = np.zeros((6, len(positions), 3))
    for b, unit in enumerate(bonds):
        directions[b, 1 + 3 * b], directions[b, 0] = unit, -unit
    directions = (directions / np.sqrt(masses)[None, :, None]).reshape(6, -1)
    basis, _ = np.linalg.qr(directions.T)  # orthonormal [3n, 6]
    weighted = (modes * np.sqrt(masses)[None, :, None]).reshape(len(modes), -1)
    weighted /= np.linalg.norm(weighted, axis=1, keepdims=True)
    return ((weighted @ basis) ** 2).sum(1)


def cluster_modes(species: np.ndarray, start: np.ndarray) -> dict:
    """Optimised first-shell Fe-O distances and the modes below 1000 cm^-1 of one cluster."""
    masses = np.array([MASSES[z] for z in species])
    force_fn = calculator_forces(XTBCalculator(), species, CHARGE, MULTIPLICITY)
    minimum = optimize(start, force_fn, fmax=1.0, max_steps=5000)
    energy, forces = force_fn(minimum)
    wavenumbers, _, modes = normal_modes(hessian(minimum, force_fn), masses, minimum)
    characters = stretch_character(modes, minimum, masses)
    oxygens = np.linalg.norm(minimum[1::3] - minimum[0], axis=1)
    low = wavenumbers < 1000.0
    return {"waters": len(oxygens), "fe_o_nm": oxygens[:6].round(4).tolist(),
            "other_waters_fe_o_nm": np.sort(oxygens[6:]).round(4).tolist(),
            "largest_residual_force": float(np.abs(forces).max()),
            "modes_below_1000_cm": [{"wavenumber_cm": round(float(w), 1), "fe_o_stretch_character": round(c, 3)}
                                    for w, c in zip(wavenumbers[low], characters[low])]}


def main():
    result = {"first_shell": cluster_modes(*water_cluster()),
              "first_and_second_shell": cluster_modes(*water_cluster(SECOND_SHELL_NM))}
    (HERE / "harmonic.json").write_text(json.dumps(result, indent=2))
    for name, cluster in result.items():
        strong = [(m["wavenumber_cm"], m["fe_o_stretch_character"]) for m in cluster["modes_below_1000_cm"]
                  if m["fe_o_stretch_character"] > 0.3]
        print(f"{name} ({cluster['waters']} waters): first-shell Fe-O {np.round(cluster['fe_o_nm'], 4)} nm; "
              f"modes with > 30 % Fe-O stretching: {strong}")


if __name__ == "__main__":
    main()
