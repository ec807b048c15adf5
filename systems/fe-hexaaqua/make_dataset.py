"""GFN2-xTB cluster data for the buffer embedding of Fe3+ in TIP3P: E(Fe + buffer) - E(buffer).

Geometries: MM MD of fe-tip3p.pdb (build.py; Langevin 1/ps, 2 fs, rigid TIP3P, PME 0.9 nm),
a snapshot every 0.2 ps after 5 ps of equilibration, from three runs:
  - "octahedral-300K" (350 snapshots) and "octahedral-450K" (150): the octahedral sampling model
    of build.py (the ion's sigma 0.30 nm, which puts the first shell near the GFN2-xTB gas-phase
    optimum Fe-O 0.231 nm; six bonded first-shell waters; a wall at 0.32 nm for every other
    oxygen, so second-shell waters reach into the buffer's switching shell);
    "octahedral-short-300K" and "octahedral-long-300K" (100 each): sigma 0.28 and 0.32 nm, for
    compressed and stretched first shells;
  - "li-merz-300K" (100): the force field alone, which crowds 8 waters into the first shell, so
    the network also sees over-coordinated clusters and their energetic cost.
The cluster of every even snapshot is every water whose oxygen lies within BUFFER_CUTOFF of the
ion, at full weight (the waters the buffer embedding gives a non-zero weight); that of every odd
snapshot the first shell alone (oxygen within FIRST_SHELL_CUTOFF), the buffer the scheme sees
when the second shell stays outside (the sampler's force field pulls second-shell waters into
the switching shell, which the ML/MM dynamics need not do). Labels: GFN2-xTB of
Fe + buffer (charge +3, sextet: high-spin d5) minus the buffer alone (neutral singlet), both in
vacuum (mlmm.data.calculators.BufferDifference): energy, forces on Fe and on the buffer atoms.
Joined with frames of the bare ion (charge +3, sextet) with an empty buffer. Writes
data/fe-buffer-gfn2.h5; run from the repository root (resumes an interrupted labelling):
    .venv/bin/python systems/fe-hexaaqua/make_dataset.py
"""

import sys
from pathlib import Path

import numpy as np
import openmm.app as app

from mlmm.data.calculators import BufferDifference, XTBCalculator
from mlmm.data.dataset import Dataset, concatenate
from mlmm.data.labelling import label
from mlmm.data.snapshots import buffer_clusters, empty_buffer_frames, solvent_snapshots

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from build import PDB, iron_and_oxygens, mm_system, octahedral_sampler, simulation  # noqa: E402  (this folder)

BUFFER_SWITCH_DISTANCE, BUFFER_CUTOFF = 0.30, 0.35  # nm, water oxygen to the ion
FIRST_SHELL_CUTOFF = 0.29  # nm: every other snapshot's cluster is the first shell alone
CHARGE, MULTIPLICITY = 3, 6
TIP3P_SPECIES, TIP3P_CHARGES = [8, 1, 1], [-0.834, 0.417, 0.417]
RUNS = [("octahedral-300K", 0.30, 300.0, 350, 1), ("octahedral-450K", 0.30, 450.0, 150, 2),
        ("octahedral-short-300K", 0.28, 300.0, 100, 4), ("octahedral-long-300K", 0.32, 300.0, 100, 5),
        ("li-merz-300K", None, 300.0, 100, 3)]  # source, the ion's sigma in the sampler (nm), T (K), snapshots, seed
EQUILIBRATION, INTERVAL = 2500, 100  # steps of 2 fs
N_BARE_ION = 5


def snapshot_frames(sigma, temperature: float, n_snapshots: int, seed: int) -> Dataset:
    """Solvent snapshots around the ion from one MM run (waters within 0.6 nm, full TIP3P charges)."""
    pdb = app.PDBFile(str(PDB))
    positions = np.array(pdb.getPositions(asNumpy=True).value_in_unit(pdb.positions.unit))
    system = mm_system(pdb.topology) if sigma is None else octahedral_sampler(pdb.topology, positions, sigma)
    sim = simulation(pdb.topology, system, pdb.positions, temperature, seed)
    sim.step(EQUILIBRATION)
    iron, _ = iron_and_oxygens(pdb.topology)
    shots = solvent_snapshots(sim, [iron], 0.6, n_snapshots, INTERVAL)
    return Dataset(species=shots["species"], positions=shots["positions"], mm_positions=shots["mm_positions"],
                   mm_charges=shots["mm_charges"], mm_mask=shots["mm_mask"], total_charge=CHARGE,
                   multiplicity=MULTIPLICITY)


def provenance(source: str, temperature: float, cutoff: float, clusters_of: Dataset) -> dict:
    waters = clusters_of.mm_mask.sum(1) // 3
    return {"description": f"Fe3+ with the TIP3P waters whose oxygen lies within {cutoff} nm of the ion; "
                           "E(Fe + buffer) - E(buffer) in vacuum, charge +3, sextet",
            "sampling": f"{source}: MM MD of fe-tip3p.pdb (systems/fe-hexaaqua/build.py), snapshot every "
                        f"{INTERVAL * 0.002:.1f} ps", "temperature_K": temperature,
            "buffer_cutoff_nm": BUFFER_CUTOFF, "buffer_switch_distance_nm": BUFFER_SWITCH_DISTANCE,
            "limits": f"{waters.min()}-{waters.max()} buffer waters per frame, rigid TIP3P geometries; vacuum"}


def main():
    parts = []
    for source, sigma, temperature, n_snapshots, seed in RUNS:
        frames = snapshot_frames(sigma, temperature, n_snapshots, seed)
        for name, cutoff, chosen in ((source, BUFFER_CUTOFF, np.arange(0, n_snapshots, 2)),
                                     (f"{source}-first-shell", FIRST_SHELL_CUTOFF, np.arange(1, n_snapshots, 2))):
            clusters = buffer_clusters(frames.subset(chosen), cutoff, TIP3P_SPECIES, TIP3P_CHARGES, name, {})
            clusters.provenance = provenance(name, temperature, cutoff, clusters)
            parts.append(label(clusters, HERE / "data" / f"fe-buffer-{name}.h5", BufferDifference({"program": "xtb"}),
                               n_workers=1))
            waters = clusters.mm_mask.sum(1) // 3
            print(f"{name}: {clusters.n_frames} frames, buffer waters {np.bincount(waters)} (count per size)")
    ion = Dataset(species=np.array([26]), positions=np.zeros((N_BARE_ION, 1, 3)),
                  frame_source=["bare-ion"] * N_BARE_ION,
                  total_charge=CHARGE, multiplicity=MULTIPLICITY,
                  provenance={"description": "the bare Fe3+ ion (sextet) in vacuum", "temperature_K": 0.0})
    ion = label(ion, HERE / "data" / "fe-bare-ion.h5", XTBCalculator(), n_workers=1)
    joined = concatenate(parts + [empty_buffer_frames(ion, parts[0].mm_positions.shape[1], "bare-ion")])
    joined.save(HERE / "data" / "fe-buffer-gfn2.h5")
    labelled = joined.labelled()
    binding = labelled.energies[labelled.mm_mask.any(1)] - ion.energies[0]
    print(f"{labelled.n_frames} of {joined.n_frames} frames labelled; E(Fe+B) - E(B) - E(Fe) = "
          f"{binding.mean():.1f} +- {binding.std():.1f} kJ/mol")


if __name__ == "__main__":
    main()
