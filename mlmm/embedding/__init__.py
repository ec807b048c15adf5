"""Embedding schemes: ML region selection, System surgery and the torch modules OpenMM runs."""
