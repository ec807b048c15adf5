"""Plots of training runs."""

from __future__ import annotations

from pathlib import Path
from typing import List


def plot_learning_curve(history: List[dict], path: Path) -> None:
    """Training loss and validation MAEs (energy, forces) against epoch, on log scales."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    left.semilogy(epochs, [row["train_loss"] for row in history], label="training")
    left.semilogy(epochs, [row["validation_loss"] for row in history], label="validation (EMA)")
    left.set(xlabel="epoch", ylabel="loss", title="loss")
    left.legend()
    right.semilogy(epochs, [row["validation_energy_mae"] for row in history], label="energy (kJ/mol)")
    right.semilogy(epochs, [row["validation_forces_mae"] for row in history], label="forces (kJ/mol/nm)")
    right.set(xlabel="epoch", ylabel="validation MAE", title="validation errors")
    right.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
