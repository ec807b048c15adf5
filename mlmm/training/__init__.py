"""Training network potentials: losses, trainer, transfer and delta learning, active learning."""

from mlmm.training.active import active_learning
from mlmm.training.config import load_training_config, make_config
from mlmm.training.delta import subtract_low_level
from mlmm.training.trainer import train

__all__ = ["active_learning", "load_training_config", "make_config", "subtract_low_level", "train"]
