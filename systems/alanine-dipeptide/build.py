"""Build alanine dipeptide (ACE-ALA-NME), in vacuum and in a 3 nm cubic TIP3P box, with amber14.

Heavy atoms are placed from ideal internal coordinates (phi = -60, psi = 140 degrees),
hydrogens by OpenMM's Modeller, the solute is minimised in vacuum and solvated.
Run: .venv/bin/python systems/alanine-dipeptide/build.py
"""

from pathlib import Path

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as u

HERE = Path(__file__).parent


def place(a, b, c, bond, angle, dihedral):
    """NeRF: position of d with |cd| = bond (A), angle bcd and dihedral abcd (degrees)."""
    angle, dihedral = np.radians(angle), np.radians(dihedral)
    bc = (c - b) / np.linalg.norm(c - b)
    n = np.cross(b - a, bc)
    n /= np.linalg.norm(n)
    m = np.cross(n, bc)
    d2 = bond * np.array([-np.cos(angle), np.sin(angle) * np.cos(dihedral), np.sin(angle) * np.sin(dihedral)])
    return c + d2[0] * bc + d2[1] * m + d2[2] * n


def heavy_atoms():
    ch3 = np.array([0.0, 0.0, 0.0])
    c0 = np.array([1.52, 0.0, 0.0])
    n1 = place(np.array([0.0, 1.0, 0.0]), ch3, c0, 1.33, 116.0, 180.0)
    ca = place(ch3, c0, n1, 1.46, 122.0, 180.0)
    c1 = place(c0, n1, ca, 1.52, 111.0, -60.0)
    n2 = place(n1, ca, c1, 1.33, 116.0, 140.0)
    ch3b = place(ca, c1, n2, 1.46, 122.0, 180.0)
    o0 = place(ca, n1, c0, 1.23, 121.0, 0.0)
    o1 = place(n2, ca, c1, 1.23, 121.0, 180.0)
    b, c = ca - n1, c1 - ca
    cb = -0.58273431 * np.cross(b, c) + 0.56802827 * b - 0.54067466 * c + ca  # L-alanine
    return [("ACE", [("CH3", "C", ch3), ("C", "C", c0), ("O", "O", o0)]),
            ("ALA", [("N", "N", n1), ("CA", "C", ca), ("C", "C", c1), ("O", "O", o1), ("CB", "C", cb)]),
            ("NME", [("N", "N", n2), ("C", "C", ch3b)])]


def main():
    topology = app.Topology()
    chain = topology.addChain()
    positions = []
    previous = {}
    for resname, atoms in heavy_atoms():
        residue = topology.addResidue(resname, chain)
        created = {}
        for name, symbol, xyz in atoms:
            created[name] = topology.addAtom(name, app.Element.getBySymbol(symbol), residue)
            positions.append(openmm.Vec3(*xyz) * 0.1)
        if resname == "ACE":
            topology.addBond(created["CH3"], created["C"]); topology.addBond(created["C"], created["O"])
        elif resname == "ALA":
            for a, b in (("N", "CA"), ("CA", "C"), ("C", "O"), ("CA", "CB")):
                topology.addBond(created[a], created[b])
            topology.addBond(previous["C"], created["N"])
        else:
            topology.addBond(created["N"], created["C"]); topology.addBond(previous["C"], created["N"])
        previous = created
    forcefield = app.ForceField("amber14-all.xml", "amber14/tip3p.xml")
    modeller = app.Modeller(topology, positions * u.nanometer)
    modeller.addHydrogens(forcefield)
    system = forcefield.createSystem(modeller.topology, nonbondedMethod=app.NoCutoff, constraints=None)
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(modeller.positions)
    openmm.LocalEnergyMinimizer.minimize(context, 1.0)
    minimized = context.getState(getPositions=True).getPositions()
    modeller = app.Modeller(modeller.topology, minimized)
    with open(HERE / "alanine-dipeptide.pdb", "w") as handle:
        app.PDBFile.writeFile(modeller.topology, modeller.positions, handle)
    modeller.addSolvent(forcefield, model="tip3p", boxSize=openmm.Vec3(3.0, 3.0, 3.0) * u.nanometer)
    with open(HERE / "alanine-dipeptide-tip3p.pdb", "w") as handle:
        app.PDBFile.writeFile(modeller.topology, modeller.positions, handle)
    print(f"wrote {modeller.topology.getNumAtoms()} atoms "
          f"({modeller.topology.getNumResidues() - 3} waters)")


if __name__ == "__main__":
    main()
