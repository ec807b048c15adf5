"""Reference QM calculators (GFN-xTB via xtb-python, HF/DFT/MP2 via PySCF) with MM point charges.

Everything crossing this module's boundary is in OpenMM units (nm, kJ/mol, kJ/mol/nm, e, e nm);
Hartree and Bohr exist only inside ``compute``. ``compute`` returns the energy of the QM region
in the field of the point charges: the QM nuclei and electrons interacting with the charges are
included, the charges' interactions with each other are not. Calculators hold only their
settings, so they pickle cheaply into worker processes; program objects are built per call.
"""

from __future__ import annotations

import inspect
from typing import Dict, Optional, Tuple

import numpy as np
import torch

from mlmm.embedding.modules import OUTER_COUPLINGS
from mlmm.units import BOHR_TO_NM, COULOMB_CONSTANT, HARTREE_TO_KJ_PER_MOL

#: Hartree/Bohr in kJ/mol/nm.
FORCE_UNIT = HARTREE_TO_KJ_PER_MOL / BOHR_TO_NM
#: Closest approach (nm) of two QM atoms or of a point charge to a QM atom that is accepted.
MIN_DISTANCE = 0.01


class CalculationFailed(RuntimeError):
    """A reference calculation produced no result (e.g. the SCF did not converge)."""


def _frame(angle: float = 1.0) -> np.ndarray:
    """A fixed rotation about an irrational axis (Rodrigues' formula).

    xtb 6.5.1 returns a wrong GFN2 gradient (hundreds of kJ/mol/nm, energy unaffected) when a
    bond of a non-linear molecule lies exactly along a Cartesian axis, as in hand-built or
    symmetric inputs. Evaluating in this frame makes that coincidence practically impossible.
    """
    x, y, z = np.array([1.0, np.sqrt(2.0), np.sqrt(3.0)]) / np.sqrt(6.0)
    k = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return np.eye(3) + np.sin(angle) * k + (1.0 - np.cos(angle)) * k @ k


_ROTATION = _frame()


def _validate(species, positions, total_charge, multiplicity, mm_positions, mm_charges, max_element: int
              ) -> Tuple[np.ndarray, np.ndarray, int, int, Optional[np.ndarray], Optional[np.ndarray]]:
    """Check and convert ``compute``'s arguments; raise ValueError saying what is wrong and how to fix it."""
    species = np.asarray(species)
    if species.ndim != 1 or len(species) == 0 or not np.all(np.mod(species, 1) == 0):
        raise ValueError(f"species must be a non-empty 1-D array of atomic numbers, got {species!r}")
    species = species.astype(np.int64)
    if species.min() < 1 or species.max() > max_element:
        raise ValueError(f"atomic numbers must lie in 1..{max_element} for this program, got {species.tolist()}")
    positions = np.asarray(positions, dtype=np.float64)
    if positions.shape != (len(species), 3):
        raise ValueError(f"positions must have shape ({len(species)}, 3) in nm for {len(species)} atoms, "
                         f"got {positions.shape}")
    if not np.isfinite(positions).all():
        raise ValueError("positions contain NaN or infinity; pass finite coordinates in nm")
    distances = np.linalg.norm(positions[:, None] - positions[None], axis=-1)[np.triu_indices(len(species), 1)]
    if distances.size and distances.min() < MIN_DISTANCE:
        raise ValueError(f"two QM atoms are {distances.min():.2e} nm apart (< {MIN_DISTANCE} nm); "
                         f"are the positions in nm and free of duplicates?")
    if total_charge != int(total_charge) or multiplicity != int(multiplicity) or int(multiplicity) < 1:
        raise ValueError(f"total_charge ({total_charge!r}) must be an integer, multiplicity ({multiplicity!r}) >= 1")
    total_charge, multiplicity = int(total_charge), int(multiplicity)
    electrons = int(species.sum()) - total_charge
    if electrons < 0 or multiplicity - 1 > electrons or (electrons - multiplicity + 1) % 2:
        raise ValueError(f"multiplicity {multiplicity} is impossible with {electrons} electrons (total charge "
                         f"{total_charge}); use an {'even' if electrons % 2 else 'odd'} multiplicity "
                         f"<= {electrons + 1} or check total_charge")
    if (mm_positions is None) != (mm_charges is None):
        raise ValueError("give both mm_positions and mm_charges (nm, e), or neither")
    if mm_positions is None:
        return species, positions, total_charge, multiplicity, None, None
    mm_charges = np.asarray(mm_charges, dtype=np.float64)
    mm_positions = np.asarray(mm_positions, dtype=np.float64)
    if mm_charges.ndim != 1 or mm_positions.shape != (len(mm_charges), 3):
        raise ValueError(f"mm_positions must have shape (m, 3) nm and mm_charges shape (m,) e with the same m, "
                         f"got {mm_positions.shape} and {mm_charges.shape}")
    if not (np.isfinite(mm_positions).all() and np.isfinite(mm_charges).all()):
        raise ValueError("mm_positions or mm_charges contain NaN or infinity")
    if len(mm_charges):
        closest = np.linalg.norm(mm_positions[:, None] - positions[None], axis=-1).min()
        if closest < MIN_DISTANCE:
            raise ValueError(f"an MM point charge is {closest:.2e} nm from a QM atom (< {MIN_DISTANCE} nm); "
                             f"remove MM charges of QM atoms and check that positions are in nm")
    return species, positions, total_charge, multiplicity, mm_positions, mm_charges


class ReferenceCalculator:
    """Base class of reference calculators; subclasses set the class attributes and implement ``compute``."""

    program: str = ""
    level_of_theory: str = ""
    provides_mm_forces: bool = False

    @property
    def program_version(self) -> str:
        """Version string of the installed program."""
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
            Atomic numbers of the QM atoms.
        positions : float array [n, 3]
            QM positions in nm.
        total_charge : int
            Charge of the QM region in e.
        multiplicity : int
            Spin multiplicity 2S + 1.
        mm_positions, mm_charges : float arrays [m, 3] (nm) and [m] (e), optional
            MM point charges polarising the QM region; both or neither, m may be 0.

        Returns
        -------
        dict of numpy.float64
            ``energy`` (kJ/mol), ``forces`` [n, 3] (kJ/mol/nm), ``charges`` [n] (e), ``dipole`` [3]
            (e nm, about the coordinate origin) and, when MM charges were given and
            ``provides_mm_forces``, ``mm_forces`` [m, 3] (kJ/mol/nm).

        Raises
        ------
        ValueError
            Inconsistent or unphysical input (the message says what and how to fix it).
        CalculationFailed
            The program gave no result (e.g. the SCF did not converge).
        """
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(**{self.settings()!r})"


class XTBCalculator(ReferenceCalculator):
    """GFN2-xTB (or GFN1-xTB) through xtb-python.

    Point charges enter through ``set_external_charges(numbers, charges, positions)``. xtb uses
    ``numbers`` only to look up a chemical hardness eta_pc (``gam = chemicalHardness(Z)``; no bounds
    check, so Z must lie in 1..86), and couples each charge to the shell charges of the QM atoms
    with the damped kernel 1/sqrt(r^2 + (2/(eta_shell + eta_pc))^2) (GFN2). The API cannot make the
    charges bare (that needs eta_pc -> infinity), so all charges get ``mm_element`` (default 1,
    hydrogen: a GFN2-like MM atom, damping length ~0.12 nm; 7 is xtb's own default for point
    charges, 84 the hardest element and the closest to bare). At 3 nm the damping changes the
    kernel by 1e-3; at hydrogen-bond distances by ~15 %. xtb-python exposes no gradient on
    the point charges: ``mm_forces`` are not returned.

    Parameters
    ----------
    method : str
        "GFN2-xTB" or "GFN1-xTB" (also "gfn2", "gfn1").
    accuracy : float
        xtb's numerical accuracy (0.0001..1000; smaller is tighter).
    electronic_temperature : float
        Fermi smearing temperature in K.
    max_iterations : int
        Maximum SCC iterations before :class:`CalculationFailed`.
    mm_element : int
        Atomic number whose GFN hardness the MM point charges get (1..86).
    threads : int
        OpenMP (and BLAS) threads of xtb during ``compute``, restored afterwards. The default 1
        suits labelling with one worker process per core; xtb's OpenMP threads wait actively, so
        more threads than free cores stall it next to other jobs. Not one of the ``settings``
        (it does not change the result), so a labelling resumes with any value.
    """

    program = "xtb"
    provides_mm_forces = False
    _METHODS = {"gfn2-xtb": "GFN2-xTB", "gfn2": "GFN2-xTB", "gfn1-xtb": "GFN1-xTB", "gfn1": "GFN1-xTB"}

    def __init__(self, method: str = "GFN2-xTB", accuracy: float = 1.0, electronic_temperature: float = 300.0,
                 max_iterations: int = 250, mm_element: int = 1, threads: int = 1):
        if str(method).lower() not in self._METHODS:
            raise ValueError(f"xtb method {method!r} is not supported; use 'GFN2-xTB' or 'GFN1-xTB'")
        if not 1e-4 <= float(accuracy) <= 1e3:
            raise ValueError(f"accuracy={accuracy!r} is outside xtb's range 0.0001..1000")
        if not float(electronic_temperature) > 0:
            raise ValueError(f"electronic_temperature={electronic_temperature!r} K must be positive")
        if int(max_iterations) < 1:
            raise ValueError(f"max_iterations={max_iterations!r} must be >= 1")
        if int(mm_element) != mm_element or not 1 <= int(mm_element) <= 86:
            raise ValueError(f"mm_element={mm_element!r} must be an atomic number in 1..86 (xtb indexes its "
                             f"hardness table with it)")
        if int(threads) != threads or int(threads) < 1:
            raise ValueError(f"threads={threads!r} must be a positive integer")
        self.method = self._METHODS[str(method).lower()]
        self.accuracy, self.electronic_temperature = float(accuracy), float(electronic_temperature)
        self.max_iterations, self.mm_element, self.threads = int(max_iterations), int(mm_element), int(threads)
        self.level_of_theory = self.method

    @property
    def program_version(self) -> str:
        from importlib.metadata import version
        from pathlib import Path

        import xtb

        bundled = sorted((Path(xtb.__file__).parent.parent / "xtb.libs").glob("libxtb-*.so.*"))
        library = f" (libxtb {bundled[0].name.split('.so.')[-1]})" if bundled else ""
        return f"xtb-python {version('xtb')}{library}"

    def settings(self) -> dict:
        return {"method": self.method, "accuracy": self.accuracy, "electronic_temperature":
                self.electronic_temperature, "max_iterations": self.max_iterations, "mm_element": self.mm_element}

    def compute(self, species, positions, total_charge: int = 0, multiplicity: int = 1,
                mm_positions=None, mm_charges=None) -> Dict[str, np.ndarray]:
        """See :meth:`ReferenceCalculator.compute`; returns no ``mm_forces``."""
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=self.threads):
            return self._singlepoint(species, positions, total_charge, multiplicity, mm_positions, mm_charges)

    def _singlepoint(self, species, positions, total_charge, multiplicity, mm_positions, mm_charges
                     ) -> Dict[str, np.ndarray]:
        from xtb.interface import Calculator, Param, XTBException
        from xtb.libxtb import VERBOSITY_MUTED

        species, positions, total_charge, multiplicity, mm_positions, mm_charges = _validate(
            species, positions, total_charge, multiplicity, mm_positions, mm_charges, max_element=86)
        param = Param.GFN2xTB if self.method == "GFN2-xTB" else Param.GFN1xTB
        try:
            calc = Calculator(param, species, positions @ _ROTATION.T / BOHR_TO_NM,
                              charge=float(total_charge), uhf=multiplicity - 1)
            calc.set_verbosity(VERBOSITY_MUTED)
            calc.set_accuracy(self.accuracy)
            calc.set_electronic_temperature(self.electronic_temperature)
            calc.set_max_iterations(self.max_iterations)
            if mm_charges is not None and len(mm_charges):  # xtb rejects an empty set of charges
                calc.set_external_charges(np.full(len(mm_charges), self.mm_element), mm_charges,
                                          mm_positions @ _ROTATION.T / BOHR_TO_NM)
            result = calc.singlepoint()
        except XTBException as error:
            reason = " ".join(str(error).split())
            raise CalculationFailed(f"xtb {self.method} failed: {reason} (max_iterations={self.max_iterations}, "
                                    f"electronic_temperature={self.electronic_temperature} K)") from None
        return {"energy": np.float64(result.get_energy() * HARTREE_TO_KJ_PER_MOL),
                "forces": -(result.get_gradient() @ _ROTATION) * FORCE_UNIT,
                "charges": np.asarray(result.get_charges(), dtype=np.float64),
                "dipole": (result.get_dipole() @ _ROTATION) * BOHR_TO_NM}


def _basis_label(basis: str) -> str:
    label = basis.upper()
    for prefix in ("def2-", "cc-p", "aug-", "ma-"):
        if label.startswith(prefix.upper()):
            label = prefix + label[len(prefix):]
    return label


class PySCFCalculator(ReferenceCalculator):
    """HF, MP2 or DFT (any PySCF/libxc functional) with ``pyscf.qmmm`` point charges and forces on them.

    Restricted (RHF/RKS) for singlets, unrestricted (UHF/UKS) otherwise. Charges are Mulliken
    charges. MM forces are -dE/dR of each charge: the electronic part from the SCF density
    (Hellmann-Feynman holds, the basis does not move with the charges) plus the nuclear part.
    MP2: energy and QM forces from relaxed MP2 gradients; charges and dipole from the HF
    density (PySCF exposes no relaxed MP2 density), and no MM charges (see ``compute``).

    Parameters
    ----------
    method : str
        "hf", "mp2" or a PySCF exchange-correlation string ("b3lyp", "pbe0", "wb97x-d", ...).
    basis : str
        Basis set name known to PySCF.
    conv_tol : float
        SCF energy convergence threshold in Hartree.
    max_cycle : int
        Maximum SCF cycles before :class:`CalculationFailed`.
    threads : int
        OpenMP threads PySCF uses during ``compute`` (restored afterwards).
    """

    program = "pyscf"
    provides_mm_forces = True

    def __init__(self, method: str = "b3lyp", basis: str = "6-31g*", conv_tol: float = 1e-9,
                 max_cycle: int = 100, threads: int = 1):
        method = str(method).lower()
        if method not in ("hf", "mp2"):
            from pyscf.dft import libxc

            try:
                libxc.parse_xc(method)
            except (KeyError, ValueError) as error:
                raise ValueError(f"method {method!r} is neither 'hf', 'mp2' nor a PySCF functional "
                                 f"({error})") from None
        if not float(conv_tol) > 0 or int(max_cycle) < 1 or int(threads) < 1:
            raise ValueError(f"conv_tol ({conv_tol!r}) must be > 0, max_cycle ({max_cycle!r}) and threads "
                             f"({threads!r}) >= 1")
        self.method, self.basis = method, str(basis)
        self.conv_tol, self.max_cycle, self.threads = float(conv_tol), int(max_cycle), int(threads)
        self.level_of_theory = f"{method.upper()}/{_basis_label(self.basis)}"
        self.provides_mm_forces = method != "mp2"  # MP2 refuses MM charges (see compute)

    @property
    def program_version(self) -> str:
        import pyscf

        return f"pyscf {pyscf.__version__}"

    def settings(self) -> dict:
        return {"method": self.method, "basis": self.basis, "conv_tol": self.conv_tol, "max_cycle": self.max_cycle,
                "threads": self.threads}

    def compute(self, species, positions, total_charge: int = 0, multiplicity: int = 1,
                mm_positions=None, mm_charges=None) -> Dict[str, np.ndarray]:
        """See :meth:`ReferenceCalculator.compute`. MP2 with MM charges raises ValueError: PySCF's
        MP2 gradient gives no derivative with respect to the charge positions."""
        from pyscf import dft, gto, lib, mp, qmmm, scf
        from pyscf.gto.basis import BasisNotFoundError

        species, positions, total_charge, multiplicity, mm_positions, mm_charges = _validate(
            species, positions, total_charge, multiplicity, mm_positions, mm_charges, max_element=118)
        if self.method == "mp2" and mm_charges is not None and len(mm_charges):
            raise ValueError("MP2 with MM point charges is not supported: PySCF gives no MP2 gradient with "
                             "respect to the charge positions; use HF or DFT for embedding data")
        previous_threads = lib.num_threads()
        lib.num_threads(self.threads)
        try:
            mol = gto.M(atom=[(int(z), tuple(x)) for z, x in zip(species, positions / BOHR_TO_NM)],
                        unit="Bohr", basis=self.basis, charge=total_charge, spin=multiplicity - 1, verbose=0)
            if self.method in ("hf", "mp2"):
                mf = scf.RHF(mol) if multiplicity == 1 else scf.UHF(mol)
            else:
                mf = dft.RKS(mol, xc=self.method) if multiplicity == 1 else dft.UKS(mol, xc=self.method)
            mf.conv_tol, mf.max_cycle, mf.verbose = self.conv_tol, self.max_cycle, 0
            embedded = mm_charges is not None and len(mm_charges) > 0
            if embedded:
                mf = qmmm.mm_charge(mf, mm_positions / BOHR_TO_NM, mm_charges, unit="Bohr")
            energy = mf.kernel()
            if not mf.converged:
                raise CalculationFailed(f"pyscf {self.level_of_theory}: SCF not converged in {self.max_cycle} "
                                        f"cycles (conv_tol={self.conv_tol} Hartree); raise max_cycle or check "
                                        f"the geometry, charge and multiplicity")
            gradient_method = mf.nuc_grad_method()
            if self.method == "mp2":
                post = mp.MP2(mf).run()
                energy, gradient = post.e_tot, post.nuc_grad_method().kernel()
            else:
                gradient = gradient_method.kernel()
            result = {"energy": np.float64(energy * HARTREE_TO_KJ_PER_MOL),
                      "forces": -np.asarray(gradient, dtype=np.float64) * FORCE_UNIT,
                      "charges": np.asarray(mf.mulliken_pop(verbose=0)[1], dtype=np.float64),
                      "dipole": np.asarray(mf.dip_moment(unit="AU", verbose=0), dtype=np.float64) * BOHR_TO_NM}
            if embedded:
                dm = mf.make_rdm1()
                dm = dm[0] + dm[1] if dm.ndim == 3 else dm  # unrestricted: total density
                mm_gradient = gradient_method.grad_hcore_mm(dm) + gradient_method.grad_nuc_mm()
                result["mm_forces"] = -np.asarray(mm_gradient, dtype=np.float64) * FORCE_UNIT
            elif mm_charges is not None:  # m = 0: an empty, not a missing, result
                result["mm_forces"] = np.zeros((0, 3))
            return result
        except BasisNotFoundError as error:
            raise ValueError(f"basis {self.basis!r} is unknown to PySCF or lacks an element of "
                             f"{sorted(set(species.tolist()))}: {error}") from None
        finally:
            lib.num_threads(previous_threads)


class BufferDifference(ReferenceCalculator):
    """Reference of the buffer embedding: E(I u B) - E(B) with a base calculator, in vacuum or in a field.

    A frame's MM environment is the buffer B (atomic numbers in the dataset's ``mm_species``),
    computed quantum mechanically together with the ML region I and alone. Returned: the energy
    difference, forces on I (from I u B), ``mm_forces`` on B (F_B(I u B) - F_B(B)), the charges of I
    in I u B and the dipole difference. B's charge is the rounded sum of its force-field charges
    (``mm_charges``) and it is taken closed shell; I u B has the ML region's charge plus B's and
    the ML region's multiplicity.

    MM atoms with atomic number 0 are point charges O outside the buffer
    (:func:`~mlmm.data.snapshots.buffer_clusters` with ``outer_charges``): both clusters are then
    computed in their field, and the Coulomb term the buffer scheme adds itself
    (:data:`OUTER_COUPLINGS`) is subtracted from the energy and, at fixed charges, from the forces:

        E = E(I u B; O) - E(B; O) - k_e sum_a dq_a sum_{j in O} q_j / r_aj

    with, for ``outer_coupling="ml-charges"``, a over I and dq_a the charges of I in I u B shifted
    to I's total charge; for ``"charge-difference"``, a over I u B and dq_a = q_a(I u B) - q_a(B)
    (q_a(B) = 0 for the atoms of I), the charge the presence of I moves within the cluster,
    returned as ``mm_charge_changes`` for the buffer atoms (0 for O). A network trained on it,
    plus the scheme's term with its own charges, reproduces the cluster's energy in the field.

    Parameters
    ----------
    base : dict or ReferenceCalculator
        The method, e.g. ``{"program": "xtb"}`` (see :func:`make_calculator`).
    outer_coupling : str
        ``"ml-charges"`` (default) or ``"charge-difference"``.
    """

    uses_mm_species = True
    provides_mm_forces = True
    program = "buffer-difference"

    def __init__(self, base, outer_coupling: str = "ml-charges"):
        if outer_coupling not in OUTER_COUPLINGS:
            raise ValueError(f"outer_coupling={outer_coupling!r} is not one of {OUTER_COUPLINGS}")
        self.base = base if isinstance(base, ReferenceCalculator) else make_calculator(base)
        self.outer_coupling = outer_coupling
        self.provides_mm_charge_changes = outer_coupling == "charge-difference"
        self.level_of_theory = f"{self.base.level_of_theory}: E(ML + buffer) - E(buffer)"

    @property
    def program_version(self) -> str:
        return self.base.program_version

    def settings(self) -> dict:
        settings = {"base": {"program": self.base.program, **self.base.settings()}}
        if self.outer_coupling != "ml-charges":  # records of the default (data labelled before the option) stay valid
            settings["outer_coupling"] = self.outer_coupling
        return settings

    def compute(self, species, positions, total_charge: int = 0, multiplicity: int = 1, mm_positions=None,
                mm_charges=None, mm_species=None) -> Dict[str, np.ndarray]:
        if mm_positions is None or mm_species is None or not np.any(np.asarray(mm_species) > 0):
            raise ValueError("a buffer reference needs the buffer atoms: mm_positions and mm_species (and "
                             "mm_charges for the buffer's total charge)")
        mm_species, mm_positions = np.asarray(mm_species, dtype=np.int64), np.asarray(mm_positions, dtype=np.float64)
        mm_charges = np.zeros(len(mm_species)) if mm_charges is None else np.asarray(mm_charges, dtype=np.float64)
        inner, outer = mm_species > 0, mm_species == 0
        field = (mm_positions[outer], mm_charges[outer]) if outer.any() else (None, None)
        buffer_species, buffer_positions = mm_species[inner], mm_positions[inner]
        buffer_charge = int(round(float(np.sum(mm_charges[inner]))))
        n, positions = len(species), np.asarray(positions, dtype=np.float64)
        whole = self.base.compute(np.concatenate([np.asarray(species), buffer_species]),
                                  np.concatenate([positions, buffer_positions]), total_charge + buffer_charge,
                                  multiplicity, *field)
        buffer = self.base.compute(buffer_species, buffer_positions, buffer_charge, 1, *field)
        energy = whole["energy"] - buffer["energy"]
        forces = np.concatenate([whole["forces"][:n], whole["forces"][n:] - buffer["forces"]])
        changes = whole["charges"][n:] - buffer["charges"]
        if outer.any():  # the scheme's own Coulomb term, and its forces at fixed charges
            x = torch.tensor(np.concatenate([positions, buffer_positions]), requires_grad=True)
            coupled = coupled_charges(self.outer_coupling, whole["charges"], buffer["charges"], total_charge)
            coulomb = outer_coulomb(x, torch.as_tensor(coupled), *field)
            (gradient,) = torch.autograd.grad(coulomb, x)
            energy, forces = energy - float(coulomb.detach()), forces + gradient.numpy()
        mm_forces, mm_charge_changes = np.zeros((len(mm_species), 3)), np.zeros(len(mm_species))
        mm_forces[inner], mm_charge_changes[inner] = forces[n:], changes
        result = {"energy": energy, "forces": forces[:n], "mm_forces": mm_forces, "charges": whole["charges"][:n],
                  "dipole": whole["dipole"] - buffer["dipole"]}
        if self.provides_mm_charge_changes:
            result["mm_charge_changes"] = mm_charge_changes
        return result


def coupled_charges(outer_coupling: str, whole_charges, buffer_charges, total_charge: float):
    """The charges [n + b] (e; numpy arrays or tensors) of the cluster I u B that the buffer scheme
    couples to the molecules beyond the buffer (:data:`OUTER_COUPLINGS`), from the charges of
    I u B [n + b] and of B alone [b]: I's charges shifted to ``total_charge`` and zeros for B
    (``"ml-charges"``), or I's charges and B's changes q_B(I u B) - q_B(B) (``"charge-difference"``)."""
    n = len(whole_charges) - len(buffer_charges)
    if outer_coupling == "ml-charges":
        ml, buffer = shifted_charges(whole_charges[:n], total_charge), buffer_charges * 0.0
    else:
        ml, buffer = whole_charges[:n], whole_charges[n:] - buffer_charges
    return torch.cat([ml, buffer]) if isinstance(ml, torch.Tensor) else np.concatenate([ml, buffer])


def shifted_charges(charges, total_charge: float):
    """Charges (e; numpy array or tensor) shifted evenly to sum to ``total_charge``, as the buffer
    scheme couples the ML region's charges to the molecules beyond the buffer."""
    return charges - (charges.sum() - total_charge) / len(charges)


def outer_coulomb(x_ml: torch.Tensor, q_ml: torch.Tensor, x_outer, q_outer) -> torch.Tensor:
    """The buffer scheme's Coulomb term k_e sum_{i in I} q_i sum_{j in O} q_j / r_ij (kJ/mol) of the
    ML region's charges (e) at ``x_ml`` (nm) with the point charges beyond the buffer."""
    return (q_ml * outer_potential(x_ml, x_outer, q_outer)).sum()


def outer_potential(x, x_outer, q_outer) -> torch.Tensor:
    """The electrostatic potential k_e sum_{j in O} q_j / r_aj (kJ/mol/e) of point charges ``q_outer`` (e)
    at ``x_outer`` [o, 3] (nm) at the positions ``x`` [a, 3] (nm; tensors or arrays)."""
    x = torch.as_tensor(x)
    r = torch.linalg.norm(x.unsqueeze(1) - torch.as_tensor(x_outer, dtype=x.dtype).unsqueeze(0), dim=-1)
    return COULOMB_CONSTANT * (torch.as_tensor(q_outer, dtype=x.dtype).unsqueeze(0) / r).sum(1)


_CALCULATORS = {"xtb": XTBCalculator, "pyscf": PySCFCalculator, "buffer-difference": BufferDifference}


def make_calculator(spec: dict) -> ReferenceCalculator:
    """Build a calculator from ``{"program": "xtb" | "pyscf", **settings}`` (e.g. a ``settings()`` record).

    Raises ValueError for an unknown program, unknown settings keys or invalid settings.
    """
    if not isinstance(spec, dict):
        raise ValueError(f"calculator spec must be a dict like {{'program': 'xtb'}}, got {spec!r}")
    spec = dict(spec)
    program = spec.pop("program", None)
    if program not in _CALCULATORS:
        raise ValueError(f"unknown reference program {program!r}; choose one of {sorted(_CALCULATORS)}")
    cls = _CALCULATORS[program]
    allowed = [name for name in inspect.signature(cls.__init__).parameters if name != "self"]
    unknown = sorted(set(spec) - set(allowed))
    if unknown:
        raise ValueError(f"unknown settings {unknown} for program {program!r}; allowed: {allowed}")
    return cls(**spec)
