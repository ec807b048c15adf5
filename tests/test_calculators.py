"""Reference calculators against independent references: finite differences, Coulomb's law, linear response."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from mlmm.data.calculators import CalculationFailed, PySCFCalculator, XTBCalculator, make_calculator
from mlmm.units import BOHR_TO_NM, COULOMB_CONSTANT, HARTREE_TO_KJ_PER_MOL

SPECIES = np.array([8, 1, 1])
WATER = np.array([[0.0, 0.0, 0.0], [0.0956, 0.0050, 0.0], [-0.0240, 0.0926, 0.0]])  # nm, in the xy plane
# O-H exactly along x: xtb 6.5.1's own gradient is off by ~570 kJ/mol/nm here (energy right);
# XTBCalculator evaluates in a rotated frame, which this geometry checks.
WATER_ON_AXIS = np.array([[0.0, 0.0, 0.0], [0.0957, 0.0, 0.0], [-0.0240, 0.0926, 0.0]])
MM_POSITIONS = np.array([[0.30, 0.10, 0.05], [-0.20, 0.25, 0.10], [0.05, -0.28, -0.12]])  # 0.3-0.35 nm from O
MM_CHARGES = np.array([0.6, -0.4, -0.3])
H = 1e-4  # nm, finite-difference step
# Central differences err by h^2 E'''/6; the stiff, anharmonic O-H bonds have E''' ~ 3e7 kJ/mol/nm^3,
# so ~0.05-0.1 kJ/mol/nm of forces up to ~4000 kJ/mol/nm. SCF noise (< 1e-9 Hartree here) adds < 0.01.
QM_FD_ATOL = 0.3


def finite_difference_forces(energy, x: np.ndarray, h: float = H) -> np.ndarray:
    """-dE/dx of every component of x by central differences."""
    forces = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        plus, minus = x.copy(), x.copy()
        plus[index] += h
        minus[index] -= h
        forces[index] = -(energy(plus) - energy(minus)) / (2 * h)
    return forces


def test_hartree_bohr_conversions_agree_with_openmm_coulomb_constant():
    # k_e = 1 Hartree Bohr / e^2: QM/MM energies (Hartree) and OpenMM Coulomb (k_e) must use one scale.
    assert HARTREE_TO_KJ_PER_MOL * BOHR_TO_NM == pytest.approx(COULOMB_CONSTANT, rel=1e-10)


@pytest.fixture(scope="module")
def xtb():
    return XTBCalculator(accuracy=0.01)


@pytest.fixture(scope="module")
def xtb_gas(xtb):
    return xtb.compute(SPECIES, WATER)


@pytest.mark.parametrize("direction", [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
def test_xtb_distant_charge_energy_is_coulomb_law_with_the_xtb_charges(xtb, xtb_gas, direction):
    def shift(q, distance):
        site = distance * np.array(direction)
        return xtb.compute(SPECIES, WATER, mm_positions=[site], mm_charges=[q])["energy"] - xtb_gas["energy"]

    deviation = {}
    for distance in (3.0, 6.0):
        site = distance * np.array(direction)
        plus, minus = shift(0.5, distance), shift(-0.5, distance)
        first_order = 0.5 * (plus - minus)  # odd in q; the even part is polarisation
        coulomb = 0.5 * COULOMB_CONSTANT * (xtb_gas["charges"] / np.linalg.norm(WATER - site, axis=1)).sum()
        deviation[distance] = first_order - coulomb
        # GFN2 damps the charge kernel, 1/sqrt(r^2 + a^2) with a ~ 0.12 nm depending on the shell;
        # for a neutral molecule the -a^2/(2 r^3) tails do not cancel, leaving ~2.5 % at 3 nm.
        assert first_order == pytest.approx(coulomb, rel=0.04 if distance == 3.0 else 0.02)
    # the deviation from bare Coulomb is that r^-3 damping tail: 8 times smaller at twice the distance
    assert deviation[6.0] * 8 == pytest.approx(deviation[3.0], rel=0.2)

    # at 3 nm: linear in q, as polarisation (second order, ~0.3 % of the first order) is small...
    site = 3.0 * np.array(direction)
    plus, minus, double = shift(0.5, 3.0), shift(-0.5, 3.0), shift(1.0, 3.0)
    assert double == pytest.approx(2 * plus, rel=0.01)
    # ...and lowers the energy, by 1/2 sum_i dq_i V_i (linear response: the charge couples to atomic charges)
    polarisation = 0.5 * (plus + minus)
    assert polarisation < 0 and abs(polarisation) < 0.01 * abs(plus)
    response = [xtb.compute(SPECIES, WATER, mm_positions=[site], mm_charges=[q])["charges"] for q in (1.0, -1.0)]
    induced = 0.5 * (response[0] - response[1])  # per e of the point charge
    potential = COULOMB_CONSTANT / np.linalg.norm(WATER - site, axis=1)  # kJ/mol/e of 1 e
    assert 4 * polarisation == pytest.approx(0.5 * (induced * potential).sum(), rel=0.03)  # (1 e / 0.5 e)^2


@pytest.mark.parametrize("direction", [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.6, -0.8, 0.0]])
def test_xtb_dipole_is_induced_along_the_field(xtb, direction):
    site = 1.5 * np.array(direction)  # nm, in the molecular plane
    dipoles = [xtb.compute(SPECIES, WATER, mm_positions=[site], mm_charges=[q])["dipole"] for q in (1.0, -1.0)]
    induced = 0.5 * (dipoles[0] - dipoles[1])  # e nm per e, odd in q
    separation = WATER.mean(axis=0) - site
    field = COULOMB_CONSTANT * separation / np.linalg.norm(separation) ** 3  # of +1 e, kJ/mol/nm/e
    # a positive-definite polarisability puts the induced dipole within 90 deg of the field; water's
    # in-plane anisotropy tilts it by up to ~27 deg (cos 0.89).
    cosine = induced @ field / np.linalg.norm(induced) / np.linalg.norm(field)
    assert cosine > 0.8
    assert np.linalg.norm(induced) > 1e-4  # e nm; a 1 e charge at 1.5 nm polarises measurably
    assert abs(induced[2]) < 1e-10  # GFN2 couples the charge to atomic charges only: no out-of-plane dipole


def test_xtb_mm_element_sets_how_strongly_point_charges_are_damped():
    site = np.array([0.5, 0.0, 0.0])  # nm, 0.4 nm beyond H1
    first_order = {}
    for element in (1, 7, 84):  # H (default), N (xtb's own default), Po (hardest GFN2 element)
        calculator = XTBCalculator(accuracy=0.01, mm_element=element)
        energies = [calculator.compute(SPECIES, WATER, mm_positions=[site], mm_charges=[q])["energy"]
                    for q in (0.1, -0.1)]
        first_order[element] = 0.5 * (energies[0] - energies[1])
    charges = XTBCalculator(accuracy=0.01).compute(SPECIES, WATER)["charges"]
    coulomb = 0.1 * COULOMB_CONSTANT * (charges / np.linalg.norm(WATER - site, axis=1)).sum()
    # kernel 1/sqrt(r^2 + (2 / (eta_shell + eta_pc))^2): a harder point charge is damped less
    assert first_order[1] < first_order[7] < first_order[84] < coulomb
    assert first_order[1] < 0.85 * coulomb  # hydrogen: damping length ~0.12 nm matters at 0.4 nm
    assert first_order[84] == pytest.approx(coulomb, rel=0.1)  # closest to a bare charge


def test_xtb_threads_limit_openmp_during_the_call_only_and_leave_the_result_unchanged():
    import xtb.interface  # noqa: F401  (loads xtb's own OpenMP runtime)
    from threadpoolctl import threadpool_info

    def openmp_threads():
        return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "openmp"]

    before = openmp_threads()
    results = {n: XTBCalculator(accuracy=0.01, threads=n).compute(SPECIES, WATER, mm_positions=MM_POSITIONS,
                                                                  mm_charges=MM_CHARGES) for n in (1, 2)}
    assert openmp_threads() == before
    assert results[1]["energy"] == pytest.approx(results[2]["energy"], abs=1e-6)  # kJ/mol
    np.testing.assert_allclose(results[1]["forces"], results[2]["forces"], atol=1e-6)
    assert "threads" not in XTBCalculator(threads=2).settings()  # a labelling resumes with any value
    for threads in (0, 1.5):
        with pytest.raises(ValueError, match="threads"):
            XTBCalculator(threads=threads)


@pytest.mark.parametrize("geometry", [WATER, WATER_ON_AXIS], ids=["generic", "bond-on-axis"])
@pytest.mark.parametrize("with_charges", [False, True])
def test_xtb_forces_are_minus_the_energy_gradient(xtb, geometry, with_charges):
    extra = {"mm_positions": MM_POSITIONS, "mm_charges": MM_CHARGES} if with_charges else {}
    result = xtb.compute(SPECIES, geometry, **extra)
    numeric = finite_difference_forces(lambda x: xtb.compute(SPECIES, x, **extra)["energy"], geometry)
    np.testing.assert_allclose(result["forces"], numeric, atol=QM_FD_ATOL)
    assert "mm_forces" not in result and not xtb.provides_mm_forces


@pytest.mark.parametrize("calculator", [XTBCalculator(), PySCFCalculator("hf", "sto-3g")], ids=["xtb", "pyscf"])
def test_dipole_of_an_ion_is_about_the_coordinate_origin(calculator):
    hydronium = (np.array([8, 1, 1, 1]), np.array([[0.0, 0.0, 0.01], [0.0943, 0.0, -0.023],
                                                   [-0.0472, 0.0817, -0.023], [-0.0472, -0.0817, -0.023]]))
    shift = np.array([0.3, -0.2, 0.5])
    before = calculator.compute(*hydronium, total_charge=1)
    after = calculator.compute(hydronium[0], hydronium[1] + shift, total_charge=1)
    np.testing.assert_allclose(after["dipole"] - before["dipole"], 1.0 * shift, atol=1e-5)  # Q * shift
    assert before["charges"].sum() == pytest.approx(1.0, abs=1e-6)


@pytest.fixture(scope="module")
def hf():
    return PySCFCalculator("hf", "sto-3g", conv_tol=1e-11)


def test_pyscf_forces_on_qm_atoms_and_mm_charges_match_finite_differences(hf):
    result = hf.compute(SPECIES, WATER, mm_positions=MM_POSITIONS, mm_charges=MM_CHARGES)
    numeric_mm = finite_difference_forces(
        lambda m: hf.compute(SPECIES, WATER, mm_positions=m, mm_charges=MM_CHARGES)["energy"], MM_POSITIONS)
    # no stiff term depends on the charge positions: central differences are exact to ~1e-4 kJ/mol/nm
    np.testing.assert_allclose(result["mm_forces"], numeric_mm, atol=2e-3)
    assert np.abs(result["mm_forces"]).max() > 10.0  # the charges are close enough to feel real forces
    numeric_qm = finite_difference_forces(
        lambda x: hf.compute(SPECIES, x, mm_positions=MM_POSITIONS, mm_charges=MM_CHARGES)["energy"], WATER)
    np.testing.assert_allclose(result["forces"], numeric_qm, atol=QM_FD_ATOL)


@pytest.mark.parametrize("method, species, positions, multiplicity", [
    ("b3lyp", SPECIES, WATER, 1),  # DFT (RKS)
    ("hf", np.array([8, 1]), WATER[:2], 2),  # OH radical (UHF: the alpha + beta density)
])
def test_pyscf_mm_forces_for_dft_and_open_shells(method, species, positions, multiplicity):
    calculator = PySCFCalculator(method, "sto-3g", conv_tol=1e-11)
    site, charge = MM_POSITIONS[:1], MM_CHARGES[:1]
    result = calculator.compute(species, positions, multiplicity=multiplicity, mm_positions=site, mm_charges=charge)
    numeric = finite_difference_forces(lambda m: calculator.compute(
        species, positions, multiplicity=multiplicity, mm_positions=m, mm_charges=charge)["energy"], site)
    np.testing.assert_allclose(result["mm_forces"], numeric, atol=2e-3)


def test_pyscf_distant_charge_feels_the_molecular_dipole_including_nuclei(hf):
    gas = hf.compute(SPECIES, WATER)
    dipole = gas["dipole"]
    site = WATER.mean(axis=0) + 5.0 * dipole / np.linalg.norm(dipole)  # nm, along the dipole
    shifts = [hf.compute(SPECIES, WATER, mm_positions=[site], mm_charges=[q])["energy"] - gas["energy"]
              for q in (1.0, -1.0)]
    first_order = 0.5 * (shifts[0] - shifts[1])
    # the quadrupole term is ~ (0.1 nm / 5 nm) of the dipole term; without the nuclei-charge
    # interaction the shift would be ~ -10 e * k_e / 5 nm = -280 kJ/mol
    assert first_order == pytest.approx(COULOMB_CONSTANT * np.linalg.norm(dipole) / 5.0 ** 2, rel=0.02)


def test_pyscf_zero_or_no_charges_give_the_gas_phase(hf):
    gas = hf.compute(SPECIES, WATER)
    zero = hf.compute(SPECIES, WATER, mm_positions=MM_POSITIONS, mm_charges=np.zeros(3))
    assert zero["energy"] == pytest.approx(gas["energy"], abs=1e-5)  # kJ/mol; conv_tol 1e-11 Hartree
    np.testing.assert_allclose(zero["forces"], gas["forces"], atol=1e-4)
    np.testing.assert_allclose(zero["mm_forces"], 0.0, atol=1e-10)
    empty = hf.compute(SPECIES, WATER, mm_positions=np.zeros((0, 3)), mm_charges=np.zeros(0))
    assert empty["energy"] == pytest.approx(gas["energy"], abs=1e-5) and empty["mm_forces"].shape == (0, 3)
    assert "mm_forces" not in gas


def test_pyscf_mp2_forces_match_finite_differences_and_refuse_mm_charges():
    calculator = PySCFCalculator("mp2", "sto-3g", conv_tol=1e-11)
    result = calculator.compute(SPECIES, WATER)
    numeric = finite_difference_forces(lambda x: calculator.compute(SPECIES, x)["energy"], WATER)
    np.testing.assert_allclose(result["forces"], numeric, atol=QM_FD_ATOL)
    hf_energy = PySCFCalculator("hf", "sto-3g", conv_tol=1e-11).compute(SPECIES, WATER)["energy"]
    assert result["energy"] < hf_energy - 10.0  # correlation energy, ~ -50 kJ/mol in sto-3g
    with pytest.raises(ValueError, match="MP2 with MM point charges"):
        calculator.compute(SPECIES, WATER, mm_positions=MM_POSITIONS, mm_charges=MM_CHARGES)


def test_unconverged_scf_raises_calculation_failed():
    with pytest.raises(CalculationFailed, match="SCF not converged in 1 cycles"):
        PySCFCalculator("hf", "sto-3g", max_cycle=1).compute(SPECIES, WATER)
    with pytest.raises(CalculationFailed, match="did not converge"):
        XTBCalculator(max_iterations=1).compute(SPECIES, WATER)


@pytest.mark.parametrize("arguments, message", [
    ({"positions": WATER[:2]}, r"positions must have shape \(3, 3\)"),
    ({"positions": WATER * np.nan}, "NaN"),
    ({"species": [8, 1, 0]}, "atomic numbers must lie in 1.."),
    ({"positions": np.zeros((3, 3))}, "two QM atoms are"),
    ({"mm_positions": MM_POSITIONS}, "both mm_positions and mm_charges"),
    ({"mm_charges": MM_CHARGES}, "both mm_positions and mm_charges"),
    ({"mm_positions": MM_POSITIONS, "mm_charges": MM_CHARGES[:2]}, "same m"),
    ({"mm_positions": WATER[:1], "mm_charges": [1.0]}, "MM point charge is"),
    ({"total_charge": 1}, "multiplicity 1 is impossible with 9 electrons"),
    ({"multiplicity": 2}, "multiplicity 2 is impossible with 10 electrons"),
    ({"total_charge": 0.5}, "must be an integer"),
])
def test_bad_input_raises_a_clear_value_error(arguments, message):
    call = {"species": SPECIES, "positions": WATER, **arguments}
    for calculator in (XTBCalculator(), PySCFCalculator("hf", "sto-3g")):
        with pytest.raises(ValueError, match=message):
            calculator.compute(**call)


@pytest.mark.filterwarnings("ignore:Basis may be available")
def test_bad_settings_raise_value_errors():
    for bad, message in (({"method": "GFN3-xTB"}, "xtb method 'GFN3-xTB'"), ({"mm_element": 0}, "mm_element=0"),
                         ({"mm_element": 87}, "mm_element=87"), ({"accuracy": 0.0}, "accuracy=0.0")):
        with pytest.raises(ValueError, match=message):
            XTBCalculator(**bad)
    with pytest.raises(ValueError, match="species must be"):
        XTBCalculator().compute([[8, 1, 1]], WATER)
    with pytest.raises(ValueError, match="atomic numbers must lie in 1..86"):
        XTBCalculator().compute([8, 1, 87], WATER)  # xtb has no parameters beyond radon
    with pytest.raises(ValueError, match="neither 'hf', 'mp2' nor a PySCF functional"):
        PySCFCalculator("b3lypp")
    with pytest.raises(ValueError, match="basis 'no-such-basis'"):
        PySCFCalculator("hf", "no-such-basis").compute(SPECIES, WATER)


def test_settings_round_trip_through_make_calculator_and_pickle():
    for calculator in (XTBCalculator("gfn1", accuracy=0.5, mm_element=7), PySCFCalculator("PBE0", "def2-svp")):
        again = make_calculator({"program": calculator.program, **calculator.settings()})
        assert type(again) is type(calculator) and again.settings() == calculator.settings()
        assert again.level_of_theory == calculator.level_of_theory
        assert pickle.loads(pickle.dumps(calculator)).settings() == calculator.settings()
    assert XTBCalculator("gfn1").level_of_theory == "GFN1-xTB"
    assert PySCFCalculator().level_of_theory == "B3LYP/6-31G*"
    assert XTBCalculator().program_version.startswith("xtb-python ")
    assert PySCFCalculator().program_version.startswith("pyscf 2.")
    with pytest.raises(ValueError, match="unknown reference program 'gaussian'"):
        make_calculator({"program": "gaussian"})
    with pytest.raises(ValueError, match=r"unknown settings \['basis'\] for program 'xtb'"):
        make_calculator({"program": "xtb", "basis": "sto-3g"})


def test_pickled_calculator_gives_identical_results(hf):
    copy = pickle.loads(pickle.dumps(hf))
    a = hf.compute(SPECIES, WATER, mm_positions=MM_POSITIONS, mm_charges=MM_CHARGES)
    b = copy.compute(SPECIES, WATER, mm_positions=MM_POSITIONS, mm_charges=MM_CHARGES)
    assert set(a) == {"energy", "forces", "charges", "dipole", "mm_forces"}
    for key in a:
        np.testing.assert_allclose(a[key], b[key], atol=1e-8)
        assert np.asarray(a[key]).dtype == np.float64


def test_buffer_difference_is_two_xtb_runs_and_labels_through_label(tmp_path):
    """E(I u B) - E(B) with xTB: the labelled dataset equals two direct calculations per frame."""
    from mlmm.data.calculators import BufferDifference, XTBCalculator, make_calculator
    from mlmm.data.dataset import Dataset
    from mlmm.data.labelling import label

    water = np.array([[0.0, 0.0, 0.0], [0.0957, 0.0, 0.0], [-0.024, 0.0927, 0.0]])
    buffer = np.array([[0.0, 0.0, 0.29], [0.0, 0.0, 0.1943], [0.0927, 0.0, 0.314]])  # donates an H-bond to I
    frames = Dataset(species=[8, 1, 1], positions=[water, water * 1.02],
                     mm_positions=[buffer, buffer + 0.01], mm_charges=[[-0.834, 0.417, 0.417]] * 2,
                     mm_species=[[8, 1, 1]] * 2)
    calculator = BufferDifference({"program": "xtb"})
    assert make_calculator({"program": "buffer-difference", **calculator.settings()}).settings() == \
        calculator.settings()
    data = label(frames, tmp_path / "buffer.h5", calculator, n_workers=0, progress=False)
    xtb = XTBCalculator()
    for k in range(2):
        whole = xtb.compute([8, 1, 1, 8, 1, 1], np.vstack([frames.positions[k], frames.mm_positions[k]]))
        alone = xtb.compute([8, 1, 1], frames.mm_positions[k])
        assert data.energies[k] == pytest.approx(whole["energy"] - alone["energy"], abs=1e-8)
        np.testing.assert_allclose(data.forces[k], whole["forces"][:3], atol=1e-8)
        np.testing.assert_allclose(data.mm_forces[k], whole["forces"][3:] - alone["forces"], atol=1e-8)
    assert -40.0 < data.energies[0] - xtb.compute([8, 1, 1], water)["energy"] < -5.0  # a hydrogen bond
    np.testing.assert_array_equal(data.mm_species, frames.mm_species)


def test_buffer_difference_in_the_field_of_outer_charges(tmp_path):
    """Point charges beyond the buffer (mm_species 0, from buffer_clusters with outer_charges): both
    clusters are computed in their field and the Coulomb energy of I's shifted charges with them is
    subtracted (its fixed-charge forces from the forces on I); without_outer_charges keeps the labels."""
    from mlmm.data.calculators import BufferDifference, XTBCalculator
    from mlmm.data.dataset import Dataset
    from mlmm.data.labelling import label
    from mlmm.data.snapshots import buffer_clusters, without_outer_charges
    from mlmm.units import COULOMB_CONSTANT

    water = np.array([[0.0, 0.0, 0.0], [0.0957, 0.0, 0.0], [-0.024, 0.0927, 0.0]])
    near = np.array([[0.0, 0.0, 0.29], [0.0, 0.0, 0.1943], [0.0927, 0.0, 0.314]])
    far = near + [0.0, 0.0, 0.45]  # anchor 0.74 nm from I: outside a 0.5 nm buffer
    snapshots = Dataset(species=[8, 1, 1], positions=[water], mm_positions=[np.vstack([far, near])],
                        mm_charges=[[-0.5, 0.25, 0.25, -0.834, 0.417, 0.417]])  # far: switched charges
    clusters = buffer_clusters(snapshots, 0.5, [8, 1, 1], [-0.834, 0.417, 0.417], "test", {}, outer_charges=True)
    np.testing.assert_array_equal(clusters.mm_species[0], [8, 1, 1, 0, 0, 0])
    np.testing.assert_allclose(clusters.mm_positions[0], np.vstack([near, far]))
    np.testing.assert_allclose(clusters.mm_charges[0, 3:], [-0.5, 0.25, 0.25])
    data = label(clusters, tmp_path / "field.h5", BufferDifference({"program": "xtb"}), n_workers=0, progress=False)

    xtb = XTBCalculator()
    field = (far, np.array([-0.5, 0.25, 0.25]))
    whole = xtb.compute([8, 1, 1, 8, 1, 1], np.vstack([water, near]), 0, 1, *field)
    alone = xtb.compute([8, 1, 1], near, 0, 1, *field)
    charges = whole["charges"][:3] - whole["charges"][:3].sum() / 3
    delta = water[:, None] - far[None]
    distance = np.linalg.norm(delta, axis=-1)
    coulomb = COULOMB_CONSTANT * charges[:, None] * field[1][None] / distance
    assert data.energies[0] == pytest.approx(whole["energy"] - alone["energy"] - coulomb.sum(), abs=1e-8)
    np.testing.assert_allclose(data.forces[0], whole["forces"][:3] - (coulomb[..., None] * delta
                                                                       / distance[..., None] ** 2).sum(1), atol=1e-8)
    np.testing.assert_allclose(data.mm_forces[0, :3], whole["forces"][3:] - alone["forces"], atol=1e-8)
    np.testing.assert_array_equal(data.mm_forces[0, 3:], 0.0)
    vacuum = xtb.compute([8, 1, 1, 8, 1, 1], np.vstack([water, near]))["energy"]
    assert abs(data.energies[0] - (vacuum - xtb.compute([8, 1, 1], near)["energy"])) > 0.1  # the field polarizes

    trimmed = without_outer_charges(data)
    assert trimmed.outer_potential.shape == (1, 3)
    vacuum_clusters = buffer_clusters(snapshots, 0.5, [8, 1, 1], [-0.834, 0.417, 0.417], "test", {})
    assert without_outer_charges(vacuum_clusters).outer_potential is None  # no charges beyond the buffer
    np.testing.assert_array_equal(trimmed.mm_species, [[8, 1, 1]])
    np.testing.assert_allclose(trimmed.mm_forces[0], data.mm_forces[0, :3])
    assert trimmed.energies[0] == data.energies[0] and trimmed.status[0] == data.status[0]


def test_buffer_difference_for_the_charge_difference_coupling(tmp_path):
    """outer_coupling="charge-difference": the labels leave out the Coulomb energy of every cluster atom's
    charge change q(I u B) - q(B) (I's charges in I u B, B's change) with the outer charges, at fixed
    charges also from the forces on I and on B, and carry B's charge changes; the settings record it."""
    from mlmm.data.calculators import BufferDifference, XTBCalculator, make_calculator
    from mlmm.data.labelling import label
    from mlmm.data.snapshots import buffer_clusters, without_outer_charges
    from mlmm.data.dataset import Dataset
    from mlmm.units import COULOMB_CONSTANT

    water = np.array([[0.0, 0.0, 0.0], [0.0957, 0.0, 0.0], [-0.024, 0.0927, 0.0]])
    near = np.array([[0.0, 0.0, 0.29], [0.0, 0.0, 0.1943], [0.0927, 0.0, 0.314]])
    far = near + [0.0, 0.0, 0.45]
    snapshots = Dataset(species=[8, 1, 1], positions=[water], mm_positions=[np.vstack([far, near])],
                        mm_charges=[[-0.5, 0.25, 0.25, -0.834, 0.417, 0.417]])
    clusters = buffer_clusters(snapshots, 0.5, [8, 1, 1], [-0.834, 0.417, 0.417], "test", {}, outer_charges=True)
    calculator = BufferDifference({"program": "xtb"}, "charge-difference")
    assert make_calculator({"program": "buffer-difference", **calculator.settings()}).outer_coupling == \
        "charge-difference"
    data = label(clusters, tmp_path / "dq.h5", calculator, n_workers=0, progress=False)
    assert data.provenance["calculator"]["outer_coupling"] == "charge-difference"

    xtb = XTBCalculator()
    field = (far, np.array([-0.5, 0.25, 0.25]))
    cluster = np.vstack([water, near])
    whole = xtb.compute([8, 1, 1, 8, 1, 1], cluster, 0, 1, *field)
    alone = xtb.compute([8, 1, 1], near, 0, 1, *field)
    changes = np.concatenate([whole["charges"][:3], whole["charges"][3:] - alone["charges"]])
    assert abs(changes[3:]).max() > 1e-3  # the hydrogen bond moves charge within the buffer water
    delta = cluster[:, None] - far[None]
    distance = np.linalg.norm(delta, axis=-1)
    coulomb = COULOMB_CONSTANT * changes[:, None] * field[1][None] / distance
    fixed_charge_forces = (coulomb[..., None] * delta / distance[..., None] ** 2).sum(1)
    assert data.energies[0] == pytest.approx(whole["energy"] - alone["energy"] - coulomb.sum(), abs=1e-8)
    np.testing.assert_allclose(data.forces[0], whole["forces"][:3] - fixed_charge_forces[:3], atol=1e-8)
    np.testing.assert_allclose(data.mm_forces[0, :3], whole["forces"][3:] - alone["forces"] - fixed_charge_forces[3:],
                               atol=1e-8)
    np.testing.assert_allclose(data.mm_charge_changes[0], np.concatenate([changes[3:], np.zeros(3)]), atol=1e-12)
    trimmed = without_outer_charges(data)
    np.testing.assert_allclose(trimmed.mm_charge_changes[0], changes[3:], atol=1e-12)
    # the outer charges' potential at I and B (kJ/mol/e) is kept: with the coupled charges it gives the subtracted term
    potential = np.concatenate([trimmed.outer_potential[0], trimmed.mm_outer_potential[0]])
    np.testing.assert_allclose(potential, COULOMB_CONSTANT * (field[1][None] / distance).sum(1), rtol=1e-12)
    assert (changes * potential).sum() == pytest.approx(coulomb.sum(), rel=1e-12)
    with pytest.raises(ValueError, match="outer_coupling"):
        BufferDifference({"program": "xtb"}, "polarization")


def test_snapshot_sets_are_made_once_and_labelled_in_and_out_of_their_charges(tmp_path):
    """label_snapshot_set keeps the frames it made, so a second call (a resumed labelling) makes none and
    labels the same frames; its two files against direct xTB runs with and without the point charges; a set
    of another kind (extra training frames) has files of its own."""
    from mlmm.data.dataset import Dataset
    from mlmm.data.recipes import label_snapshot_set

    water = np.array([[0.0, 0.0, 0.0], [0.0957, 0.0, 0.0], [-0.024, 0.0927, 0.0]])
    charges = np.array([[0.0, 0.0, 0.29], [0.0, 0.0, 0.1943], [0.0927, 0.0, 0.314]])
    made = []

    def make_frames():
        made.append(len(made))
        return Dataset(species=[8, 1, 1], positions=[water, water * 1.02], mm_positions=[charges, charges + 0.01],
                       mm_charges=[[-0.834, 0.417, 0.417]] * 2)

    embedded, vacuum = label_snapshot_set(make_frames, XTBCalculator(), tmp_path, "water")
    again, _ = label_snapshot_set(make_frames, XTBCalculator(), tmp_path, "water")
    assert made == [0] and (tmp_path / "water-held-out-snapshots.h5").exists()
    np.testing.assert_array_equal(again.energies, embedded.energies)
    extra, _ = label_snapshot_set(make_frames, XTBCalculator(), tmp_path, "water", "extra")
    assert made == [0, 1] and (tmp_path / "water-extra-gfn2-vacuum.h5").exists()
    np.testing.assert_array_equal(extra.energies, embedded.energies)
    xtb = XTBCalculator()
    for k, scale in enumerate((1.0, 1.02)):
        in_field = xtb.compute([8, 1, 1], water * scale, mm_positions=charges + 0.01 * k,
                               mm_charges=[-0.834, 0.417, 0.417])
        assert embedded.energies[k] == pytest.approx(in_field["energy"], abs=1e-6)
        assert vacuum.energies[k] == pytest.approx(xtb.compute([8, 1, 1], water * scale)["energy"], abs=1e-6)
    assert (embedded.energies - vacuum.energies).max() < -1.0  # the charges donate a hydrogen bond
