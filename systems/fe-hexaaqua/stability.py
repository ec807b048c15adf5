"""First picoseconds of the buffer-embedding MD of Fe3+ in TIP3P: where the waters go.

fe-tip3p.pdb with model/model.pt (embedding="buffer", buffer 0.47-0.57 nm), Langevin at 300 K
(1/ps, 1 fs, seed 1), 2.2 ps. Every 0.2 ps: the 14 smallest Fe-O distances (minimum image), the
number of waters with a non-zero buffer weight and the energy terms of the buffer module.
Writes stability.txt. Run from the repository root:
    .venv/bin/python systems/fe-hexaaqua/stability.py
"""

import sys
from pathlib import Path

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as u
import torch

import mlmm

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from build import BOX_NM, PDB, iron_and_oxygens, mm_system, oxygen_distances  # noqa: E402  (this folder)
from make_dataset import BUFFER_CUTOFF, BUFFER_SWITCH_DISTANCE  # noqa: E402


def main():
    torch.set_num_threads(1)
    pdb = app.PDBFile(str(PDB))
    iron, oxygens = iron_and_oxygens(pdb.topology)
    options = {"embedding": "buffer", "buffer_cutoff": BUFFER_CUTOFF, "buffer_switch_distance": BUFFER_SWITCH_DISTANCE}
    model = str(HERE / "model" / "model.pt")
    force_field = mm_system(pdb.topology)
    system = mlmm.create_mixed_system(pdb.topology, force_field, [iron], model, **options)
    module = mlmm.plan_embedding(pdb.topology, force_field, [iron], model, **options).module
    integrator = openmm.LangevinMiddleIntegrator(300 * u.kelvin, 1 / u.picosecond, 0.001 * u.picosecond)
    integrator.setRandomNumberSeed(1)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("CPU"), {"Threads": "1"})
    context.setPositions(pdb.positions)
    context.setVelocitiesToTemperature(300 * u.kelvin, 1)
    box = torch.tensor(np.diag([BOX_NM] * 3))
    lines = ["time_ps | 14 smallest Fe-O (nm) | buffer waters | network difference, buffer LJ, outer Coulomb (kJ/mol)"]
    for k in range(12):
        x = context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(u.nanometer)
        distances = np.sort(oxygen_distances(x, BOX_NM, iron, oxygens))[:14]
        report = {key: float(value.detach()) for key, value in module.report(torch.tensor(x), box).items()
                  if value.numel() == 1}
        lines.append(f"{0.2 * k:.1f} | {' '.join(f'{d:.3f}' for d in distances)} | {report['molecules']:.0f} | "
                     f"{report['network_difference_energy']:.0f}, {report['buffer_lennard_jones_energy']:.1f}, "
                     f"{report['outer_coulomb_energy']:.0f}")
        print(lines[-1], flush=True)
        integrator.step(200)
    (HERE / "stability.txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
