"""Harmonic frequencies and IR intensities of gas-phase water: the ML model against its reference, GFN2-xTB.

Both are optimised and analysed the same way: L-BFGS to 0.01 kJ/mol/nm, then the Cartesian Hessian by
central differences of the forces (1e-4 nm; autograd for the model), rigid-body motions projected out;
GFN2-xTB IR intensities from central differences of its dipole along the normal modes. Writes
harmonic.json.

    .venv/bin/python systems/water/spectra/harmonic.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import openmm.app as app
import openmm.unit as u

from mlmm.analysis.normal_modes import KM_PER_MOL_PER_E2_PER_AMU, harmonic_analysis
from mlmm.data.calculators import XTBCalculator
from mlmm.data.sampling import calculator_forces, hessian, normal_modes, optimize
from mlmm.potentials.io import load_potential

HERE = Path(__file__).resolve().parent
SPECIES = [8, 1, 1]
MASSES = np.array([15.999, 1.008, 1.008])
EXPERIMENT = [1595.0, 3657.0, 3756.0]  # gas-phase fundamentals (cm^-1)
STEP_NM = 1e-4


def reference() -> dict:
    """GFN2-xTB minimum, harmonic frequencies (cm^-1) and IR intensities (km/mol)."""
    calculator = XTBCalculator()
    force_fn = calculator_forces(calculator, SPECIES)
    start = app.PDBFile(str(HERE.parent / "water.pdb")).getPositions(asNumpy=True).value_in_unit(u.nanometer)
    minimum = optimize(np.asarray(start), force_fn, fmax=0.01)
    wavenumbers, _, modes = normal_modes(hessian(minimum, force_fn, STEP_NM), MASSES, minimum)
    sqrt_m = np.sqrt(MASSES)[:, None]
    intensities = []
    for mode in modes:
        step = STEP_NM * mode / np.linalg.norm(mode * sqrt_m)  # displacement for Q = STEP_NM sqrt(amu) nm
        ahead, behind = (calculator.compute(SPECIES, minimum + s * step)["dipole"] for s in (1, -1))
        derivative = (ahead - behind) / (2 * STEP_NM)  # e / sqrt(amu)
        intensities.append(float(KM_PER_MOL_PER_E2_PER_AMU * derivative @ derivative))
    return {"wavenumbers_cm-1": wavenumbers.tolist(), "ir_km_mol": intensities,
            "oh_nm": float(np.linalg.norm(minimum[1] - minimum[0])), "angle_deg": angle(minimum)}


def angle(positions: np.ndarray) -> float:
    first, second = positions[1] - positions[0], positions[2] - positions[0]
    return float(np.degrees(np.arccos(first @ second / np.linalg.norm(first) / np.linalg.norm(second))))


def main() -> None:
    model, _ = load_potential(HERE.parent / "model" / "model.pt")
    start = app.PDBFile(str(HERE.parent / "water.pdb")).getPositions(asNumpy=True).value_in_unit(u.nanometer)
    ml = harmonic_analysis(model, SPECIES, np.asarray(start), MASSES)
    result = {"model": {"wavenumbers_cm-1": ml.wavenumbers.tolist(), "ir_km_mol": ml.ir_intensities.tolist(),
                        "oh_nm": float(np.linalg.norm(ml.positions[1] - ml.positions[0])),
                        "angle_deg": angle(ml.positions)},
              "gfn2_xtb": reference(), "experiment_fundamentals_cm-1": EXPERIMENT,
              "modes": ["bend", "symmetric stretch", "antisymmetric stretch"]}
    (HERE / "harmonic.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
