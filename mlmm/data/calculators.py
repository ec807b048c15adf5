"""Reference calculators: GFN2-xTB (xtb-python) and PySCF, gas phase or with MM point charges.

Every calculator returns OpenMM units; conversions from Hartree and Bohr happen here only.
``compute`` gives the energy of the QM region in the field of the point charges: QM
electrons and nuclei interacting with the charges are included, the charges' interactions
with each other are not. Calculators hold only their settings, so they pickle cheaply into
worker processes; the program objects are built inside ``compute``.
"""

from __future__ import annotations

from typing import Dict, Optional

import numpy as np

from mlmm.units import BOHR_TO_NM, HARTREE_TO_KJ_PER_MOL

FORCE_UNIT = HARTREE_TO_KJ_PER_MOL / BOHR_TO_NM  # Hartree/Bohr -> kJ/mol/nm


class CalculationFailed(RuntimeError):
    """A reference calculation did not produce a result (e.g. the SCF did not converge)."""


def _check_inputs(species, positions, total_charge, multiplicity, mm_positions, mm_charges):
    species = np.asarray(species, dtype=np.int64)
    positions = np.asarray(positions, dtype=np.float64)
    if species.ndim != 1 or positions.shape != (len(species), 3):
        raise ValueError(f"positions must be [n, 3] nm for {len(species)} atoms, got shape {positions.shape}")
    if not np.isfinite(positions).all():
        raise ValueError("positions hold NaN or infinity")
    if (mm_positions is None) != (mm_charges is None):
        raise ValueError("give both mm_positions and mm_charges, or neither")
    if mm_positions is not None:
        mm_positions = np.asarray(mm_positions, dtype=np.float64).reshape(-1, 3)
        mm_charges = np.asarray(mm_charges, dtype=np.float64).reshape(-1)
        if len(mm_positions) != len(mm_charges):
            raise ValueError(f"{len(mm_positions)} MM positions but {len(mm_charges)} MM charges")
        if not (np.isfinite(mm_positions).all() and np.isfinite(mm_charges).all()):
            raise ValueError("MM positions or charges hold NaN or infinity")
        if len(mm_charges) == 0:
            mm_positions = mm_charges = None
    electrons = int(species.sum()) - int(total_charge)
    if multiplicity < 1 or (electrons - (multiplicity - 1)) % 2:
        raise ValueError(f"multiplicity {multiplicity} is impossible with {electrons} electrons "
                         f"(total charge {total_charge}); use an {'even' if electrons % 2 else 'odd'} multiplicity")
    return species, positions, mm_positions, mm_charges


class ReferenceCalculator:
    """Base class: ``compute`` returns energy (kJ/mol), forces (kJ/mol/nm), charges (e), dipole (e nm)."""

    program = "none"
    level_of_theory = "none"
    provides_mm_forces = False

    @property
    def program_version(self) -> str:
        raise NotImplementedError

    def settings(self) -> dict:
        """JSON-serialisable constructor arguments (provenance; :func:`make_calculator` takes them back)."""
        raise NotImplementedError

    def compute(self, species, positions, total_charge: int = 0, multiplicity: int = 1,
                mm_positions=None, mm_charges=None) -> Dict[str, np.ndarray]:
        """Label one geometry.

        Parameters
        ----------
        species : int array [n]
            Atomic numbers.
        positions : float array [n, 3]
            nm.
        total_charge : int
            Charge of the QM region (e).
        multiplicity : int
            Spin multiplicity 2S + 1.
        mm_positions, mm_charges : arrays [m, 3] (nm) and [m] (e), optional
            MM point charges polarising the QM region.

        Returns
        -------
        dict
            ``energy`` (kJ/mol), ``forces`` [n, 3] (kJ/mol/nm), ``charges`` [n] (e),
            ``dipole`` [3] (e nm, about the coordinate origin) and, when MM charges were
            given and the program provides them, ``mm_forces`` [m, 3] (kJ/mol/nm).
        """
        raise NotImplementedError


class XTBCalculator(ReferenceCalculator):
    """GFN2-xTB (or GFN1-xTB) through xtb-python.

    Point charges enter through ``set_external_charges``. GFN2 damps their interaction with
    the QM charges using the chemical hardness of an element given for each; all of them
    get ``mm_element`` (default 1, hydrogen), a choice recorded in the settings.
    xtb-python exposes no gradient on the point charges, so ``mm_forces`` are not given.
    """

    program = "xtb"

    def __init__(self, method: str = "GFN2-xTB", accuracy: float = 1.0, electronic_temperature: float = 300.0,
                 max_iterations: int = 250, mm_element: int = 1):
        if method not in ("GFN2-xTB", "GFN1-xTB"):
            raise ValueError(f"method must be 'GFN2-xTB' or 'GFN1-xTB', got {method!r}")
        self.method, self.accuracy = method, float(accuracy)
        self.electronic_temperature, self.max_iterations = float(electronic_temperature), int(max_iterations)
        self.mm_element = int(mm_element)
        self.level_of_theory = method

    @property
    def program_version(self) -> str:
        from importlib.metadata import version
        return f"xtb-python {version('xtb')}"

    def settings(self) -> dict:
        return {"method": self.method, "accuracy": self.accuracy, "electronic_temperature":
                self.electronic_temperature, "max_iterations": self.max_iterations, "mm_element": self.mm_element}

    def compute(self, species, positions, total_charge=0, multiplicity=1, mm_positions=None, mm_charges=None):
        from xtb.interface import Calculator, Param, XTBException
        from xtb.libxtb import VERBOSITY_MUTED

        species, positions, mm_positions, mm_charges = _check_inputs(species, positions, total_charge,
                                                                     multiplicity, mm_positions, mm_charges)
        param = Param.GFN2xTB if self.method == "GFN2-xTB" else Param.GFN1xTB
        try:
            calc = Calculator(param, species, positions / BOHR_TO_NM, charge=float(total_charge),
                              uhf=int(multiplicity) - 1)
            calc.set_verbosity(VERBOSITY_MUTED)
            calc.set_accuracy(self.accuracy)
            calc.set_electronic_temperature(self.electronic_temperature)
            calc.set_max_iterations(self.max_iterations)
            if mm_positions is not None:
                calc.set_external_charges(np.full(len(mm_charges), self.mm_element), mm_charges,
                                          mm_positions / BOHR_TO_NM)
            result = calc.singlepoint()
        except XTBException as error:
            raise CalculationFailed(f"xtb: {error}") from None
        return {"energy": result.get_energy() * HARTREE_TO_KJ_PER_MOL,
                "forces": -result.get_gradient() * FORCE_UNIT,
                "charges": np.asarray(result.get_charges(), dtype=np.float64),
                "dipole": np.asarray(result.get_dipole()) * BOHR_TO_NM}


class PySCFCalculator(ReferenceCalculator):
    """HF, MP2 or DFT (any PySCF functional) with ``pyscf.qmmm`` point charges and forces on them."""

    program = "pyscf"
    provides_mm_forces = True

    def __init__(self, method: str = "b3lyp", basis: str = "6-31g*", conv_tol: float = 1e-9,
                 max_cycle: int = 100, threads: int = 1):
        self.method, self.basis = method.lower(), basis
        self.conv_tol, self.max_cycle, self.threads = float(conv_tol), int(max_cycle), int(threads)
        self.level_of_theory = f"{method.upper()}/{basis}"

    @property
    def program_version(self) -> str:
        import pyscf
        return f"pyscf {pyscf.__version__}"

    def settings(self) -> dict:
        return {"method": self.method, "basis": self.basis, "conv_tol": self.conv_tol, "max_cycle": self.max_cycle,
                "threads": self.threads}

    def _mean_field(self, mol):
        from pyscf import dft, scf

        open_shell = mol.spin != 0
        if self.method in ("hf", "mp2"):
            mf = scf.UHF(mol) if open_shell else scf.RHF(mol)
        else:
            mf = dft.UKS(mol) if open_shell else dft.RKS(mol)
            mf.xc = self.method
        mf.conv_tol, mf.max_cycle, mf.verbose = self.conv_tol, self.max_cycle, 0
        return mf

    def compute(self, species, positions, total_charge=0, multiplicity=1, mm_positions=None, mm_charges=None):
        from pyscf import gto, lib, qmmm

        species, positions, mm_positions, mm_charges = _check_inputs(species, positions, total_charge,
                                                                     multiplicity, mm_positions, mm_charges)
        if self.method == "mp2" and mm_positions is not None:
            raise ValueError("MP2 with MM point charges is not supported (PySCF gives no MP2 gradient on the "
                             "charges); use HF or DFT for embedding data")
        lib.num_threads(self.threads)
        mol = gto.M(atom=[(int(z), tuple(x)) for z, x in zip(species, positions / BOHR_TO_NM)], unit="Bohr",
                    basis=self.basis, charge=int(total_charge), spin=int(multiplicity) - 1, verbose=0)
        mf = self._mean_field(mol)
        if mm_positions is not None:
            mf = qmmm.mm_charge(mf, mm_positions / BOHR_TO_NM, mm_charges, unit="Bohr")
        energy = mf.kernel()
        if not mf.converged:
            raise CalculationFailed(f"pyscf: SCF not converged in {self.max_cycle} cycles")
        if self.method == "mp2":
            post = mf.MP2().run()
            energy, gradient = post.e_tot, post.nuc_grad_method().kernel()
        else:
            gradient_method = mf.nuc_grad_method()
            gradient = gradient_method.kernel()
        dm = mf.make_rdm1()
        charges = mf.mulliken_pop(verbose=0)[1]
        result = {"energy": energy * HARTREE_TO_KJ_PER_MOL, "forces": -np.asarray(gradient) * FORCE_UNIT,
                  "charges": np.asarray(charges, dtype=np.float64),
                  "dipole": np.asarray(mf.dip_moment(unit="AU", verbose=0)) * BOHR_TO_NM}
        if mm_positions is not None:
            result["mm_forces"] = -self._mm_gradient(gradient_method, mol, dm, mm_positions / BOHR_TO_NM,
                                                     mm_charges) * FORCE_UNIT
        return result

    @staticmethod
    def _mm_gradient(gradient_method, mol, dm, coords, charges) -> np.ndarray:
        """dE/dR of each MM charge (Hartree/Bohr): electrons (from the density) plus nuclei."""
        if dm.ndim == 3:  # unrestricted: total density
            dm = dm[0] + dm[1]
        electronic = gradient_method.grad_hcore_mm(dm)
        delta = coords[:, None, :] - mol.atom_coords()[None, :, :]  # [m, n, 3]
        distance = np.linalg.norm(delta, axis=-1)
        nuclear = -(charges[:, None, None] * mol.atom_charges()[None, :, None] * delta
                    / distance[..., None] ** 3).sum(1)
        return electronic + nuclear


def make_calculator(spec: dict) -> ReferenceCalculator:
    """A calculator from ``{"program": "xtb" | "pyscf", **settings}``."""
    spec = dict(spec)
    program = spec.pop("program", None)
    classes = {"xtb": XTBCalculator, "pyscf": PySCFCalculator}
    if program not in classes:
        raise ValueError(f"unknown reference program {program!r}; choose 'xtb' or 'pyscf'")
    try:
        return classes[program](**spec)
    except TypeError as error:
        raise ValueError(f"bad settings for {program}: {error}") from None
