"""GFN2-xTB cluster data for the buffer embedding of Fe3+ in TIP3P: E(Fe + buffer) - E(buffer).

The buffer holds the first and the second hydration shell at full weight (water oxygens within
BUFFER_SWITCH_DISTANCE = 0.47 nm of the ion) and fades out across the third (0.47-0.57 nm).
Geometries: MM MD of fe-tip3p.pdb (build.py; Langevin 1/ps, 2 fs, rigid TIP3P, PME 0.9 nm),
a snapshot every 0.2 ps after 5 ps of equilibration, from these runs of the octahedral sampling
model of build.py (bonded first-shell waters, the ion's Lennard-Jones sigma, a wall for every
other oxygen):
  - "octahedral-300K" (250 snapshots) and "octahedral-450K" (100): sigma 0.30 nm (first shell
    near the GFN2-xTB Fe-O of 0.22-0.23 nm), wall at 0.38 nm (second shell at 0.37-0.45 nm,
    where GFN2-xTB keeps it);
  - "octahedral-short-300K" and "octahedral-long-300K" (75 each): sigma 0.28 and 0.32 nm, for
    compressed and stretched first shells;
  - "octahedral-close-300K" (100): wall at 0.34 nm, second-shell waters pressed towards the
    first shell, the region between the octahedral minimum and the collapse of GFN2-xTB's
    cluster to nine first-shell waters;
  - "li-merz-300K" (50): the force field alone, which crowds 8 waters into the first shell;
  - "seven-", "eight-" and "nine-coordinate-300K" (50, 100, 100): 7, 8 or 9 bonded waters, the
    crowded first shells GFN2-xTB's own clusters fall into (an 18-water cluster optimised from
    fe-tip3p.pdb ends with 8 first-shell waters, harmonic.py), so that the network has seen where
    the reference leads.
The cluster of every even snapshot is every water whose oxygen lies within BUFFER_CUTOFF of the
ion (every water with a non-zero buffer weight), that of every odd snapshot the waters within
BUFFER_SWITCH_DISTANCE (those at full weight): at run time a water in the switching shell is an
interpolation between the two. Labels: GFN2-xTB of Fe + buffer (charge +3, sextet: high-spin
d5) minus the buffer alone (neutral singlet), both in vacuum
(mlmm.data.calculators.BufferDifference): energy, forces on Fe and on the buffer atoms. Joined
with frames of the bare ion (charge +3, sextet) with an empty buffer. Writes
data/fe-buffer-gfn2.h5; run from the repository root (resumes an interrupted labelling):
    .venv/bin/python systems/fe-hexaaqua/make_dataset.py"""

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
from build import PDB, iron_and_oxygens, mm_system, shell_sampler, simulation  # noqa: E402  (this folder)

BUFFER_SWITCH_DISTANCE, BUFFER_CUTOFF = 0.47, 0.57  # nm, water oxygen to the ion
CHARGE, MULTIPLICITY = 3, 6
TIP3P_SPECIES, TIP3P_CHARGES = [8, 1, 1], [-0.834, 0.417, 0.417]
RUNS = [("octahedral-300K", 0.30, 0.38, 6, 300.0, 250, 1), ("octahedral-450K", 0.30, 0.38, 6, 450.0, 100, 2),
        ("octahedral-short-300K", 0.28, 0.38, 6, 300.0, 75, 4), ("octahedral-long-300K", 0.32, 0.38, 6, 300.0, 75, 5),
        ("octahedral-close-300K", 0.30, 0.34, 6, 300.0, 100, 6), ("li-merz-300K", None, None, None, 300.0, 50, 3),
        ("seven-coordinate-300K", 0.30, 0.38, 7, 300.0, 50, 7), ("eight-coordinate-300K", 0.30, 0.38, 8, 300.0, 100, 8),
        ("nine-coordinate-300K", 0.30, 0.38, 9, 300.0, 100, 9)]
# source, the sampler's ion sigma (nm), wall distance (nm) and bonded first-shell waters (None: the force
# field alone), T (K), snapshots, seed
SNAPSHOT_RADIUS = 0.7  # nm, waters kept around the ion before the clusters are cut
EQUILIBRATION, INTERVAL = 2500, 100  # steps of 2 fs
N_BARE_ION = 5


def snapshot_frames(sigma, wall_distance, first_shell, temperature: float, n_snapshots: int, seed: int) -> Dataset:
    """Solvent snapshots around the ion from one MM run (waters within SNAPSHOT_RADIUS, TIP3P charges)."""
    pdb = app.PDBFile(str(PDB))
    positions = np.array(pdb.getPositions(asNumpy=True).value_in_unit(pdb.positions.unit))
    system = (mm_system(pdb.topology) if sigma is None
              else shell_sampler(pdb.topology, positions, sigma, wall_distance, first_shell))
    sim = simulation(pdb.topology, system, pdb.positions, temperature, seed)
    sim.step(EQUILIBRATION)
    iron, _ = iron_and_oxygens(pdb.topology)
    return ion_frames(solvent_snapshots(sim, [iron], SNAPSHOT_RADIUS, n_snapshots, INTERVAL))


def ion_frames(shots: dict) -> Dataset:
    """Unlabelled frames (charge +3, sextet) from :func:`mlmm.data.snapshots.solvent_snapshots` output."""
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
    for source, sigma, wall_distance, first_shell, temperature, n_snapshots, seed in RUNS:
        frames = snapshot_frames(sigma, wall_distance, first_shell, temperature, n_snapshots, seed)
        for name, cutoff, chosen in ((source, BUFFER_CUTOFF, np.arange(0, n_snapshots, 2)),
                                     (f"{source}-full-weight", BUFFER_SWITCH_DISTANCE, np.arange(1, n_snapshots, 2))):
            clusters = buffer_clusters(frames.subset(chosen), cutoff, TIP3P_SPECIES, TIP3P_CHARGES, name, {})
            clusters.provenance = provenance(name, temperature, cutoff, clusters)
            parts.append(label(clusters, HERE / "data" / f"fe-buffer-{name}.h5", BufferDifference({"program": "xtb"}),
                               n_workers=2))
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
