"""Reaction rates from trajectories: collective variables, states with hysteresis, transition counts,
Poisson confidence intervals and Arrhenius/Eyring fits (PHYSICS.md section 5).

Units: positions and box vectors nm, times ps, rates 1/ps, temperatures K, energies kJ/mol,
entropies J/mol/K.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np
import scipy.constants
import scipy.stats

from mlmm.analysis.dipoles import lattice_shift_nm
from mlmm.units import MOLAR_GAS_CONSTANT

__all__ = ["distance", "distance_difference", "committed_states", "drop_short_visits", "count_transitions", "Rate",
           "transition_rate",
           "RateRatio", "rate_ratio",
           "poisson_interval", "ArrheniusFit", "arrhenius_fit", "EyringFit", "eyring_fit"]

#: Boltzmann constant over Planck constant, 1/(ps K): the prefactor kT/h of transition-state theory.
BOLTZMANN_OVER_PLANCK_PER_PS_K = scipy.constants.k / scipy.constants.h * 1e-12
UNCOMMITTED = -1


def distance(positions, i: int, j: int, boxes=None) -> np.ndarray:
    """Distance |r_j - r_i| (nm) per frame of ``positions`` [frames, atoms, 3], minimum image when ``boxes``
    ([3, 3] or [frames, 3, 3], reduced boxes, rows nm) are given."""
    positions = np.asarray(positions, dtype=np.float64)
    if positions.ndim != 3 or positions.shape[2] != 3:
        raise ValueError(f"positions must have shape [frames, atoms, 3] in nm, got {positions.shape}")
    for index in (i, j):
        if not -positions.shape[1] <= index < positions.shape[1]:
            raise ValueError(f"atom index {index} is out of range for {positions.shape[1]} atoms")
    vectors = positions[:, j] - positions[:, i]
    if boxes is not None:
        boxes = np.asarray(boxes, dtype=np.float64)
        if boxes.ndim == 2:
            vectors = vectors + lattice_shift_nm(vectors, boxes)
        else:
            vectors = vectors + np.concatenate([lattice_shift_nm(v[None], box) for v, box in zip(vectors, boxes)])
    return np.linalg.norm(vectors, axis=1)


def distance_difference(positions, first: Tuple[int, int], second: Tuple[int, int], boxes=None) -> np.ndarray:
    """d(first) - d(second) (nm) per frame, e.g. d(O1-H) - d(O2-H) for a proton between two oxygens."""
    return distance(positions, *first, boxes=boxes) - distance(positions, *second, boxes=boxes)


def committed_states(cv, bounds: Sequence[Tuple[float, float]]) -> np.ndarray:
    """State index per frame with hysteresis: a frame belongs to the last state whose interval it entered.

    ``bounds`` are the states' closed intervals (low, high) of the collective variable (use -inf/inf for
    open ends); they must not overlap. Frames between intervals keep the last state entered (so noise
    around a dividing line counts no transitions); frames before the first entry are -1 (uncommitted).
    """
    cv = np.asarray(cv, dtype=np.float64)
    if cv.ndim != 1:
        raise ValueError(f"the collective variable must be one value per frame, got shape {cv.shape}")
    if not np.all(np.isfinite(cv)):
        raise ValueError(f"the collective variable has NaN or infinite values (frames "
                         f"{np.flatnonzero(~np.isfinite(cv))[:5].tolist()}...)")
    intervals = sorted((float(low), float(high), k) for k, (low, high) in enumerate(bounds))
    if len(intervals) < 2 or any(low > high for low, high, _ in intervals):
        raise ValueError(f"need at least two states given as (low, high) intervals, got {list(bounds)}")
    for (_, high, a), (low, _, b) in zip(intervals, intervals[1:]):
        if low <= high:
            raise ValueError(f"states {a} and {b} overlap ({bounds[a]} and {bounds[b]}): hysteresis needs a gap "
                             "between the intervals")
    inside = np.full(cv.shape, UNCOMMITTED)
    for low, high, k in intervals:
        inside[(cv >= low) & (cv <= high)] = k
    entered = np.flatnonzero(inside != UNCOMMITTED)
    states = np.full(cv.shape, UNCOMMITTED)
    if entered.size:
        # forward fill: every frame takes the state of the last frame that was inside an interval
        last = np.maximum.accumulate(np.where(inside != UNCOMMITTED, np.arange(cv.size), -1))
        states[entered[0]:] = inside[last[entered[0]:]]
    return states


def drop_short_visits(states: np.ndarray, min_frames: int) -> np.ndarray:
    """Committed states (:func:`committed_states`) with every visit shorter than ``min_frames`` frames undone.

    A visit counts once the trajectory has stayed ``min_frames`` frames in the new state; a shorter one (a
    recrossing) is given to the state the trajectory was committed to before it, so A -> B -> A within the
    time is no transition, and the transitions left are separate events, as a Poisson interval assumes. A
    short first visit stays uncommitted (-1), and so do the last ``min_frames - 1`` frames: a visit starting
    there could not be confirmed, so that time is left out rather than counted without its transitions.
    """
    states = np.array(states, copy=True)
    if min_frames <= 1:
        return states
    confirmable = max(states.size - min_frames + 1, 0)
    starts = np.concatenate([[0], np.flatnonzero(states[1:] != states[:-1]) + 1])
    ends = np.append(starts[1:], states.size)
    current = UNCOMMITTED
    for start, end in zip(starts, ends):
        if states[start] != current and end - start < min_frames:
            states[start:end] = current
        else:
            current = states[start]
    states[confirmable:] = UNCOMMITTED
    return states


def count_transitions(states: np.ndarray, n_states: int) -> Tuple[np.ndarray, np.ndarray]:
    """Transitions and residence of one trajectory of committed states.

    Returns
    -------
    counts : ndarray [n_states, n_states]
        counts[a, b]: changes of the committed state from a to b.
    frames_in : ndarray [n_states]
        Frames spent committed to each state; transitions out of a state happen during this time.
    """
    states = np.asarray(states)
    committed = states[states != UNCOMMITTED]
    counts = np.zeros((n_states, n_states), dtype=np.int64)
    change = np.flatnonzero(committed[1:] != committed[:-1])
    np.add.at(counts, (committed[change], committed[change + 1]), 1)
    return counts, np.bincount(committed, minlength=n_states)[:n_states]


def poisson_interval(events: int, confidence: float = 0.95) -> Tuple[float, float]:
    """Garwood's exact confidence interval (lower, upper) for the mean of a Poisson count of ``events``."""
    if events < 0 or not 0 < confidence < 1:
        raise ValueError(f"need events >= 0 and 0 < confidence < 1, got {events}, {confidence}")
    tail = 0.5 * (1.0 - confidence)
    lower = 0.5 * scipy.stats.chi2.ppf(tail, 2 * events) if events > 0 else 0.0
    return float(lower), float(0.5 * scipy.stats.chi2.ppf(1.0 - tail, 2 * events + 2))


@dataclass(frozen=True)
class Rate:
    """A rate constant k = transitions / time with its Poisson confidence interval.

    Attributes
    ----------
    rate, lower, upper : float
        1/ps.
    transitions : int
        Transitions counted (over all trajectories).
    time : float
        ps spent committed to the reactant state(s), over all trajectories.
    confidence : float
        Coverage of [lower, upper].
    """

    rate: float
    lower: float
    upper: float
    transitions: int
    time: float
    confidence: float

    @classmethod
    def counted(cls, transitions: int, time: float, confidence: float = 0.95) -> "Rate":
        """The rate of ``transitions`` in ``time`` ps, with Garwood's interval."""
        lower, upper = poisson_interval(transitions, confidence)
        return cls(transitions / time, lower / time, upper / time, transitions, time, confidence)


def transition_rate(trajectories: Sequence, timestep: float, bounds: Sequence[Tuple[float, float]],
                    reactant: Optional[int] = None, product: Optional[int] = None,
                    confidence: float = 0.95, min_residence: float = 0.0) -> Rate:
    """Rate constant from one or many trajectories of a collective variable (replicas are pooled).

    k(reactant -> product) = n(reactant -> product) / t(reactant), with t the time committed to the
    reactant; by default every transition over the time committed to any state, k = n / t_total.

    Parameters
    ----------
    trajectories : sequence of arrays [frames]
        The collective variable of each trajectory (or a single array), saved every ``timestep``.
    timestep : float
        ps between saved values; the saving interval must resolve the shortest visit (faster
        recrossings are missed).
    bounds : sequence of (low, high)
        The states' intervals (see :func:`committed_states`).
    reactant, product : int, optional
        State indices; both or neither.
    confidence : float
        Coverage of Garwood's interval.
    min_residence : float
        ps a new state must be kept for the transition to count (:func:`drop_short_visits`); 0 counts every
        change of the committed state, recrossings included.
    """
    if isinstance(trajectories, np.ndarray) and trajectories.ndim == 1:
        trajectories = [trajectories]
    if not timestep > 0:
        raise ValueError(f"timestep must be positive, got {timestep} ps")
    if (reactant is None) != (product is None):
        raise ValueError("give both reactant and product state indices, or neither (all transitions)")
    if not min_residence >= 0:
        raise ValueError(f"min_residence must be >= 0 ps, got {min_residence}")
    min_frames = int(np.ceil(min_residence / timestep - 1e-9))
    counts = np.zeros((len(bounds), len(bounds)), dtype=np.int64)
    frames_in = np.zeros(len(bounds), dtype=np.int64)
    for cv in trajectories:
        states = drop_short_visits(committed_states(cv, bounds), min_frames)
        trajectory_counts, trajectory_frames = count_transitions(states, len(bounds))
        counts += trajectory_counts
        frames_in += trajectory_frames
    if reactant is None:
        events, frames = int(counts.sum()), int(frames_in.sum())
    else:
        events, frames = int(counts[reactant, product]), int(frames_in[reactant])
    if frames == 0:
        raise ValueError("no frame was committed to the reactant state(s): check the state bounds against the "
                         f"collective variable's range ({min(float(np.min(cv)) for cv in trajectories):.4g} to "
                         f"{max(float(np.max(cv)) for cv in trajectories):.4g})")
    return Rate.counted(events, frames * float(timestep), confidence)


@dataclass(frozen=True)
class RateRatio:
    """How much faster one rate is than another: k_1 / k_2 with an exact confidence interval.

    Attributes
    ----------
    ratio, lower, upper : float
        k_1 / k_2 and its interval (upper is inf when the second rate counted no transition; ratio is nan
        when neither did).
    p_value : float
        Two-sided, of the hypothesis k_1 = k_2.
    confidence : float
        Coverage of [lower, upper].
    """

    ratio: float
    lower: float
    upper: float
    p_value: float
    confidence: float


def rate_ratio(first: Rate, second: Rate, confidence: float = 0.95) -> RateRatio:
    """k_1 / k_2 of two independently counted rates, with the conditional binomial (exact) interval.

    Given n = n_1 + n_2 transitions in all, n_1 is binomial with p = r t_1 / (r t_1 + t_2), where r is
    the rate ratio and t the times: the Clopper-Pearson interval of p maps to r = p t_2 / ((1 - p) t_1),
    and the equal-tailed binomial test of p = t_1 / (t_1 + t_2) gives the p-value of r = 1 (below
    1 - ``confidence`` exactly when the interval leaves out 1). Covers r with at least ``confidence``
    whatever the counts.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"need 0 < confidence < 1, got {confidence}")
    if not (first.time > 0 and second.time > 0):
        raise ValueError(f"both rates need a positive time, got {first.time} and {second.time} ps")
    n_1, n_2 = int(first.transitions), int(second.transitions)
    odds = second.time / first.time  # r = odds * p / (1 - p)
    tail = 0.5 * (1.0 - confidence)
    p_low = scipy.stats.beta.ppf(tail, n_1, n_2 + 1) if n_1 > 0 else 0.0
    p_high = scipy.stats.beta.ppf(1.0 - tail, n_1 + 1, n_2) if n_2 > 0 else 1.0
    lower = odds * p_low / (1.0 - p_low)
    upper = odds * p_high / (1.0 - p_high) if p_high < 1.0 else np.inf
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.float64(first.rate) / np.float64(second.rate)
    binomial = scipy.stats.binom(n_1 + n_2, first.time / (first.time + second.time))  # of n_1 when r = 1
    p_value = min(1.0, 2.0 * min(binomial.cdf(n_1), binomial.sf(n_1 - 1)))
    return RateRatio(float(ratio), float(lower), float(upper), float(p_value), confidence)


@dataclass(frozen=True)
class ArrheniusFit:
    """k(T) = A exp(-Ea / RT), fitted to ln k with weights from the rates' confidence intervals.

    Attributes
    ----------
    activation_energy, activation_energy_error : float
        Ea and its standard error (kJ/mol).
    ln_prefactor, ln_prefactor_error : float
        ln(A / ps^-1) and its standard error.
    covariance : ndarray [2, 2]
        Of (Ea, ln A).
    chi2_per_dof : float
        Misfit of the straight line against the rates' errors (NaN with two temperatures).
    """

    activation_energy: float
    activation_energy_error: float
    ln_prefactor: float
    ln_prefactor_error: float
    covariance: np.ndarray
    chi2_per_dof: float

    def rate(self, temperature) -> np.ndarray:
        """k(T) in 1/ps from the fitted parameters."""
        return np.exp(self.ln_prefactor - self.activation_energy / (MOLAR_GAS_CONSTANT * np.asarray(temperature)))


@dataclass(frozen=True)
class EyringFit:
    """k(T) = (kT/h) exp(dS/R) exp(-dH / RT) (transmission coefficient 1), fitted to ln(k/T).

    Attributes
    ----------
    enthalpy, enthalpy_error : float
        Activation enthalpy dH and its standard error (kJ/mol).
    entropy, entropy_error : float
        Activation entropy dS and its standard error (J/mol/K).
    chi2_per_dof : float
        Misfit of the straight line against the rates' errors (NaN with two temperatures).
    """

    enthalpy: float
    enthalpy_error: float
    entropy: float
    entropy_error: float
    chi2_per_dof: float

    def free_energy(self, temperature: float) -> float:
        """Activation free energy dG = dH - T dS (kJ/mol) at ``temperature`` (K)."""
        return self.enthalpy - temperature * self.entropy * 1e-3


def arrhenius_fit(temperatures: Sequence[float], rates: Sequence[Rate]) -> ArrheniusFit:
    """Weighted straight line through ln k against 1/T (see :class:`ArrheniusFit`)."""
    x, ln_k, sigma = _log_rates(temperatures, rates)
    slope, intercept, covariance, chi2 = _weighted_line(x, ln_k, sigma)
    scale = np.diag([-MOLAR_GAS_CONSTANT, 1.0])  # Ea = -R slope
    covariance = scale @ covariance @ scale
    return ArrheniusFit(-MOLAR_GAS_CONSTANT * slope, float(np.sqrt(covariance[0, 0])), intercept,
                        float(np.sqrt(covariance[1, 1])), covariance, chi2)


def eyring_fit(temperatures: Sequence[float], rates: Sequence[Rate]) -> EyringFit:
    """Weighted straight line through ln(k/T) against 1/T (see :class:`EyringFit`)."""
    x, ln_k, sigma = _log_rates(temperatures, rates)
    slope, intercept, covariance, chi2 = _weighted_line(x, ln_k + np.log(x), sigma)  # ln(k/T) = ln k + ln(1/T)
    entropy = 1e3 * MOLAR_GAS_CONSTANT * (intercept - np.log(BOLTZMANN_OVER_PLANCK_PER_PS_K))
    return EyringFit(-MOLAR_GAS_CONSTANT * slope, MOLAR_GAS_CONSTANT * float(np.sqrt(covariance[0, 0])),
                     float(entropy), 1e3 * MOLAR_GAS_CONSTANT * float(np.sqrt(covariance[1, 1])), chi2)


def _log_rates(temperatures, rates) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """1/T (1/K), ln k and its standard error, taken from each rate's interval as if it were normal in ln k."""
    temperatures = np.asarray(temperatures, dtype=np.float64)
    if temperatures.ndim != 1 or len(temperatures) != len(rates) or len(rates) < 2:
        raise ValueError(f"need one rate per temperature at two or more temperatures, got {len(temperatures)} "
                         f"temperatures and {len(rates)} rates")
    if not np.all(temperatures > 0) or len(np.unique(temperatures)) != len(temperatures):
        raise ValueError(f"temperatures must be positive and distinct (K), got {temperatures.tolist()}")
    empty = [float(t) for t, rate in zip(temperatures, rates) if rate.transitions == 0]
    if empty:
        raise ValueError(f"no transitions were counted at {empty} K: ln k is undefined there; run longer or "
                         "leave those temperatures out")
    z = scipy.stats.norm.ppf(0.5 + 0.5 * np.array([rate.confidence for rate in rates]))
    sigma = np.log([rate.upper / rate.lower for rate in rates]) / (2.0 * z)
    return 1.0 / temperatures, np.log([rate.rate for rate in rates]), sigma


def _weighted_line(x: np.ndarray, y: np.ndarray, sigma: np.ndarray) -> Tuple[float, float, np.ndarray, float]:
    """Slope, intercept, their covariance (from the given errors) and chi^2 per degree of freedom."""
    design = np.stack([x, np.ones_like(x)], axis=1) / sigma[:, None]
    (slope, intercept), *_ = np.linalg.lstsq(design, y / sigma, rcond=None)
    covariance = np.linalg.inv(design.T @ design)
    residual = (y - slope * x - intercept) / sigma
    dof = len(x) - 2
    return float(slope), float(intercept), covariance, float(residual @ residual / dof) if dof else float("nan")
