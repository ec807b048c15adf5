"""What the buffer networks' error on their cluster labels follows: a diagnostic of the residuals.

For every cluster frame with a buffer (the training data of train-field-wide.toml, in its order) the
residual is the network's E_NN(I u B) - E_NN(B) less the label (kJ/mol), and the same for the cluster's
energy in the field of the outer waters, E + sum_a q_a phi_a (the field-energy loss's quantity, with
the network's and GFN2-xTB's charges of I and charge changes of the buffer). On the split's training
and test frames it reports:

- the coupling's part of the residual in the field, sum_a (q_a - q_a^QM) phi_a: its MAE, mean and spread,
  and its correlation with the energy's residual (the two add up in the scheme's E_int);
- each model's residual MAE, and for each pair of models the correlation of their residuals and the
  MAE of their mean (what a committee of the two would reach);
- the correlation of the residual with the classical induction energy the solute adds to its buffer,
  E_ind(I u B) - E_ind(B): TIP3P charges polarizing Thole-coupled atomic dipoles of every other
  molecule (the electrostatic model's solver and starting polarizabilities, bare Coulomb fields
  between molecules), and the test MAE after a linear fit of the residual on it over the training
  frames: whether a polarizable term would take up the error;
- whether the geometry of the solute and its first shell predicts the residual: the correlation with
  each of 19 descriptors (the solute's O-H lengths and angle; the two hydrogen bonds it donates and the
  three nearest it accepts, length and angle; the six nearest buffer oxygens; the buffer waters within
  0.30-0.50 nm), and the test MAE after kernel ridge regression of the residual on all of them over the
  training frames (Gaussian kernel, its width and regularization chosen by 5-fold cross-validation).

Writes residuals.json in the first model's directory. Run from the repository root (~4 min per model
on one core):
    .venv/bin/python systems/water/buffer/residuals.py model-field-wide model-field-energy model-field-dq \
        model-field-coupling
"""

import argparse
import itertools
import json
from pathlib import Path

import numpy as np
import torch

from mlmm.data.dataset import load_dataset
from mlmm.potentials import load_potential
from mlmm.potentials.electrostatic import INITIAL_POLARIZABILITY, ElectrostaticEmbedding
from mlmm.training.batching import buffer_frame_outputs
from mlmm.training.metrics import SHARED_TENSORS, frame_tensors, outer_coupling_error
from mlmm.units import COULOMB_CONSTANT

HERE = Path(__file__).parent
DATASETS = ["data/water-buffer-field-dq-gfn2.h5", "data/water-buffer-field-dq-more-gfn2.h5"]
TIP3P_CHARGES = torch.tensor([-0.834, 0.417, 0.417], dtype=torch.float64)  # e: O, H, H
POLARIZABILITIES = torch.tensor([INITIAL_POLARIZABILITY[z] for z in (8, 1, 1)], dtype=torch.float64)  # nm^3
DESCRIPTORS = (["solute O-H1", "solute O-H2", "solute H-O-H cosine"]
               + [f"donated bond {h} {part}" for h in (1, 2) for part in ("H...O", "O-H...O cosine")]
               + [f"accepted bond {k} {part}" for k in (1, 2, 3) for part in ("O...H", "O...H-O cosine")]
               + [f"buffer oxygen {k} distance" for k in range(1, 7)]
               + [f"buffer waters within {c:.2f} nm" for c in (0.30, 0.35, 0.40, 0.45, 0.50)])
KERNEL_GAMMAS, RIDGE_LAMBDAS = (0.005, 0.01, 0.02, 0.05, 0.1), (0.1, 1.0, 10.0)  # cross-validated grid


def induction_energy(waters: torch.Tensor, solver: ElectrostaticEmbedding) -> float:
    """Classical induction energy (kJ/mol) of rigid-charge waters [w, 3, 3] (nm): each atom's dipole is
    induced by the bare field of the other waters' TIP3P charges, dipoles coupled through Thole tensors."""
    w = waters.shape[0]
    if w < 2:
        return 0.0
    d = waters.reshape(w, 1, 3, 1, 3) - waters.reshape(1, w, 1, 3, 3)  # [w, w', 3, 3', xyz]
    r = torch.linalg.norm(d, dim=-1)
    other = (1.0 - torch.eye(w, dtype=waters.dtype)).reshape(w, w, 1, 1)
    field = (other * TIP3P_CHARGES.reshape(1, 1, 1, 3) / r.clamp_min(1e-9) ** 3).unsqueeze(-1) * d
    field = field.sum((1, 3)).reshape(1, 3 * w, 3)
    alpha = POLARIZABILITIES.repeat(w).unsqueeze(0)
    dipoles = solver.induced_dipoles(waters.reshape(1, 3 * w, 3), alpha, field)
    return float(-0.5 * COULOMB_CONSTANT * (dipoles * field).sum())


def cosine(a: np.ndarray, vertex: np.ndarray, b: np.ndarray) -> float:
    """Cosine of the angle a-vertex-b."""
    u, v = a - vertex, b - vertex
    return float(u @ v / np.linalg.norm(u) / np.linalg.norm(v))


def first_shell_descriptors(solute: np.ndarray, buffer: np.ndarray) -> list:
    """The DESCRIPTORS of a solute water [3, 3] and its buffer waters [w, 3, 3] (nm; O, H, H)."""
    row = [np.linalg.norm(solute[1] - solute[0]), np.linalg.norm(solute[2] - solute[0]),
           cosine(solute[1], solute[0], solute[2])]
    for h in (1, 2):
        nearest = int(np.argmin(np.linalg.norm(buffer[:, 0] - solute[h], axis=1)))
        row += [np.linalg.norm(buffer[nearest, 0] - solute[h]), cosine(solute[0], solute[h], buffer[nearest, 0])]
    hydrogens = np.linalg.norm(buffer[:, 1:] - solute[0], axis=-1).reshape(-1)
    for k in np.argsort(hydrogens)[:3]:
        water, h = divmod(int(k), 2)
        row += [hydrogens[k], cosine(solute[0], buffer[water, 1 + h], buffer[water, 0])]
    oxygens = np.sort(np.linalg.norm(buffer[:, 0] - solute[0], axis=1))
    return row + list(oxygens[:6]) + [int((oxygens < c).sum()) for c in (0.30, 0.35, 0.40, 0.45, 0.50)]


def kernel_ridge_mae(features: np.ndarray, target: np.ndarray, train, test, seed: int = 0) -> dict:
    """Test MAE of a Gaussian-kernel ridge regression of ``target`` on standardized ``features``, its
    kernel width and regularization picked from the grid by 5-fold cross-validation on ``train``."""
    z = (features - features[train].mean(0)) / features[train].std(0).clip(1e-12)

    def kernel(rows, columns, gamma):
        return np.exp(-gamma * ((z[rows, None] - z[None, columns]) ** 2).sum(-1))

    def predict(fit, at, gamma, lam):
        mean = target[fit].mean()
        weights = np.linalg.solve(kernel(fit, fit, gamma) + lam * np.eye(len(fit)), target[fit] - mean)
        return kernel(at, fit, gamma) @ weights + mean

    folds = np.array_split(np.random.default_rng(seed).permutation(train), 5)
    scores = {(gamma, lam): float(np.mean([np.abs(target[f] - predict(np.setdiff1d(train, f), f, gamma, lam)).mean()
                                           for f in folds]))
              for gamma in KERNEL_GAMMAS for lam in RIDGE_LAMBDAS}
    gamma, lam = min(scores, key=scores.get)
    return {"gamma": gamma, "lambda": lam, "cross_validation_mae": scores[(gamma, lam)],
            "train_mae_before": float(np.abs(target[train]).mean()),
            "test_mae_before": float(np.abs(target[test]).mean()),
            "test_mae_after": float(np.abs(target[test] - predict(train, test, gamma, lam)).mean())}


def frames_and_residuals(models):
    """Per frame with a buffer: (frame index, descriptors, induction energy), and each model's residuals
    [frames, 3]: energy, energy in the field, and the coupling's part of the latter (kJ/mol)."""
    solver = ElectrostaticEmbedding(["H", "O"])
    rows, residuals, offset = [], {name: [] for name in models}, 0
    for path in DATASETS:
        data = load_dataset(HERE / path)
        tensors = frame_tensors(data, torch.float64)
        with_buffer = torch.as_tensor(data.mm_mask.any(1))
        for start in range(0, data.n_frames, 64):
            frames = slice(start, min(start + 64, data.n_frames))
            batch = {key: value if key in SHARED_TENSORS else value[frames] for key, value in tensors.items()}
            for name, model in models.items():
                outputs = buffer_frame_outputs(model, batch["species"], batch["positions"], batch["mm_positions"],
                                               batch["buffer_species"], batch["mm_mask"], create_graph=False)
                energy = outputs["energy"].mean(0).double() - batch["energies"]
                coupling = outer_coupling_error(outputs, batch, "charge-difference").mean(0)
                errors = torch.stack([energy, energy + coupling, coupling], 1).detach()
                residuals[name].append(errors[with_buffer[frames]].numpy())
        for k in range(data.n_frames):
            real = data.mm_mask[k]
            if not real.any():
                continue
            solute, buffer = data.positions[k], data.mm_positions[k][real].reshape(-1, 3, 3)
            waters = torch.as_tensor(np.vstack([solute[None], buffer]))
            rows.append([offset + k, *first_shell_descriptors(solute, buffer),
                         induction_energy(waters, solver) - induction_energy(waters[1:], solver)])
        offset += data.n_frames
    return np.array(rows), {name: np.concatenate(values) for name, values in residuals.items()}


def analysis(rows, residuals, split):
    """The report (module docstring) on the split's training and test frames."""
    position = {int(index): i for i, index in enumerate(rows[:, 0])}
    parts = {part: [position[k] for k in split[part] if k in position] for part in ("train", "test")}
    induction = rows[:, -1]
    report = {"frames": {part: len(rows_) for part, rows_ in parts.items()},
              "induction_energy_mean": float(induction.mean()), "induction_energy_std": float(induction.std())}
    for column, quantity in enumerate(("energy", "field_energy")):
        result = {}
        for part, index in parts.items():
            errors = {name: r[index, column] for name, r in residuals.items()}
            result[part] = {
                "mae": {name: float(np.abs(e).mean()) for name, e in errors.items()},
                "pairs": [{"models": [a, b], "correlation": float(np.corrcoef(errors[a], errors[b])[0, 1]),
                           "mean_of_pair_mae": float(np.abs(0.5 * (errors[a] + errors[b])).mean())}
                          for a, b in itertools.combinations(errors, 2)],
                "correlation_with_induction": {name: float(np.corrcoef(e, induction[index])[0, 1])
                                               for name, e in errors.items()},
                "correlation_with_descriptors": {
                    name: {label: float(np.corrcoef(e, rows[index, 1 + j])[0, 1])
                           for j, label in enumerate(DESCRIPTORS)} for name, e in errors.items()}}
        train, test = parts["train"], parts["test"]
        result["first_shell_regression"] = {name: kernel_ridge_mae(rows[:, 1:-1], r[:, column], train, test)
                                            for name, r in residuals.items()}
        design = np.stack([np.ones(len(induction)), induction], axis=1)
        result["induction_fit"] = {}
        for name, r in residuals.items():
            coefficients = np.linalg.lstsq(design[train], r[train, column], rcond=None)[0]
            result["induction_fit"][name] = {
                "intercept": float(coefficients[0]), "slope": float(coefficients[1]),
                "test_mae_after": float(np.abs(r[test, column] - design[test] @ coefficients).mean())}
        report[quantity] = result
    report["coupling"] = {part: {name: {"mae": float(np.abs(r[index, 2]).mean()), "mean": float(r[index, 2].mean()),
                                        "std": float(r[index, 2].std()), "correlation_with_energy_residual": float(
                                            np.corrcoef(r[index, 2], r[index, 0])[0, 1])}
                                 for name, r in residuals.items()} for part, index in parts.items()}
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="model directories in this folder, trained on the same split")
    args = parser.parse_args()
    torch.set_num_threads(1)
    splits = [json.loads((HERE / name / "split.json").read_text()) for name in args.models]
    if any(split != splits[0] for split in splits):
        raise SystemExit("the models were trained on different splits; their residuals cannot be compared")
    models = {name: load_potential(HERE / name / "model.pt")[0] for name in args.models}
    report = analysis(*frames_and_residuals(models), splits[0])
    (HERE / args.models[0] / "residuals.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
