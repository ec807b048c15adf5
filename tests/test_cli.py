"""The ``mlmm`` command line: help, info, demo, export and its error handling."""

from __future__ import annotations

import subprocess
import sys

import mdtraj
import openmm
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
    assert "ns/day" in out and "mlmm mechanical" in out
    trajectory = mdtraj.load(str(output / "trajectory.dcd"), top=str(output / "topology.pdb"))
    assert trajectory.n_frames == 2 and trajectory.n_atoms == 2602
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
