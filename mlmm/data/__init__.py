"""Reference data: the dataset schema (HDF5, extxyz), sampling, reference calculators, labelling."""
