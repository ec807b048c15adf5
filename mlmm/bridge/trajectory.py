"""Trajectory files written frame by frame during a run: DCD (positions) or MDTraj HDF5 (positions, time,
box and, when asked, velocities). Both append to an existing file, so a resumed run extends it."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as u

from mlmm.config import RunConfig


class DCDWriter:
    """Appends frames to a DCD file (OpenMM's DCDFile, which updates the header with every frame).

    A new file is created with its first frame, so a run that fails before leaves no empty file.
    """

    def __init__(self, path: Path, topology: app.Topology, timestep_ps: float, interval: int, append: bool):
        self.frames = 0
        self._file = None
        self._open = lambda: open(path, "r+b" if append else "wb")
        self._dcd_arguments = (topology, timestep_ps, interval, interval, append)
        if append:
            with open(path, "rb") as handle:
                handle.seek(8)
                self.frames = struct.unpack("<i", handle.read(4))[0]

    def write(self, state: openmm.State) -> None:
        if self._file is None:
            self._file = self._open()
            self._dcd = app.DCDFile(self._file, *self._dcd_arguments)
        self._dcd.writeModel(state.getPositions(asNumpy=True), periodicBoxVectors=state.getPeriodicBoxVectors())
        self.frames += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


class HDF5Writer:
    """Appends frames (positions, time, box, optionally velocities in nm/ps) to an MDTraj HDF5 file,
    created with its first frame."""

    def __init__(self, path: Path, topology: app.Topology, append: bool, velocities: bool = False):
        try:
            from mdtraj.formats import HDF5TrajectoryFile
        except ImportError as error:
            raise ValueError(f"trajectory {path.name!r} needs PyTables ({error}); install 'tables' or write a "
                             ".dcd trajectory.") from None
        self._open = lambda: HDF5TrajectoryFile(str(path), mode="a" if append else "w")
        self._topology = topology
        self._velocities = velocities
        self._file = None
        self.frames = 0
        if append:
            self._file = self._open()
            self.frames = len(self._file) if "coordinates" in self._file.root else 0

    def write(self, state: openmm.State) -> None:
        import mdtraj
        from mdtraj.utils import box_vectors_to_lengths_and_angles

        if self._file is None:
            self._file = self._open()
            self._file.topology = mdtraj.Topology.from_openmm(self._topology)
        data: dict[str, Any] = {"time": np.array([state.getTime().value_in_unit(u.picosecond)])}
        if self._topology.getPeriodicBoxVectors() is not None:
            *lengths, alpha, beta, gamma = box_vectors_to_lengths_and_angles(
                *state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(u.nanometer))
            data.update(cell_lengths=np.array([lengths]), cell_angles=np.array([[alpha, beta, gamma]]))
        if self._velocities:
            data["velocities"] = state.getVelocities(asNumpy=True).value_in_unit(u.nanometer / u.picosecond)[None]
        self._file.write(state.getPositions(asNumpy=True).value_in_unit(u.nanometer)[None], **data)
        self._file.flush()
        self.frames += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def open_trajectory(config: RunConfig, topology: app.Topology, append: bool):
    """The writer for ``config.output.trajectory`` (.h5: HDF5, else DCD), appending when ``append``."""
    path = config.output.trajectory_path
    if path.suffix.lower() == ".h5":
        return HDF5Writer(path, topology, append, velocities=config.output.velocities)
    return DCDWriter(path, topology, config.md.timestep_fs * 1e-3, config.md.report_interval, append)
