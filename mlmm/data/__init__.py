"""Reference data: the dataset schema (HDF5, extxyz), sampling, reference calculators, labelling."""

from mlmm.data.calculators import CalculationFailed, PySCFCalculator, XTBCalculator, make_calculator
from mlmm.data.dataset import Dataset, DatasetError, concatenate, load_dataset
from mlmm.data.extxyz import read_extxyz, write_extxyz
from mlmm.data.labelling import label

__all__ = ["CalculationFailed", "Dataset", "DatasetError", "PySCFCalculator", "XTBCalculator", "concatenate",
           "label", "load_dataset", "make_calculator", "read_extxyz", "write_extxyz"]
