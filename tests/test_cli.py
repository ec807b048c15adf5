"""The ``mlmm`` command line: help, info, demo, export and its error handling."""

from __future__ import annotations

import subprocess
import sys

import mdtraj
import openmm
import pytest
import torch

import mlmm
from conftest import SYSTEM_DIR
from mlmm.cli import main

MODEL = SYSTEM_DIR / "ff-potential.pt"


def test_help_runs_as_a_module():
    done = subprocess.run([sys.executable, "-m", "mlmm.cli", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0
    for command in ("demo", "run", "export", "info"):
        assert command in done.stdout


def test_info_prints_elements_and_verified_hash(capsys):
    assert main(["info", str(MODEL)]) == 0
    out = capsys.readouterr().out
    assert "alanine-dipeptide-ff-qeq" in out
    assert "H C N O" in out
    assert "(verified)" in out and len(out.split("content hash")[1].split()[0]) == 64


def test_info_prints_the_architecture_of_a_network(tmp_path, capsys):
    from mlmm.potentials import SchNet
    path = mlmm.save_potential(SchNet(["H", "O"], n_members=3), tmp_path / "schnet.pt")
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "family schnet, n_members 3, cutoff 0.5" in out and "elements          H O" in out


def test_info_on_a_non_model_file_exits_1_without_traceback(tmp_path):
    bogus = tmp_path / "notes.pt"
    bogus.write_text("not a model")
    done = subprocess.run([sys.executable, "-m", "mlmm.cli", "info", str(bogus)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1
    assert done.stderr.startswith("mlmm: error: ") and "not an mlmm model" in done.stderr
    assert "Traceback" not in done.stderr


def test_demo_writes_a_readable_trajectory(tmp_path, capsys):
    output = tmp_path / "demo"
    assert main(["demo", "--steps", "200", "--output", str(output)]) == 0
    out = capsys.readouterr().out
    assert "ns/day" in out and "mlmm electrostatic" in out
    assert "ML-MM induced (polarization of the ML region)" in out and "MM molecules polarizing" in out
    trajectory = mdtraj.load(str(output / "trajectory.dcd"), top=str(output / "topology.pdb"))
    assert trajectory.n_frames == 2 and trajectory.n_atoms == 2629  # formic acid dimer in 873 TIP3P waters
    assert str(output / "trajectory.dcd") in out


def test_run_with_a_bad_config_exits_1(tmp_path, capsys):
    config = tmp_path / "bad.toml"
    text = (SYSTEM_DIR / "demo.toml").read_text().replace("steps = 2000", "steps = -1")
    for name in ("alanine-dipeptide-tip3p.pdb", "ff-potential.pt"):
        text = text.replace(f'"{name}"', f'"{SYSTEM_DIR / name}"')
    config.write_text(text)
    assert main(["run", str(config)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("mlmm: error: ") and "[md] steps" in err


def test_export_writes_torchscript_and_system_xml(tmp_path, capsys):
    output, xml = tmp_path / "force.pt", tmp_path / "mm.xml"
    assert main(["export", "--pdb", str(SYSTEM_DIR / "alanine-dipeptide-tip3p.pdb"), "--model", str(MODEL),
                 "--ml-atoms", "resname ACE or resname ALA or resname NME", "--nonbonded-method", "PME",
                 "--cutoff-nm", "0.9", "--output", str(output), "--system-xml", str(xml)]) == 0
    assert "setUsesPeriodicBoundaryConditions(True)" in capsys.readouterr().out
    module = torch.jit.load(str(output))
    assert isinstance(module, torch.jit.ScriptModule)
    assert openmm.XmlSerializer.deserialize(xml.read_text()).getNumParticles() == 2602


def test_export_with_a_bad_selection_exits_1(tmp_path, capsys):
    assert main(["export", "--pdb", str(SYSTEM_DIR / "alanine-dipeptide.pdb"), "--model", str(MODEL),
                 "--ml-atoms", "resname XYZ", "--output", str(tmp_path / "x.pt")]) == 1
    assert "resname XYZ" in capsys.readouterr().err


def test_label_train_and_evaluate_from_the_command_line(tmp_path, capsys):
    import numpy as np
    from mlmm.data.dataset import Dataset, load_dataset

    rng = np.random.default_rng(0)
    water = np.array([[0.0, 0.0, 0.0], [0.0956, 0.0050, 0.0], [-0.0240, 0.0926, 0.0]])
    Dataset(species=[8, 1, 1], positions=water + rng.normal(0, 0.003, (24, 3, 3))).save(tmp_path / "frames.h5")
    assert main(["label", str(tmp_path / "frames.h5"), str(tmp_path / "xtb.h5"), "--workers", "0", "--quiet"]) == 0
    assert "24 of 24 frames labelled, 0 failed" in capsys.readouterr().out
    assert load_dataset(tmp_path / "xtb.h5").provenance["level_of_theory"] == "GFN2-xTB"
    (tmp_path / "train.toml").write_text(
        '[data]\ndatasets = ["xtb.h5"]\nsplit = [0.5, 0.25, 0.25]\n'
        '[model]\nelements = ["H", "O"]\noptions = { n_features = 8, n_basis = 8 }\n'
        '[training]\nepochs = 2\nthreads = 1\n[output]\ndirectory = "run"\n')
    assert main(["train", str(tmp_path / "train.toml"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "test" in out and "energy MAE" in out and "model written to" in out
    assert main(["evaluate", str(tmp_path / "run" / "model.pt"), str(tmp_path / "xtb.h5")]) == 0
    assert "n_frames 24 energy_mae" in capsys.readouterr().out
    assert main(["train", str(tmp_path / "missing.toml")]) == 1


def test_bench_passes_its_options_to_the_benchmark_script(monkeypatch):
    import subprocess

    calls = []
    monkeypatch.setattr(subprocess, "run", lambda command: calls.append(command) or subprocess.CompletedProcess(
        command, 0))
    assert main(["bench", "--mm-atoms", "3000", "--ml-waters", "1"]) == 0
    assert calls[0][1].endswith("benchmarks/bench_scaling.py") and calls[0][2:] == ["--mm-atoms", "3000",
                                                                                    "--ml-waters", "1"]
    with pytest.raises(SystemExit):
        main(["info", "model.pt", "--mm-atoms", "3000"])
