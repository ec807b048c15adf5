"""Delta learning: the network learns the difference between a high and a low level of theory.

The target is E_high - E_low (and F_high - F_low) on the same frames; in production the
low level (an MM force field or xTB) is added back, e.g. with
:class:`mlmm.potentials.ForceFieldPotential` plus the network in one summed potential.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mlmm.data.dataset import Dataset


def geometry_key(positions: np.ndarray, tolerance: float = 1e-6) -> bytes:
    """A frame's positions (nm) rounded to ``tolerance`` (nm), as a key that matches the same
    geometry in another dataset."""
    return np.round(positions / tolerance).astype(np.int64).tobytes()


def subtract_low_level(high: Dataset, low: Dataset, tolerance: float = 1e-6, charges_from: str = "high"
                       ) -> Dataset:
    """A dataset whose energies and forces are high minus low, for frames present in both.

    Frames are matched by geometry (positions equal within ``tolerance`` nm), so both
    datasets may hold different subsets (for instance after failed labels) in any order.
    Dipoles are kept from the high level, charges from ``charges_from`` ("high" or "low";
    "low" gives an electrostatic embedding model the vacuum charges of QM/MM minus vacuum data).
    """
    if charges_from not in ("high", "low"):
        raise ValueError(f"charges_from must be 'high' or 'low', got {charges_from!r}")
    if not np.array_equal(high.species, low.species):
        raise ValueError("the high- and low-level datasets describe different molecules (species differ)")
    if low.energies is None or low.forces is None:
        raise ValueError("the low-level dataset has no energies and forces")
    keys = {geometry_key(x, tolerance): k for k, x in enumerate(low.positions)}
    matches = [(k, keys.get(geometry_key(x, tolerance))) for k, x in enumerate(high.positions)]
    pairs = [(k, j) for k, j in matches if j is not None]
    if not pairs:
        raise ValueError("no frame of the high-level dataset is in the low-level dataset")
    kept = np.array([k for k, _ in pairs])
    partner = np.array([j for _, j in pairs])
    delta = high.subset(kept)
    provenance = dict(delta.provenance, delta_learning={"low_level": low.provenance.get("level_of_theory"),
                                                        "frames_without_low_level": len(matches) - len(pairs)})
    charges = delta.charges
    if charges_from == "low":
        if low.charges is None:
            raise ValueError("charges_from='low' but the low-level dataset has no charges")
        charges = low.charges[partner]
    return dataclasses.replace(delta, energies=delta.energies - low.energies[partner],
                               forces=delta.forces - low.forces[partner], charges=charges, provenance=provenance)
