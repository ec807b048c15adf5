"""Rates from replicas against one long run of a double well; states with hysteresis; Arrhenius and Eyring fits."""

import json

import numpy as np
import pytest

from mlmm.analysis.rate_files import strict_json
from mlmm.analysis.rates import (BOLTZMANN_OVER_PLANCK_PER_PS_K, Rate, arrhenius_fit, committed_states,
                                 count_transitions, distance, distance_difference, drop_short_visits, eyring_fit,
                                 poisson_interval, rate_ratio, transition_rate)
from mlmm.units import MOLAR_GAS_CONSTANT

BARRIER = 3.0  # kT: V(x) = BARRIER (x^2 - 1)^2 in units of kT
STEP = 1e-3  # time step of the Brownian dynamics (units of the diffusion time)
STATES = [(-np.inf, -0.6), (0.6, np.inf)]


def brownian_double_well(steps: int, replicas: int, seed: int) -> np.ndarray:
    """Overdamped Langevin paths x [replicas, steps] in the double well (kT = D = 1), started at the minima."""
    rng = np.random.default_rng(seed)
    x = np.where(np.arange(replicas) % 2 == 0, -1.0, 1.0)
    paths = np.empty((replicas, steps))
    noise = np.sqrt(2.0 * STEP)
    for n in range(steps):
        x = x - STEP * 4.0 * BARRIER * x * (x * x - 1.0) + noise * rng.standard_normal(replicas)
        paths[:, n] = x
    return paths


def test_many_short_replicas_give_the_rate_of_one_long_run():
    long_run = brownian_double_well(600_000, 1, seed=1)[0]
    replicas = brownian_double_well(3_000, 200, seed=2)  # the same total time in 200 pieces
    long = transition_rate(long_run, STEP, STATES)
    short = transition_rate(list(replicas), STEP, STATES)
    assert long.transitions > 50 and short.transitions > 50  # enough events for the intervals to be narrow
    assert short.lower <= long.rate <= short.upper
    assert long.lower <= short.rate <= long.upper
    # and both near Kramers' high-barrier estimate sqrt(V''(min) |V''(top)|) / 2 pi exp(-barrier) = 0.135,
    # which overestimates a 3 kT barrier's rate by some 10-30 %
    kramers = np.sqrt(8.0 * BARRIER * 4.0 * BARRIER) / (2.0 * np.pi) * np.exp(-BARRIER)
    assert 0.6 * kramers < long.rate < kramers


def test_hysteresis_counts_only_committed_transitions():
    cv = np.array([0.0, -0.7, -0.1, 0.1, -0.2, 0.3, 0.7, 0.2, -0.65, 0.8])
    states = committed_states(cv, STATES)
    assert states.tolist() == [-1, 0, 0, 0, 0, 0, 1, 1, 0, 1]
    counts, frames_in = count_transitions(states, 2)
    assert counts.tolist() == [[0, 2], [1, 0]]
    assert frames_in.tolist() == [6, 3]
    forward = transition_rate(cv, 0.5, STATES, reactant=0, product=1)
    assert (forward.transitions, forward.time, forward.rate) == (2, 3.0, pytest.approx(2 / 3))
    noise = 0.5 * np.sin(np.arange(1000))  # crosses 0 hundreds of times, never reaches a state
    with pytest.raises(ValueError, match="no frame was committed"):
        transition_rate(noise, 0.1, STATES)


def test_a_minimum_residence_counts_separate_events_only():
    states = np.array([-1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 1, 0, 0])  # a 1-frame recrossing; a last visit of 2
    # the last 2 frames are left out: a visit starting there could not last 3 frames
    assert drop_short_visits(states, 3).tolist() == [-1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, -1, -1]
    assert drop_short_visits(np.array([1, 0, 0, 0]), 2).tolist() == [-1, 0, 0, -1]  # short first visit
    assert drop_short_visits(states, 1).tolist() == states.tolist()
    # A dividing surface at the barrier top without a gap counts every recrossing of the barrier region: many
    # times the rate between the wells. Undoing visits shorter than 0.1 diffusion times (2.4 relaxation times
    # 1 / V''(min) of a well) leaves the events between the wells, whose rate the wide states count directly.
    replicas = list(brownian_double_well(3_000, 200, seed=2))
    wide = transition_rate(replicas, STEP, STATES)
    at_the_top = [(-np.inf, 0.0), (1e-9, np.inf)]
    every_crossing = transition_rate(replicas, STEP, at_the_top)
    events = transition_rate(replicas, STEP, at_the_top, min_residence=0.1)
    assert every_crossing.lower > 5 * wide.upper
    assert events.lower <= wide.rate <= events.upper and wide.lower <= events.rate <= wide.upper
    with pytest.raises(ValueError, match="min_residence"):
        transition_rate(replicas, STEP, STATES, min_residence=-1.0)


def test_garwood_interval_matches_tabulated_values():
    # Garwood (1936) 95 % limits: 0 -> (0, 3.689), 1 -> (0.0253, 5.572), 10 -> (4.795, 18.39)
    assert poisson_interval(0) == pytest.approx((0.0, 3.689), abs=1e-3)
    assert poisson_interval(1) == pytest.approx((0.0253, 5.572), abs=1e-3)
    assert poisson_interval(10) == pytest.approx((4.795, 18.39), abs=1e-2)


def test_arrhenius_errors_cover_the_true_activation_energy_as_often_as_they_claim():
    # counts drawn from Poisson around an exact Arrhenius law, fitted 400 times
    rng = np.random.default_rng(3)
    temperatures, time = np.array([280.0, 300.0, 320.0, 340.0]), 1000.0  # K, ps
    activation, ln_prefactor = 15.0, np.log(20.0)  # kJ/mol, ln(1/ps): 32 to 99 transitions per temperature
    expected = np.exp(ln_prefactor - activation / (MOLAR_GAS_CONSTANT * temperatures)) * time
    inside, chi2 = 0, []
    for _ in range(400):
        rates = [_rate(n, time) for n in rng.poisson(expected)]
        fit = arrhenius_fit(temperatures, rates)
        inside += abs(fit.activation_energy - activation) < fit.activation_energy_error
        chi2.append(fit.chi2_per_dof)
    assert 0.60 < inside / 400 < 0.76  # a 1-sigma error bar covers the truth about 68 % of the time
    assert 0.8 < np.mean(chi2) < 1.2
    assert fit.rate(300.0) == pytest.approx(expected[1] / time, rel=0.2)


def test_eyring_fit_recovers_the_activation_enthalpy_and_entropy():
    temperatures = np.array([250.0, 300.0, 350.0, 400.0])
    enthalpy, entropy = 40.0, -12.0  # kJ/mol, J/mol/K
    exact = (BOLTZMANN_OVER_PLANCK_PER_PS_K * temperatures * np.exp(entropy / (1e3 * MOLAR_GAS_CONSTANT))
             * np.exp(-enthalpy / (MOLAR_GAS_CONSTANT * temperatures)))
    time = 1e7 / exact  # ten million transitions at every temperature: a nearly exact rate
    fit = eyring_fit(temperatures, [_rate(int(round(k * t)), t) for k, t in zip(exact, time)])
    assert fit.enthalpy == pytest.approx(enthalpy, abs=3 * fit.enthalpy_error)
    assert fit.entropy == pytest.approx(entropy, abs=3 * fit.entropy_error)
    assert fit.enthalpy_error < 0.1 and fit.entropy_error < 0.5
    assert fit.free_energy(300.0) == pytest.approx(enthalpy - 300.0 * entropy * 1e-3, abs=0.1)


def test_collective_variables_use_the_minimum_image():
    box = np.diag([2.0, 2.0, 2.0])
    positions = np.array([[[0.05, 0.0, 0.0], [1.95, 0.0, 0.0], [0.05, 0.3, 0.0]]])
    assert distance(positions, 0, 1) == pytest.approx([1.9])
    assert distance(positions, 0, 1, boxes=box) == pytest.approx([0.1])
    assert distance_difference(positions, (0, 1), (0, 2), boxes=box) == pytest.approx([-0.2])


def test_rate_ratio_interval_covers_the_true_ratio_as_often_as_it_claims():
    # Clopper-Pearson's tabulated 95 % limits for 5 of 10, (0.1871, 0.8129), at equal times give the ratio's
    even = rate_ratio(_rate(5, 100.0), _rate(5, 100.0))
    assert (even.ratio, even.lower, even.upper) == pytest.approx((1.0, 0.1871 / 0.8129, 0.8129 / 0.1871), rel=1e-3)
    rng = np.random.default_rng(4)
    inside, rejected = 0, 0
    for n_fast, n_slow, n_same in zip(rng.poisson(0.03 * 300.0, 2000), rng.poisson(0.01 * 1200.0, 2000),
                                      rng.poisson(0.01 * 300.0, 2000)):
        ratio = rate_ratio(_rate(n_fast, 300.0), _rate(n_slow, 1200.0))  # truly 3x faster, 9 and 12 expected
        inside += ratio.lower <= 3.0 <= ratio.upper
        rejected += rate_ratio(_rate(n_same, 300.0), _rate(n_slow, 1200.0)).p_value < 0.05  # truly equal
    assert 0.94 < inside / 2000 < 0.995  # exact intervals cover at least 95 % (up to the draws' noise of 0.5 %)
    assert rejected / 2000 < 0.065  # and the test of equal rates rejects at most 5 % of equal pairs
    for n_1, n_2 in [(12, 25), (30, 10), (0, 9), (7, 0), (3, 3)]:  # the test and the interval agree
        ratio = rate_ratio(_rate(n_1, 850.0), _rate(n_2, 3800.0))
        assert (ratio.p_value < 0.05) == (not ratio.lower <= 1.0 <= ratio.upper)
    # many transitions: the normal limit on the log ratio, exp(+-1.96 sqrt(1/n1 + 1/n2))
    large = rate_ratio(_rate(400, 100.0), _rate(900, 300.0))
    spread = 1.96 * np.sqrt(1 / 400 + 1 / 900)
    assert (large.lower, large.upper) == pytest.approx((4 / 3 * np.exp(-spread), 4 / 3 * np.exp(spread)), rel=0.02)
    none_yet = rate_ratio(_rate(0, 100.0), _rate(4, 100.0))
    assert (none_yet.ratio, none_yet.lower) == (0.0, 0.0) and 0 < none_yet.upper < np.inf
    assert rate_ratio(_rate(4, 100.0), _rate(0, 100.0)).upper == np.inf
    with pytest.raises(ValueError, match="positive time"):
        rate_ratio(_rate(4, 100.0), Rate(0.0, 0.0, np.inf, 0, 0.0, 0.95))


def test_a_ratio_to_a_rate_that_counted_nothing_is_written_as_standard_json():
    ratio = rate_ratio(Rate.counted(3, 10.0), Rate.counted(0, 10.0))
    assert np.isinf(ratio.upper) and ratio.lower > 0
    fields = {"ratios": [{"lower": ratio.lower, "upper": ratio.upper}], "chi2_per_dof": float("nan"), "replicas": 3}
    text = json.dumps(strict_json(fields), allow_nan=False)
    assert json.loads(text) == {"ratios": [{"lower": ratio.lower, "upper": None}], "chi2_per_dof": None, "replicas": 3}


def test_bad_rate_input_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="overlap"):
        committed_states(np.zeros(10), [(-1.0, 0.1), (0.0, 1.0)])
    with pytest.raises(ValueError, match="NaN"):
        committed_states(np.array([0.0, np.nan]), STATES)
    with pytest.raises(ValueError, match="out of range"):
        distance(np.zeros((2, 3, 3)), 0, 3)
    with pytest.raises(ValueError, match="both reactant and product"):
        transition_rate(np.zeros(10), 0.1, STATES, reactant=0)
    with pytest.raises(ValueError, match=r"no transitions were counted at \[300.0\] K"):
        arrhenius_fit([300.0, 350.0], [_rate(0, 10.0), _rate(5, 10.0)])
    with pytest.raises(ValueError, match="distinct"):
        arrhenius_fit([300.0, 300.0], [_rate(3, 10.0), _rate(5, 10.0)])


def _rate(events: int, time: float) -> Rate:
    lower, upper = poisson_interval(events)
    return Rate(events / time, lower / time, upper / time, events, time, 0.95)
