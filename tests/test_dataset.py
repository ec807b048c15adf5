"""The dataset schema: HDF5 round trip with units, validation errors, extxyz exchange, labelling."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from mlmm.data.dataset import FAILED, LABELLED, PENDING, Dataset, DatasetError, concatenate, load_dataset
from mlmm.data.extxyz import read_extxyz, write_extxyz
from mlmm.data.labelling import label


def embedding_dataset(n_frames: int = 4, seed: int = 0) -> Dataset:
    """Water with a variable MM environment (2 to 5 point charges per frame) and all labels."""
    rng = np.random.default_rng(seed)
    counts = np.array([5, 3, 4, 2])[:n_frames]
    return Dataset(species=[8, 1, 1], positions=rng.normal(0, 0.1, (n_frames, 3, 3)),
                   energies=rng.normal(-13000, 5, n_frames), forces=rng.normal(0, 100, (n_frames, 3, 3)),
                   charges=rng.normal(0, 0.3, (n_frames, 3)), dipoles=rng.normal(0, 0.02, (n_frames, 3)),
                   mm_positions=rng.normal(0, 0.5, (n_frames, 5, 3)), mm_charges=rng.normal(0, 0.5, (n_frames, 5)),
                   mm_forces=rng.normal(0, 10, (n_frames, 5, 3)),
                   mm_mask=np.arange(5)[None, :] < counts[:, None], frame_source=["md"] * n_frames,
                   provenance={"level_of_theory": "GFN2-xTB", "temperature_K": 300.0, "seed": seed})


def test_hdf5_round_trip_keeps_every_field_units_and_provenance(tmp_path):
    data = embedding_dataset()
    data.save(tmp_path / "d.h5")
    back = load_dataset(tmp_path / "d.h5")
    for name in ("species", "positions", "energies", "forces", "charges", "dipoles", "mm_positions",
                 "mm_charges", "mm_forces", "mm_mask"):
        np.testing.assert_array_equal(getattr(back, name), getattr(data, name), err_msg=name)
    assert list(back.frame_source) == ["md"] * 4
    assert back.provenance == data.provenance
    with h5py.File(tmp_path / "d.h5") as f:
        assert f["forces"].attrs["units"] == "kJ/mol/nm" and f["dipoles"].attrs["units"] == "e*nm"


@pytest.mark.parametrize("damage, message", [
    (lambda f: f["energies"].attrs.__delitem__("units"), "field 'energies' has no 'units'"),
    (lambda f: f["positions"].attrs.__setitem__("units", "angstrom"), "'positions' is in 'angstrom'"),
    (lambda f: f["forces"].__setitem__((2, 1, 0), np.nan), "frame 2: field 'forces' holds NaN"),
])
def test_load_names_the_file_frame_and_field_of_a_problem(tmp_path, damage, message):
    path = tmp_path / "d.h5"
    embedding_dataset().save(path)
    with h5py.File(path, "r+") as f:
        damage(f)
    with pytest.raises(DatasetError, match=message) as error:
        load_dataset(path)
    assert str(path) in str(error.value)


def test_shape_mismatch_is_an_error():
    data = embedding_dataset()
    with pytest.raises(DatasetError, match=r"field 'charges' has shape \(4, 2\), expected \(4, 3\)"):
        Dataset(species=data.species, positions=data.positions, charges=data.charges[:, :2])


def test_nan_labels_are_allowed_only_in_frames_that_are_not_labelled():
    data = embedding_dataset()
    data.energies[1] = np.nan
    data.status = np.array([LABELLED, FAILED, LABELLED, PENDING])
    data.validate()
    assert data.labelled().n_frames == 2
    data.status[1] = LABELLED
    with pytest.raises(DatasetError, match="frame 1: field 'energies'"):
        data.validate()


def test_concatenate_pads_environments_and_checks_the_region():
    a, b = embedding_dataset(), embedding_dataset(seed=1).subset([3])
    b.mm_positions, b.mm_charges, b.mm_forces, b.mm_mask = (b.mm_positions[:, :2], b.mm_charges[:, :2],
                                                            b.mm_forces[:, :2], b.mm_mask[:, :2])
    joined = concatenate([a, b])
    assert joined.n_frames == 5 and joined.mm_positions.shape == (5, 5, 3)
    assert joined.mm_mask[4].sum() == 2 and not joined.mm_mask[4, 2:].any()
    other = Dataset(species=[8, 1, 1, 1], positions=np.zeros((1, 4, 3)))
    with pytest.raises(ValueError, match="different ML region"):
        concatenate([a, other])


def test_buffer_charge_changes_survive_joining_with_lone_frames_and_a_file_round_trip(tmp_path):
    """mm_charge_changes (e, per buffer atom) and the outer potentials (kJ/mol/e): kept when buffer frames are
    joined with lone-molecule frames that carry the empty label, written with their units (dropped when the
    lone frames lack them); the charge changes are checked for NaN on real buffer atoms only."""
    from mlmm.data.snapshots import empty_buffer_frames

    rng = np.random.default_rng(2)
    buffer = Dataset(species=[8, 1, 1], positions=rng.normal(size=(2, 3, 3)), energies=[1.0, 2.0],
                     forces=np.zeros((2, 3, 3)), mm_positions=rng.normal(size=(2, 6, 3)), mm_charges=np.zeros((2, 6)),
                     mm_species=[[8, 1, 1, 8, 1, 1], [8, 1, 1, 0, 0, 0]], mm_forces=np.zeros((2, 6, 3)),
                     mm_mask=[[True] * 6, [True] * 3 + [False] * 3],
                     mm_charge_changes=[[-0.01, 0.004, 0.006, 0.002, -0.001, -0.001],
                                        [0.02, -0.01, -0.01] + [np.nan] * 3])
    lone = empty_buffer_frames(Dataset(species=[8, 1, 1], positions=np.zeros((1, 3, 3)), energies=[0.5],
                                       forces=np.zeros((1, 3, 3))), 4, "lone", charge_changes=True,
                               outer_potentials=True)
    buffer.outer_potential, buffer.mm_outer_potential = rng.normal(size=(2, 3)), rng.normal(size=(2, 6))
    joined = concatenate([buffer, lone])
    assert joined.mm_charge_changes.shape == (3, 6) and "dropped_fields" not in joined.provenance
    np.testing.assert_array_equal(joined.mm_charge_changes[2], 0.0)
    np.testing.assert_array_equal(joined.mm_outer_potential[2], 0.0)
    joined.save(tmp_path / "buffer.h5")
    back = load_dataset(tmp_path / "buffer.h5")
    np.testing.assert_allclose(back.mm_charge_changes[back.mm_mask], joined.mm_charge_changes[joined.mm_mask])
    np.testing.assert_allclose(back.outer_potential, joined.outer_potential)
    with h5py.File(tmp_path / "buffer.h5") as f:
        assert f["mm_charge_changes"].attrs["units"] == "e" and f["outer_potential"].attrs["units"] == "kJ/mol/e"
    without = concatenate([buffer, empty_buffer_frames(lone, 4, "lone", charge_changes=True)])
    assert without.outer_potential is None and "outer_potential" in without.provenance["dropped_fields"]
    with pytest.raises(DatasetError, match="frame 1: field 'mm_charge_changes' holds NaN"):
        Dataset(species=[8, 1, 1], positions=buffer.positions, mm_positions=buffer.mm_positions,
                mm_mask=np.ones((2, 6), dtype=bool), mm_charge_changes=buffer.mm_charge_changes)


def test_extxyz_round_trip_through_ase_converts_units(tmp_path):
    data = embedding_dataset()
    write_extxyz(data, tmp_path / "d.xyz")
    back = read_extxyz(tmp_path / "d.xyz")
    np.testing.assert_allclose(back.positions, data.positions, atol=1e-8)  # file precision 1e-8 Angstrom
    np.testing.assert_allclose(back.energies, data.energies, rtol=1e-12)
    np.testing.assert_allclose(back.forces, data.forces, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(back.dipoles, data.dipoles, rtol=1e-10)
    np.testing.assert_array_equal(back.mm_mask, data.mm_mask)
    real = data.mm_mask
    np.testing.assert_allclose(back.mm_charges[real], data.mm_charges[real], atol=1e-7)
    np.testing.assert_allclose(back.mm_forces[real], data.mm_forces[real], rtol=1e-5, atol=1e-4)
    # ASE's own reading of the energy is in eV: 1 eV = 96.485 kJ/mol
    import ase.io
    assert ase.io.read(tmp_path / "d.xyz", 0).get_potential_energy() == pytest.approx(data.energies[0] / 96.48533212)


class FlakyCalculator:
    """A stand-in reference (harmonic energy) that fails on chosen frames, to test labelling itself."""

    program, level_of_theory, program_version, provides_mm_forces = "test", "harmonic", "1", False

    def __init__(self, fail_x_above: float = np.inf):
        self.fail_x_above = fail_x_above

    def settings(self) -> dict:
        return {"fail_x_above": self.fail_x_above}

    def compute(self, species, positions, total_charge=0, multiplicity=1, mm_positions=None, mm_charges=None):
        if positions[0, 0] > self.fail_x_above:
            raise RuntimeError("SCF not converged")
        return {"energy": float((positions ** 2).sum()), "forces": -2 * positions, "charges": np.zeros(len(species)),
                "dipole": np.zeros(3)}


class StartupThreadsCalculator(FlakyCalculator):
    """Returns as energy the OMP_NUM_THREADS its process started with (what OpenMP reads when it loads)."""

    def compute(self, species, positions, total_charge=0, multiplicity=1, mm_positions=None, mm_charges=None):
        result = super().compute(species, positions)
        environ = Path("/proc/self/environ").read_bytes().split(b"\0")
        startup = dict(item.split(b"=", 1) for item in environ if b"=" in item)
        result["energy"] = float(startup.get(b"OMP_NUM_THREADS", b"0"))
        return result


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads a process's start-up environment from /proc")
def test_workers_start_single_threaded_and_the_environment_is_restored(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    frames = Dataset(species=[8, 1, 1], positions=np.random.default_rng(0).normal(0, 0.1, (4, 3, 3)))
    result = label(frames, tmp_path / "threads.h5", StartupThreadsCalculator(), n_workers=2, progress=False)
    np.testing.assert_array_equal(result.energies, 1.0)
    assert os.environ["OMP_NUM_THREADS"] == "7"


def test_labelling_records_failures_and_resumes_only_what_is_missing(tmp_path):
    rng = np.random.default_rng(3)
    frames = Dataset(species=[8, 1, 1], positions=rng.normal(0, 0.1, (12, 3, 3)))
    out = tmp_path / "labelled.h5"
    partial = label(frames, out, FlakyCalculator(0.05), n_workers=0, progress=False, max_frames=5)
    assert (partial.status[:5] != PENDING).all() and (partial.status[5:] == PENDING).all()
    result = label(frames, out, FlakyCalculator(0.05), n_workers=2, progress=False)
    failed = frames.positions[:, 0, 0] > 0.05
    np.testing.assert_array_equal(result.status == FAILED, failed)
    assert all("SCF not converged" in e for e in result.label_error[failed])
    done = ~failed
    np.testing.assert_allclose(result.energies[done], (frames.positions[done] ** 2).sum((1, 2)))
    assert result.labelled().n_frames == done.sum()
    with pytest.raises(ValueError, match="was labelled with"):
        label(frames, out, FlakyCalculator(0.5), n_workers=0, progress=False)
