"""Rates of a replica ensemble's trajectories (the `mlmm rate` command).

Reads the ensemble summary (``ensemble.json`` written by :func:`mlmm.bridge.ensemble.run_ensemble`), computes
a collective variable for every finished replica, pools the replicas of each temperature into one rate
(:func:`mlmm.analysis.rates.transition_rate`) and fits Arrhenius and Eyring laws across temperatures.
:func:`include_earlier` adds the counts of an earlier output for other seeds, so that an ensemble can grow
in batches whose trajectories are not all kept; :func:`compare_rates` sets the rates against those of another
output (another solvent or embedding) as ratios with exact intervals.
"""

from __future__ import annotations

import json
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple

import numpy as np

from mlmm.analysis.correlation import frame_interval
from mlmm.analysis.rates import Rate, distance, distance_difference, rate_ratio, transition_rate
from mlmm.analysis.trajectory import read_trajectory

if TYPE_CHECKING:
    from mlmm.bridge.ensemble import Replica


@dataclass(frozen=True)
class CollectiveVariable:
    """The mean of proton-transfer coordinates d(D-H) - d(H-A) over ``protons`` (donor, hydrogen, acceptor)
    and of distances over ``distances`` (atom pairs), in nm, minimum image in periodic boxes."""

    protons: Tuple[Tuple[int, int, int], ...] = ()
    distances: Tuple[Tuple[int, int], ...] = ()

    def __post_init__(self):
        if not self.protons and not self.distances:
            raise ValueError("the collective variable needs at least one proton (donor, hydrogen, acceptor) or "
                             "one distance (atom pair)")

    def __call__(self, positions: np.ndarray, boxes: Optional[np.ndarray] = None) -> np.ndarray:
        terms = [distance_difference(positions, (d, h), (h, a), boxes=boxes) for d, h, a in self.protons]
        terms += [distance(positions, i, j, boxes=boxes) for i, j in self.distances]
        return np.mean(terms, axis=0)


@dataclass
class EnsembleRates:
    """Per temperature (K): the pooled rate, the seeds of the replicas used, how many replicas were left out
    (not finished or missing) and the interval between saved frames (ps)."""

    temperatures: list = field(default_factory=list)
    rates: list = field(default_factory=list)
    seeds: list = field(default_factory=list)
    left_out: list = field(default_factory=list)
    frame_intervals: list = field(default_factory=list)


def finished_replicas(summary: Path, members: Optional[Sequence["Replica"]] = None
                      ) -> Tuple[Dict[float, List[dict]], Dict[float, int]]:
    """The finished replicas' rows of ``summary`` per temperature (K), and how many were left out per
    temperature (not finished, or not in the summary).

    ``members``: the replicas to use, those of the ensemble configuration
    (:func:`mlmm.bridge.ensemble.replicas`; the summary also lists those of other configurations run in
    the same directory), matched by name. Default: every replica in the summary.
    """
    if not Path(summary).is_file():
        raise ValueError(f"no ensemble summary at {summary}: run `mlmm ensemble` with this configuration first")
    rows = json.loads(Path(summary).read_text())["replicas"]
    if members is not None:
        listed = {row["name"]: row for row in rows}
        rows = [listed.get(m.name, {"temperature_K": m.temperature_K, "state": "missing"}) for m in members]
    finished, left_out = defaultdict(list), defaultdict(int)
    for row in rows:
        if row["state"] == "finished":
            finished[row["temperature_K"]].append(row)
        else:
            left_out[row["temperature_K"]] += 1
    if not finished:
        raise ValueError(f"no replica in {summary} has finished; run the ensemble first (states: "
                         f"{sorted({row['state'][:40] for row in rows})})")
    return finished, left_out


def ensemble_rates(summary: Path, variable: CollectiveVariable, bounds: Sequence[Tuple[float, float]],
                   reactant: Optional[int] = None, product: Optional[int] = None,
                   confidence: float = 0.95, members: Optional[Sequence["Replica"]] = None,
                   min_residence: float = 0.0) -> EnsembleRates:
    """Rates per temperature from the finished replicas (:func:`finished_replicas` of ``summary`` and
    ``members``; see the module docstring), counting transitions whose new state lasts ``min_residence`` ps
    (:func:`mlmm.analysis.rates.transition_rate`)."""
    groups, left_out = finished_replicas(summary, members)
    result = EnsembleRates()
    for temperature in sorted(groups):
        trajectories, intervals = [], set()
        for row in groups[temperature]:
            data = read_trajectory(row["trajectory"], Path(row["directory"]) / "topology.pdb")
            trajectories.append(variable(data.positions, data.boxes))
            intervals.add(round(frame_interval(data.times, len(data.times)), 9))
        if len(intervals) != 1:
            raise ValueError(f"the replicas at {temperature} K save frames at different intervals "
                             f"{sorted(intervals)} ps")
        interval = intervals.pop()
        result.temperatures.append(temperature)
        result.rates.append(transition_rate(trajectories, interval, bounds, reactant, product, confidence,
                                            min_residence))
        result.seeds.append(sorted(row["seed"] for row in groups[temperature]))
        result.left_out.append(left_out.get(temperature, 0))
        result.frame_intervals.append(interval)
    skipped = sum(n for t, n in left_out.items() if t not in groups)
    if skipped:
        warnings.warn(f"{skipped} replicas at temperatures without a finished replica were left out", stacklevel=2)
    return result


def rate_table(result: EnsembleRates) -> list[dict]:
    """JSON-ready rows: temperature, replicas used (and their seeds) and left out, frame interval (ps), and
    the rate's fields (:func:`rate_fields`)."""
    return [{"temperature_K": t, "replicas": len(seeds), "left_out": m, **rate_fields(r),
             "frame_interval_ps": dt, "seeds": seeds}
            for t, r, seeds, m, dt in zip(result.temperatures, result.rates, result.seeds, result.left_out,
                                          result.frame_intervals)]


def rate_fields(rate: Rate) -> dict:
    """A rate's JSON fields: transitions, time (ps), rate and interval (1/ps), confidence."""
    return {"transitions": rate.transitions, "time_ps": rate.time, "rate_per_ps": rate.rate,
            "lower_per_ps": rate.lower, "upper_per_ps": rate.upper, "confidence": rate.confidence}


def row_rate(row: dict) -> Rate:
    """The rate of a :func:`rate_table` row."""
    return Rate.counted(row["transitions"], row["time_ps"], row["confidence"])


def read_rates(path: Path, option: str = "--include") -> dict:
    """Another ``mlmm rate`` output (JSON), for :func:`include_earlier` or :func:`compare_rates`; errors name
    the command-line ``option`` and the file."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{option} {path}: no such file")
    try:
        content = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{option} {path}: not JSON ({error}); give an output of mlmm rate") from None
    if not isinstance(content, dict) or not isinstance(content.get("rates"), list):
        raise ValueError(f"{option} {path}: no list of rates; give an output of mlmm rate")
    return content


def strict_json(value):
    """``value`` (nested dicts, lists, numbers) with every non-finite float replaced by None, so that it is
    written as standard JSON (``null``): NaN and Infinity, which Python's json writes by default, are not
    JSON and break strict readers (an infinite ratio bound where the second rate counted nothing, the chi^2
    per degree of freedom of a fit through two temperatures)."""
    if isinstance(value, dict):
        return {key: strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(item) for item in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


#: Settings that outputs written before they existed lack, with the value those outputs were counted with.
SETTINGS_BEFORE_THEY_WERE_RECORDED = {"min_residence_ps": 0.0}


def _check_counted_alike(other: dict, settings: dict, source: str, verb: str) -> None:
    """Refuse an output (read from ``source``) whose collective variable, states, direction or minimum
    residence differ."""
    for key, value in settings.items():
        theirs = other.get(key, SETTINGS_BEFORE_THEY_WERE_RECORDED.get(key))
        if theirs != json.loads(json.dumps(value)):
            raise ValueError(f"{source} has {key} = {theirs!r}, this call {value!r}: {verb} only rates counted the "
                             "same way")


def _check_same_resolution(other: dict, mine: dict, source: str) -> None:
    """Refuse a row of another output (read from ``source``) whose frame interval or confidence differ from
    those of this call's row at the same temperature."""
    for key in ("frame_interval_ps", "confidence"):
        if other.get(key) != mine[key]:
            raise ValueError(f"{source} has {key} = {other.get(key)} at {mine['temperature_K']} K, this call "
                             f"{mine[key]}")


def include_earlier(rows: list[dict], earlier: dict, settings: dict, source: str) -> list[dict]:
    """:func:`rate_table` ``rows`` with the transitions and time of an earlier ``mlmm rate`` output of other
    replicas of the same run added at every temperature, for replicas whose trajectories are no longer kept.

    ``earlier``: the output read from ``source`` (named in errors); ``settings``: this call's
    ``collective_variable``, ``reactant_nm``, ``product_nm`` and ``one_way``, which the earlier output must
    share, as it must the frame interval and confidence. Its replicas' seeds must differ from those of
    ``rows`` at every temperature, so no replica is counted twice.
    """
    _check_counted_alike(earlier, settings, source, "pool")
    pooled = {row["temperature_K"]: dict(row) for row in rows}
    for row in earlier["rates"]:
        temperature = row["temperature_K"]
        if "seeds" not in row or "frame_interval_ps" not in row:
            raise ValueError(f"{source} does not list the seeds and frame interval at {temperature} K, so "
                             "replicas counted twice could not be ruled out")
        mine = pooled.setdefault(temperature, dict(row, transitions=0, time_ps=0.0, replicas=0, left_out=0,
                                                   seeds=[]))
        twice = sorted(set(mine["seeds"]) & set(row["seeds"]))
        if twice:
            raise ValueError(f"{source} counts the replicas of seeds {twice} at {temperature} K again")
        _check_same_resolution(row, mine, source)
        mine.update(replicas=mine["replicas"] + row["replicas"], left_out=mine["left_out"] + row["left_out"],
                    seeds=sorted(mine["seeds"] + row["seeds"]),
                    **rate_fields(Rate.counted(mine["transitions"] + row["transitions"],
                                               mine["time_ps"] + row["time_ps"], row["confidence"])))
    return [pooled[temperature] for temperature in sorted(pooled)]


def compare_rates(rows: list[dict], other: dict, settings: dict, source: str) -> list[dict]:
    """The ratio of the rates of ``rows`` (:func:`rate_table`) to those of another ``mlmm rate`` output (e.g.
    the same reaction in another solvent or embedding) at every temperature both have, with its exact
    interval and the p-value of equal rates (:func:`mlmm.analysis.rates.rate_ratio`).

    ``other``: the output read from ``source`` (named in errors); it must count transitions the same way
    (``settings`` as for :func:`include_earlier`) and at the same frame interval and confidence.
    """
    _check_counted_alike(other, settings, source, "compare")
    theirs = {row["temperature_K"]: row for row in other["rates"]}
    ratios = []
    for row in rows:
        temperature = row["temperature_K"]
        if temperature not in theirs:
            continue
        _check_same_resolution(theirs[temperature], row, source)
        ratio = rate_ratio(row_rate(row), row_rate(theirs[temperature]), row["confidence"])
        ratios.append({"temperature_K": temperature, "ratio": ratio.ratio, "lower": ratio.lower,
                       "upper": ratio.upper, "p_value_equal_rates": ratio.p_value, "confidence": ratio.confidence})
    if not ratios:
        temperatures = ", ".join(f"{row['temperature_K']:g}" for row in rows)
        raise ValueError(f"{source} has no rate at the temperatures of this call ({temperatures} K)")
    return ratios
