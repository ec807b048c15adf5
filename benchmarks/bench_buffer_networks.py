"""Cost of the water buffer scheme's module with networks of different families, widths and means.

The water solute in its TIP3P box (systems/water/water-tip3p.pdb, amber14 TIP3P, buffer
0.35-0.5 nm as the networks were trained): each buffer network's embedding module alone, forward
and backward, TorchScript as TorchForce runs it, torch on one thread, ms per call (median of
``--calls`` calls), and for scale the mechanical scheme's module with the vacuum water model
(systems/water/model). The modules are timed in turn ``--repeats`` times over the same positions,
so that their ratios are measured in one run.

    .venv/bin/python benchmarks/bench_buffer_networks.py [--models model-field-energy model-field-wide]

Prints one JSON object and writes DIR/buffer-networks.json and DIR/buffer-networks.md (``--output-dir``,
default benchmarks/results).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import openmm.app as app
import openmm.unit as unit
import torch

from mlmm.bridge.mixed import plan_embedding
from mlmm.bridge.transports import inference_script
from mlmm.potentials import read_metadata
from timing import forward_backward, machine, time_calls, versions

ROOT = Path(__file__).resolve().parents[1]
WATER = ROOT / "systems" / "water"
OPTIONS = {"buffer_cutoff": 0.5, "buffer_switch_distance": 0.35}


def module_call(model: Path, scheme: str, pdb: app.PDBFile, system):
    """A forward + backward call of the ``scheme`` module of ``model`` at the PDB positions."""
    ml_atoms = [atom.index for atom in next(pdb.topology.residues()).atoms()]
    options = OPTIONS if scheme == "buffer" else {}
    module = inference_script(plan_embedding(pdb.topology, system, ml_atoms, str(model), scheme, **options).module)
    positions = torch.tensor(pdb.getPositions(asNumpy=True).value_in_unit(unit.nanometer), dtype=torch.float64)
    cell = torch.tensor(pdb.topology.getPeriodicBoxVectors().value_in_unit(unit.nanometer), dtype=torch.float64)
    return lambda: forward_backward(lambda x: module(x, cell), positions)


def network_name(path: Path) -> str:
    """The family and width of a model file's network ("physnet 64"), or of each member of a mean."""
    extra = read_metadata(path)["extra"]
    if "members" in extra:
        return "mean of " + " + ".join(f"{m['architecture']['family']} {m['architecture']['n_features']}"
                                       for m in extra["members"])
    return f"{extra['model']['family']} {extra['model']['options']['n_features']}"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["model-field-energy", "model-field-wide"],
                        help="model directories in systems/water/buffer")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output-dir", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    torch.set_num_threads(1)
    pdb = app.PDBFile(str(WATER / "water-tip3p.pdb"))
    system = app.ForceField("amber14/tip3p.xml").createSystem(pdb.topology, nonbondedMethod=app.PME,
                                                              nonbondedCutoff=0.9 * unit.nanometer)
    paths = {name: WATER / "buffer" / name / "model.pt" for name in args.models}
    calls = {name: module_call(path, "buffer", pdb, system) for name, path in paths.items()}
    calls["mechanical (vacuum model)"] = module_call(WATER / "model" / "model.pt", "mechanical", pdb, system)
    times = {name: [] for name in calls}
    for _ in range(args.repeats):
        for name, call in calls.items():
            times[name].append(time_calls(call, args.calls)["median"])
    first = args.models[0]
    result = {"machine": machine(), "versions": versions(), "atoms": pdb.topology.getNumAtoms(),
              "ms_per_call": {name: statistics.median(t) for name, t in times.items()},
              "all_medians": times,
              "networks": {name: network_name(path) for name, path in paths.items()}}
    result["ratio_to_" + first] = {name: result["ms_per_call"][name] / result["ms_per_call"][first] for name in times}
    text = json.dumps(result, indent=2)
    print(text)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "buffer-networks.json").write_text(text + "\n")
    rows = [f"| {name} | {result['networks'].get(name, '')} | {ms:.2f} | {result['ratio_to_' + first][name]:.2f} |"
            for name, ms in result["ms_per_call"].items()]
    (args.output_dir / "buffer-networks.md").write_text("\n".join([
        "# Water buffer module: cost by network", "",
        f"{result['atoms']} atoms (systems/water/water-tip3p.pdb), TorchScript forward + backward, torch on one "
        f"thread, median ms per call of {args.repeats} rounds of {args.calls} calls; {result['machine']['cpu_model']}.",
        "", f"| module | network (family, features) | ms per call | ratio to {first} |", "|---|---|---|---|", *rows,
        ""]))
