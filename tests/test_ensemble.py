"""Replica ensembles on a Dask LocalCluster: an interrupted ensemble completes only what is missing."""

import json

import pytest
import torch

from mlmm.analysis.rate_files import finished_replicas
from mlmm.bridge.ensemble import SUMMARY_FILE, replicas, run_ensemble
from mlmm.bridge.simulation import checkpoint_step, run_simulation
from mlmm.cli import main
from mlmm.config import load_config, load_ensemble
from test_simulation import write_config

distributed = pytest.importorskip("distributed")
Client, LocalCluster = distributed.Client, distributed.LocalCluster


def strict_json_file(path):
    """The content of a JSON file that must be standard JSON (no NaN or Infinity)."""
    def refuse(constant):
        raise ValueError(f"{path} holds {constant}, which is not JSON")
    return json.loads(path.read_text(), parse_constant=refuse)


def write_ensemble(tmp_path, extra: str = "") -> "mlmm.config.EnsembleConfig":
    run = write_config(tmp_path, steps=20)  # the alanine dipeptide model alone, 22 atoms, 10 steps per frame
    path = tmp_path / "ensemble.toml"
    path.write_text(f"""
[ensemble]
run = "{run.name}"
directory = "{tmp_path / 'replicas'}"
seeds = [1, 2]
temperatures_K = [300, 350]
{extra}
[dask]
workers = 2
""")
    return path


def test_an_interrupted_ensemble_completes_only_the_missing_replicas(tmp_path, capsys):
    path = write_ensemble(tmp_path)
    ensemble = load_ensemble(path)
    members = replicas(ensemble)
    assert [m.name for m in members] == ["T300K-seed1", "T300K-seed2", "T350K-seed1", "T350K-seed2"]
    # the state an interruption leaves: one replica finished, one stopped at its first checkpoint, two not begun
    run_simulation(members[0].config, progress=False)
    run_simulation(members[3].config.with_overrides(steps=10), progress=False)
    finished = (members[0].config.output.directory / "checkpoint.json").read_bytes()

    result = run_ensemble(ensemble)  # a LocalCluster of two worker processes
    assert result.skipped == ["T300K-seed1"] and not result.failed
    assert sorted(result.ran) == ["T300K-seed2", "T350K-seed1", "T350K-seed2"]
    assert result.ran["T350K-seed2"].start_step == 10 and result.ran["T300K-seed2"].start_step == 0
    assert all(checkpoint_step(m.config) == 20 for m in members)
    assert (members[0].config.output.directory / "checkpoint.json").read_bytes() == finished
    # each replica ran its own temperature and seed: its checkpoint belongs to that configuration only
    saved = json.loads((members[2].config.output.directory / "checkpoint.json").read_text())["config"]["md"]
    assert (saved["temperature_K"], saved["seed"]) == (350.0, 1)
    summary = json.loads((tmp_path / "replicas" / SUMMARY_FILE).read_text())["replicas"]
    assert [row["state"] for row in summary] == ["finished"] * 4

    # a rerun has nothing left to do and starts no cluster
    assert main(["ensemble", str(path)]) == 0
    assert "ran 0, already finished 4, failed 0" in capsys.readouterr().out
    # a batch of other seeds in the same directory: the summary keeps the first batch's rows
    other = tmp_path / "other.toml"
    other.write_text(path.read_text().replace("seeds = [1, 2]", "seeds = [3]"))
    run_ensemble(load_ensemble(other))
    names = [row["name"] for row in json.loads((tmp_path / "replicas" / SUMMARY_FILE).read_text())["replicas"]]
    assert sorted(names) == sorted([m.name for m in members] + ["T300K-seed3", "T350K-seed3"])
    finished, left_out = finished_replicas(tmp_path / "replicas" / SUMMARY_FILE, members)
    assert sum(len(rows) for rows in finished.values()) == 4 and not left_out


def test_a_replica_folder_holding_another_run_fails_alone(tmp_path):
    ensemble = load_ensemble(write_ensemble(tmp_path, extra="steps = 10"))
    members = replicas(ensemble)
    stranger = load_config(write_config(tmp_path, steps=10, timestep_fs=0.5))
    run_simulation(stranger.with_overrides(directory=members[1].config.output.directory), progress=False)
    for member in members[2:]:
        run_simulation(member.config, progress=False)
    threads = torch.get_num_threads()
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client:  # a client of the caller's, here with its worker in this process
        result = run_ensemble(ensemble, client=client)
    torch.set_num_threads(threads)  # the in-process worker set this process's torch threads
    assert list(result.failed) == ["T300K-seed2"] and "different configuration" in result.failed["T300K-seed2"]
    assert sorted(result.ran) == ["T300K-seed1"] and sorted(result.skipped) == ["T350K-seed1", "T350K-seed2"]


def test_bad_ensembles_are_refused_by_key(tmp_path):
    for extra, named in (("seeds = [1, 1]", "seeds"), ("temperatures_K = [-3]", "temperatures_K"),
                         ("replicas = 3", "replicas")):
        path = write_ensemble(tmp_path)
        text = path.read_text().replace("seeds = [1, 2]\n", "" if extra.startswith("seeds") else "seeds = [1, 2]\n")
        text = text.replace("temperatures_K = [300, 350]\n", "" if "temperatures" in extra else
                            "temperatures_K = [300, 350]\n")
        path.write_text(text.replace("[dask]", f"{extra}\n[dask]"))
        with pytest.raises(ValueError, match=named):
            load_ensemble(path)



def test_mlmm_rate_pools_the_replicas_of_each_temperature(tmp_path, capsys):
    import mdtraj
    import numpy as np

    from mlmm.analysis.rates import transition_rate

    path = write_ensemble(tmp_path, extra="steps = 300")
    path.write_text(path.read_text().replace("[dask]", "[dask]\nworkers = 1\n").replace("workers = 2\n", ""))
    assert main(["rate", str(path), "--distance", "0,1", "--reactant=-inf:0.1", "--product=0.2:inf"]) == 1
    assert "no ensemble summary" in capsys.readouterr().err  # not run yet
    run = tmp_path / "run.toml"
    run.write_text(run.read_text().replace("report_interval = 10", "report_interval = 2"))
    ensemble = load_ensemble(path)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        threads = torch.get_num_threads()
        assert not run_ensemble(ensemble, client=client).failed
        torch.set_num_threads(threads)
    # a C-H bond of the methyl group as the "reaction": short and long with a gap between
    bounds = ["-inf:0.1085", "0.1105:inf"]
    assert main(["rate", str(path), "--distance", "0,1", f"--reactant={bounds[0]}", f"--product={bounds[1]}"]) == 0
    printed = capsys.readouterr().out
    result = strict_json_file(tmp_path / "replicas" / "rates.json")
    assert result["arrhenius"]["chi2_per_dof"] is None  # a fit through two temperatures has no degree of freedom
    assert [row["temperature_K"] for row in result["rates"]] == [300.0, 350.0]
    cvs = {}
    for row, temperature in zip(result["rates"], (300, 350)):
        cvs[temperature] = []
        for seed in (1, 2):
            folder = tmp_path / "replicas" / f"T{temperature}K-seed{seed}"
            frames = mdtraj.load(str(folder / "trajectory.dcd"), top=str(folder / "topology.pdb"))
            cvs[temperature].append(mdtraj.compute_distances(frames, [[0, 1]])[:, 0].astype(float))
        expected = transition_rate(cvs[temperature], 0.002, [(-np.inf, 0.1085), (0.1105, np.inf)])
        assert row["transitions"] == expected.transitions > 0
        assert row["rate_per_ps"] == pytest.approx(expected.rate, rel=1e-4)
        assert row["time_ps"] <= 2 * 0.3 + 1e-9  # two replicas of 300 steps of 1 fs
    # --min-residence: only visits of at least 3 frames count, fewer transitions
    assert main(["rate", str(path), "--distance", "0,1", f"--reactant={bounds[0]}", f"--product={bounds[1]}",
                 "--min-residence", "0.006", "--output", str(tmp_path / "events-0.006")]) == 0
    events = json.loads((tmp_path / "events-0.006.json").read_text())  # the prefix's dots are kept
    assert events["min_residence_ps"] == 0.006 and result["min_residence_ps"] == 0.0
    for row, temperature in zip(events["rates"], (300, 350)):
        expected = transition_rate(cvs[temperature], 0.002, [(-np.inf, 0.1085), (0.1105, np.inf)],
                                   min_residence=0.006)
        assert row["transitions"] == expected.transitions
    assert sum(row["transitions"] for row in events["rates"]) < sum(row["transitions"] for row in result["rates"])
    assert "activation_energy_kJ_mol" in result["arrhenius"] and "Arrhenius: Ea" in printed
    assert (tmp_path / "replicas" / "rates.png").stat().st_size > 10_000
    # the configuration's replicas, not the summary's: seed 1 only, and a seed never run counts as left out
    path.write_text(path.read_text().replace("seeds = [1, 2]", "seeds = [1, 3]"))
    assert main(["rate", str(path), "--distance", "0,1", f"--reactant={bounds[0]}", f"--product={bounds[1]}"]) == 0
    fewer = json.loads((tmp_path / "replicas" / "rates.json").read_text())
    for row, temperature in zip(fewer["rates"], (300, 350)):
        folder = tmp_path / "replicas" / f"T{temperature}K-seed1"
        frames = mdtraj.load(str(folder / "trajectory.dcd"), top=str(folder / "topology.pdb"))
        expected = transition_rate([mdtraj.compute_distances(frames, [[0, 1]])[:, 0].astype(float)], 0.002,
                                   [(-np.inf, 0.1085), (0.1105, np.inf)])
        assert (row["replicas"], row["left_out"], row["transitions"]) == (1, 1, expected.transitions)
        assert row["time_ps"] == pytest.approx(expected.time)
    assert main(["rate", str(path), "--distance", "0", f"--reactant={bounds[0]}", f"--product={bounds[1]}"]) == 1

    # batches: seed 2's rates with --include of seed 1's (above) are the rates of both seeds, except the
    # replica left out of the earlier batch (seed 3); a seed counted twice, other states or an output that
    # lists no seeds are refused
    earlier = tmp_path / "seed1.json"
    (tmp_path / "replicas" / "rates.json").rename(earlier)
    path.write_text(path.read_text().replace("seeds = [1, 3]", "seeds = [2]"))
    assert main(["rate", str(path), "--distance", "0,1", f"--reactant={bounds[0]}", f"--product={bounds[1]}",
                 "--include", str(earlier)]) == 0
    pooled = json.loads((tmp_path / "replicas" / "rates.json").read_text())
    for row, both in zip(pooled["rates"], result["rates"]):
        assert (row["seeds"], row["replicas"], row["left_out"]) == ([1, 2], 2, 1)
        assert row["transitions"] == both["transitions"]
        assert row["time_ps"] == pytest.approx(both["time_ps"], rel=1e-12)
        for key in ("rate_per_ps", "lower_per_ps", "upper_per_ps"):
            assert row[key] == pytest.approx(both[key], rel=1e-12)
    assert pooled["arrhenius"]["activation_energy_kJ_mol"] == pytest.approx(
        result["arrhenius"]["activation_energy_kJ_mol"], rel=1e-9)
    # --compare: seed 2's rates against seed 1's output, as if another solvent's, at every temperature
    compare = ["rate", str(path), "--distance", "0,1", f"--product={bounds[1]}", "--compare", str(earlier)]
    assert main(compare + [f"--reactant={bounds[0]}"]) == 0
    assert "300 K: k / k(seed1.json) = " in capsys.readouterr().out
    compared = json.loads((tmp_path / "replicas" / "rates.json").read_text())
    ratios = compared["compared_with"]["ratios"]
    for ratio, mine, theirs in zip(ratios, compared["rates"], json.loads(earlier.read_text())["rates"]):
        assert ratio["temperature_K"] == mine["temperature_K"] == theirs["temperature_K"]
        assert ratio["ratio"] == pytest.approx(mine["rate_per_ps"] / theirs["rate_per_ps"], rel=1e-12)
        assert ratio["lower"] < ratio["ratio"] < ratio["upper"] and 0 < ratio["p_value_equal_rates"] <= 1
    assert len(ratios) == 2
    assert main(compare + ["--reactant=-inf:0.108"]) == 1
    assert "compare only rates counted the same way" in capsys.readouterr().err
    path.write_text(path.read_text().replace("seeds = [2]", "seeds = [1, 2]"))
    options = ["rate", str(path), "--distance", "0,1", f"--product={bounds[1]}", "--include", str(earlier)]
    assert main(options + [f"--reactant={bounds[0]}"]) == 1
    assert "counts the replicas of seeds [1] at 300.0 K again" in capsys.readouterr().err
    assert main(options + ["--reactant=-inf:0.108"]) == 1
    assert "reactant_nm = '-inf:0.1085', this call '-inf:0.108'" in capsys.readouterr().err
    assert main(options + [f"--reactant={bounds[0]}", "--min-residence", "0.006"]) == 1
    assert "min_residence_ps = 0.0, this call 0.006" in capsys.readouterr().err
    legacy = json.loads(earlier.read_text())
    del legacy["min_residence_ps"]  # written before the option: counted every change, and pools as such
    for row in legacy["rates"]:
        del row["seeds"]
    earlier.write_text(json.dumps(legacy))
    path.write_text(path.read_text().replace("seeds = [1, 2]", "seeds = [2]"))
    assert main(options + [f"--reactant={bounds[0]}"]) == 1
    assert "does not list the seeds" in capsys.readouterr().err
    earlier.write_text("{not json")
    assert main(options + [f"--reactant={bounds[0]}"]) == 1
    assert f"--include {earlier}: not JSON" in capsys.readouterr().err
