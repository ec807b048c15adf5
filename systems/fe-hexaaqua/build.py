"""Fe3+ in TIP3P water: the solvated system, its force field and the MM sampling model.

Force field: OpenMM's amber14/tip3p.xml, which carries the Li/Merz 12-6 parameters of Fe3+ for
TIP3P (charge +3, sigma 0.257 nm, epsilon 0.0999 kJ/mol; residue template "FE"), rigid TIP3P,
PME 0.9 nm. No counter-ions: PME's neutralizing background takes the net charge of +3.

With these parameters alone the ion binds 7-8 waters within 0.3 nm (CN about 8 in a 10 ps test
run at 300 K), not the octahedral Fe(H2O)6 3+ of experiment. The sampling model used to make
training geometries therefore changes the ion's Lennard-Jones sigma (by default 0.30 nm, which
puts the first shell at Fe-O about 0.23 nm, near the 0.231 nm of the GFN2-xTB minimum of the
gas-phase cluster, harmonic.py), binds the six nearest waters with Fe-O harmonic bonds (0.23 nm,
30000 kJ/mol/nm^2) and adds a wall (5e4 kJ/mol/nm^2 inside 0.38 nm) that keeps every other
oxygen out of the first shell. It is a sampler only, never part of the ML/MM system.

The wall sits where GFN2-xTB keeps the second shell: optimising a vacuum cluster of Fe3+ with
its six first-shell waters and 15 more at 0.40-0.44 nm keeps the octahedron (Fe-O 0.221-0.229
nm, second shell 0.40-0.43 nm), while the same cluster with three waters at 0.31 nm (where a
wall at 0.32 nm had put them) collapses to nine first-shell waters at 0.234-0.253 nm. The
octahedral ion is a local minimum of the reference, the 9-coordinate cluster a deeper one.

Writes fe-tip3p.pdb (Fe + 495 waters, 2.5 nm box, 20 ps of the octahedral sampling model at 300 K).
Run from the repository root:
    .venv/bin/python systems/fe-hexaaqua/build.py
"""

from pathlib import Path

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as u

HERE = Path(__file__).parent
PDB = HERE / "fe-tip3p.pdb"
BOX_NM = 2.5
SEED = 11
FIRST_SHELL = 6
#: Fe-O bond length (nm) of the sampler per number of bonded waters: near the first shells of
#: GFN2-xTB water clusters (6: 0.231 nm; 8: 0.232-0.242 nm; 9: 0.234-0.253 nm)
BOND_LENGTHS = {6: 0.23, 7: 0.235, 8: 0.24, 9: 0.245}
BOND_K = 3.0e4  # kJ/mol/nm^2
SAMPLER_SIGMA = 0.30  # nm, the ion's Lennard-Jones sigma in the sampler
WALL_DISTANCE, WALL_K = 0.38, 5.0e4  # nm, kJ/mol/nm^2
FIRST_SHELL_NM = 0.30  # Fe-O distance counted as first shell (the minimum between the shells)


def force_field() -> app.ForceField:
    return app.ForceField("amber14/tip3p.xml")


def mm_system(topology: app.Topology) -> openmm.System:
    """The force-field system: Li/Merz Fe3+, rigid TIP3P, PME 0.9 nm."""
    iron = next(r for r in topology.residues() if r.name == "FE")
    return force_field().createSystem(topology, nonbondedMethod=app.PME, nonbondedCutoff=0.9 * u.nanometer,
                                      constraints=app.HBonds, residueTemplates={iron: "FE"})


def iron_and_oxygens(topology: app.Topology):
    """Index of the Fe atom and of every water oxygen."""
    iron = next(a.index for a in topology.atoms() if a.element is app.element.iron)
    return iron, [a.index for a in topology.atoms() if a.element is app.element.oxygen]


def oxygen_distances(positions: np.ndarray, box_nm: float, iron: int, oxygens) -> np.ndarray:
    """Minimum-image distances (nm, cubic box of edge ``box_nm``) from the Fe atom to each oxygen.

    ``positions`` [..., atoms, 3]: one frame or a trajectory of frames.
    """
    delta = positions[..., oxygens, :] - positions[..., iron:iron + 1, :]
    delta -= box_nm * np.round(delta / box_nm)
    return np.linalg.norm(delta, axis=-1)


def nearest_oxygens(positions: np.ndarray, box_nm: float, iron: int, oxygens) -> np.ndarray:
    """Oxygen indices sorted by their minimum-image distance (cubic box) to the Fe atom."""
    return np.asarray(oxygens)[np.argsort(oxygen_distances(positions, box_nm, iron, oxygens))]


def shell_sampler(topology: app.Topology, positions: np.ndarray, sigma: float = SAMPLER_SIGMA,
                  wall_distance: float = WALL_DISTANCE, first_shell: int = FIRST_SHELL) -> openmm.System:
    """mm_system with the ion's Lennard-Jones ``sigma`` (nm), bonds from Fe to the ``first_shell``
    nearest oxygens (6-9; BOND_LENGTHS) and a wall at ``wall_distance`` (nm) for all other oxygens."""
    system = mm_system(topology)
    iron, oxygens = iron_and_oxygens(topology)
    nonbonded = next(f for f in system.getForces() if isinstance(f, openmm.NonbondedForce))
    charge, _, epsilon = nonbonded.getParticleParameters(iron)
    nonbonded.setParticleParameters(iron, charge, sigma, epsilon)
    order = nearest_oxygens(positions, BOX_NM, iron, oxygens)
    bonds = openmm.HarmonicBondForce()
    for oxygen in order[:first_shell]:
        bonds.addBond(iron, int(oxygen), BOND_LENGTHS[first_shell], BOND_K)
    bonds.setUsesPeriodicBoundaryConditions(True)
    wall = openmm.CustomBondForce("k_wall * step(r_wall - r) * (r_wall - r)^2")
    wall.addGlobalParameter("k_wall", WALL_K)
    wall.addGlobalParameter("r_wall", wall_distance)
    for oxygen in order[first_shell:]:
        wall.addBond(iron, int(oxygen))
    wall.setUsesPeriodicBoundaryConditions(True)
    system.addForce(bonds)
    system.addForce(wall)
    return system


def simulation(topology, system, positions, temperature: float, seed: int) -> app.Simulation:
    """Langevin (1/ps, 2 fs) simulation on the CPU, minimised, velocities drawn at ``temperature`` (K)."""
    integrator = openmm.LangevinMiddleIntegrator(temperature * u.kelvin, 1 / u.picosecond, 0.002 * u.picosecond)
    integrator.setRandomNumberSeed(seed)
    sim = app.Simulation(topology, system, integrator, openmm.Platform.getPlatformByName("CPU"), {"Threads": "1"})
    sim.context.setPositions(positions)
    sim.minimizeEnergy(maxIterations=500)
    sim.context.setVelocitiesToTemperature(temperature * u.kelvin, seed)
    return sim


def main():
    topology = app.Topology()
    residue = topology.addResidue("FE", topology.addChain())
    topology.addAtom("FE", app.element.iron, residue)
    modeller = app.Modeller(topology, [openmm.Vec3(*[BOX_NM / 2] * 3)] * u.nanometer)
    modeller.addSolvent(force_field(), model="tip3p", boxSize=openmm.Vec3(*[BOX_NM] * 3) * u.nanometer,
                        neutralize=False, residueTemplates={residue: "FE"})
    positions = modeller.getPositions().value_in_unit(u.nanometer)
    sim = simulation(modeller.topology, shell_sampler(modeller.topology, np.array(positions)),
                     positions, 300.0, SEED)
    sim.step(10000)
    state = sim.context.getState(getPositions=True, enforcePeriodicBox=True)
    with open(PDB, "w") as handle:
        app.PDBFile.writeFile(modeller.topology, state.getPositions(), handle)
    x = state.getPositions(asNumpy=True).value_in_unit(u.nanometer)
    iron, oxygens = iron_and_oxygens(modeller.topology)
    distances = np.sort(oxygen_distances(x, BOX_NM, iron, oxygens))[:8]
    print(f"{modeller.topology.getNumAtoms()} atoms; Fe-O of the 8 nearest oxygens: {np.round(distances, 3)} nm")


if __name__ == "__main__":
    main()
