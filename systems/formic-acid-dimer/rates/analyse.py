"""Double proton transfer rates of the gas-phase formic acid dimer from the replica ensemble.

Collective variable (as in ../make_dataset.py): xi = mean over both protons of d(O_donor-H) - d(H-O_acceptor)
(nm), -0.065 at the reactant minimum, 0 at the concerted transition state, +0.065 at the product. States with
hysteresis: reactant xi <= -XI_STATE, product xi >= +XI_STATE. Transitions in either direction are pooled over
the time committed to either state (the two states are the same by symmetry), replicas are pooled per
temperature, and k(T) gets Garwood 95 % intervals; then Arrhenius and Eyring fits. Writes rates.json, rates.png.

    .venv/bin/python systems/formic-acid-dimer/rates/analyse.py
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import mdtraj
import numpy as np

from mlmm.analysis.rates import arrhenius_fit, distance, distance_difference, eyring_fit, transition_rate

HERE = Path(__file__).resolve().parent
PROTONS = [((2, 4), (4, 6)), ((7, 9), (9, 1))]  # (donor O, H), (H, acceptor O), atom indices
HYDROGEN_BONDS = [(2, 6), (7, 1)]  # O...O pairs of the two hydrogen bonds
XI_STATE = 0.03  # nm
DISSOCIATED_NM = 0.45  # an O...O distance beyond this: the dimer has come apart


def replica_cv(directory: Path) -> tuple[np.ndarray, float, float]:
    """xi per frame, the saving interval (ps) and the largest O...O hydrogen-bond distance (nm) of a replica."""
    trajectory = mdtraj.load(str(directory / "trajectory.dcd"), top=str(directory / "topology.pdb"))
    positions = trajectory.xyz.astype(np.float64)
    xi = np.mean([distance_difference(positions, first, second) for first, second in PROTONS], axis=0)
    oo = max(distance(positions, i, j).max() for i, j in HYDROGEN_BONDS)
    times = np.loadtxt(directory / "log.csv", delimiter=",", skiprows=1, usecols=1, ndmin=1)  # ps, one per frame
    return xi, float(np.median(np.diff(times))), float(oo)


def main() -> None:
    summary = json.loads((HERE / "runs" / "ensemble.json").read_text())["replicas"]
    by_temperature = defaultdict(list)
    for row in summary:
        if row["state"] != "finished":
            raise SystemExit(f"replica {row['name']} is {row['state']}; run the ensemble to the end first")
        by_temperature[row["temperature_K"]].append(replica_cv(Path(row["directory"])))
    temperatures, rates, table = sorted(by_temperature), [], []
    for temperature in temperatures:
        cvs = [xi for xi, _, _ in by_temperature[temperature]]
        timestep = by_temperature[temperature][0][1]
        rate = transition_rate(cvs, timestep, [(-np.inf, -XI_STATE), (XI_STATE, np.inf)])
        rates.append(rate)
        table.append({"temperature_K": temperature, "replicas": len(cvs), "time_ps": rate.time,
                      "transitions": rate.transitions, "rate_per_ps": rate.rate, "lower_per_ps": rate.lower,
                      "upper_per_ps": rate.upper,
                      "largest_OO_nm": max(oo for _, _, oo in by_temperature[temperature])})
    result = {"states": f"xi <= -{XI_STATE} nm (reactant), xi >= {XI_STATE} nm (product)", "rates": table}
    if sum(rate.transitions > 0 for rate in rates) >= 2:
        counted = [(t, r) for t, r in zip(temperatures, rates) if r.transitions > 0]
        arrhenius = arrhenius_fit(*zip(*counted))
        eyring = eyring_fit(*zip(*counted))
        result["arrhenius"] = {"activation_energy_kJ_mol": arrhenius.activation_energy,
                               "error": arrhenius.activation_energy_error,
                               "ln_prefactor_per_ps": arrhenius.ln_prefactor,
                               "ln_prefactor_error": arrhenius.ln_prefactor_error,
                               "chi2_per_dof": arrhenius.chi2_per_dof}
        result["eyring"] = {"enthalpy_kJ_mol": eyring.enthalpy, "enthalpy_error": eyring.enthalpy_error,
                            "entropy_J_mol_K": eyring.entropy, "entropy_error": eyring.entropy_error}
        plot(counted, arrhenius)
    (HERE / "rates.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


def plot(counted, fit) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    temperatures = np.array([t for t, _ in counted])
    rates = np.array([r.rate for _, r in counted])
    errors = np.array([[r.rate - r.lower, r.upper - r.rate] for _, r in counted]).T
    figure, axes = plt.subplots(figsize=(5, 3.8))
    axes.errorbar(1000.0 / temperatures, rates, yerr=errors, fmt="o", capsize=3, label="MD, 95 % interval")
    grid = np.linspace(temperatures.min() * 0.95, temperatures.max() * 1.05, 50)
    axes.plot(1000.0 / grid, fit.rate(grid), label=f"Arrhenius: Ea = {fit.activation_energy:.1f} "
                                                    f"+- {fit.activation_energy_error:.1f} kJ/mol")
    axes.set(yscale="log", xlabel="1000 / T (1/K)", ylabel="k (1/ps)",
             title="formic acid dimer, double proton transfer (gas phase)")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(HERE / "rates.png", dpi=120)
    plt.close(figure)


if __name__ == "__main__":
    main()
