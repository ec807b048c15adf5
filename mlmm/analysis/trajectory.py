"""Read what the spectra need from trajectory files: positions, velocities, times, boxes and masses.

Units: nm, nm/ps, ps, amu; box vectors as rows (nm).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np


@dataclass(frozen=True)
class TrajectoryData:
    """Arrays of a trajectory file.

    Attributes
    ----------
    positions : ndarray [frames, atoms, 3]
        nm, as stored (wrapped into the box by mlmm runs).
    velocities : ndarray [frames, atoms, 3] or None
        nm/ps; only MDTraj HDF5 files written with velocities have them.
    times : ndarray [frames]
        ps.
    boxes : ndarray [frames, 3, 3] or None
        Periodic box vectors (rows, nm); None without a periodic box.
    masses : ndarray [atoms]
        amu, from the topology's elements.
    topology : mdtraj.Topology
    """

    positions: np.ndarray
    velocities: Optional[np.ndarray]
    times: np.ndarray
    boxes: Optional[np.ndarray]
    masses: np.ndarray
    topology: object


#: The AKMA time unit of DCD headers, in ps.
AKMA_TIME_PS = 0.04888821


def dcd_times(path: Path, frames: int) -> np.ndarray:
    """Times (ps) of the frames of a DCD file from its header: first step, steps between frames and the
    time step (AKMA units), as OpenMM and CHARMM write them."""
    with open(path, "rb") as handle:
        header = handle.read(48)
    marker, magic, _, first_step, interval = struct.unpack("<i4s3i", header[:20])
    (timestep,) = struct.unpack("<f", header[44:48])
    if marker != 84 or magic != b"CORD":
        raise ValueError(f"{path} is not a DCD file (no CORD header)")
    return (first_step + interval * np.arange(frames)) * float(timestep) * AKMA_TIME_PS


def read_trajectory(path: Union[str, Path], topology: Optional[Union[str, Path]] = None) -> TrajectoryData:
    """Load an MDTraj HDF5 (.h5, with velocities if stored) or any MDTraj-readable trajectory (``topology``
    needed for formats without one, e.g. the PDB an mlmm run writes beside its DCD)."""
    import mdtraj
    from mdtraj.utils import lengths_and_angles_to_box_vectors

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no trajectory file {path}")
    velocities = None
    if path.suffix.lower() == ".h5":
        from mdtraj.formats import HDF5TrajectoryFile

        with HDF5TrajectoryFile(str(path), mode="r") as handle:
            frames = handle.read()
            mdtop = handle.topology
        positions, times, lengths, angles = frames.coordinates, frames.time, frames.cell_lengths, frames.cell_angles
        velocities = None if frames.velocities is None else np.asarray(frames.velocities, dtype=np.float64)
    else:
        if topology is None:
            raise ValueError(f"{path.name} holds no topology; pass the PDB written beside it (topology.pdb)")
        trajectory = mdtraj.load(str(path), top=str(topology))
        mdtop, positions, times = trajectory.topology, trajectory.xyz, trajectory.time
        if path.suffix.lower() == ".dcd":  # MDTraj numbers DCD frames 0, 1, ...; the header has the times
            times = dcd_times(path, len(trajectory))
        lengths, angles = trajectory.unitcell_lengths, trajectory.unitcell_angles
    boxes = None
    if lengths is not None:
        boxes = np.stack(lengths_and_angles_to_box_vectors(*lengths.T, *angles.T), axis=1).astype(np.float64)
    masses = np.array([atom.element.mass if atom.element is not None else 0.0 for atom in mdtop.atoms])
    return TrajectoryData(np.asarray(positions, dtype=np.float64), velocities, np.asarray(times, dtype=np.float64),
                          boxes, masses, mdtop)
