"""The prepared GPU run (benchmarks/gpu/) stays in step with the code it calls.

A lent GPU machine gives a session 15 minutes, so a script that names a configuration the
benchmark no longer has, or a tree too large to travel, wastes the only chance to measure.
"""

import importlib.util
import re
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GPU = ROOT / "benchmarks" / "gpu"
MiB = 2 ** 20


def _bench_scaling():
    spec = importlib.util.spec_from_file_location("bench_scaling", ROOT / "benchmarks" / "bench_scaling.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("script", ["check.sh", "wheels.sh", "slim-tree.sh"])
def test_the_scripts_parse(script):
    result = subprocess.run(["bash", "-n", str(GPU / script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_check_runs_only_cuda_configurations_of_the_benchmark():
    text = (GPU / "check.sh").read_text()
    array = re.search(r"^configs=\((.*?)\)$", text, re.S | re.M)
    assert array, "check.sh has no configs=(...) array"
    configs = re.findall(r'"([^"]+)"', array.group(1))
    assert "pure MM" in configs and "mechanical, CUDA graphs" in configs
    unknown = set(configs) - set(_bench_scaling().PLATFORM_CONFIGS["CUDA"])
    assert not unknown, f"check.sh names configurations bench_scaling.py does not run on CUDA: {sorted(unknown)}"


def test_wheels_cover_the_cuda_extra():
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["cuda"]
    names = {re.match(r"[A-Za-z0-9_.-]+", requirement).group(0) for requirement in extra}
    text = (GPU / "wheels.sh").read_text()
    assert all(f"version {name})" in text for name in names | {"openmm", "openmmml"}), names


def test_the_slim_tree_travels_with_the_wheels():
    """What slim-tree.sh leaves tracked (all but the .h5 datasets) plus the 18 MB of wheels fits the
    device tool's 64 MiB, with 8 MiB to spare."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    files = [ROOT / name for name in listed.stdout.decode().split("\0") if name and not name.endswith(".h5")]
    size = sum(path.stat().st_size for path in files if path.is_file())
    assert size + 18e6 < 56 * MiB, f"{size / 1e6:.1f} MB tracked besides .h5 files: too large for a GPU run"
