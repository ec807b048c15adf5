"""Training network potentials: losses, trainer, transfer and delta learning, active learning."""
