"""Rates of a replica ensemble's trajectories (the `mlmm rate` command).

Reads the ensemble summary (``ensemble.json`` written by :func:`mlmm.bridge.ensemble.run_ensemble`), computes
a collective variable for every finished replica, pools the replicas of each temperature into one rate
(:func:`mlmm.analysis.rates.transition_rate`) and fits Arrhenius and Eyring laws across temperatures.
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
from mlmm.analysis.rates import distance, distance_difference, transition_rate
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
    """Per temperature (K): the pooled rate, the replicas used and those left out (not finished or missing)."""

    temperatures: list = field(default_factory=list)
    rates: list = field(default_factory=list)
    replicas: list = field(default_factory=list)
    left_out: list = field(default_factory=list)


def finished_replicas(summary: Path, members: Optional[Sequence["Replica"]] = None
                      ) -> Tuple[Dict[float, List[dict]], Dict[float, int]]:
    """The finished replicas' rows of ``summary`` per temperature (K), and how many were left out per
    temperature (not finished, or not in the summary).

    ``members``: the replicas to use, those of the ensemble configuration
    (:func:`mlmm.bridge.ensemble.replicas`; the summary lists those of the last ``mlmm ensemble``
    call, which may differ), matched by name. Default: every replica in the summary.
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
                   confidence: float = 0.95, members: Optional[Sequence["Replica"]] = None) -> EnsembleRates:
    """Rates per temperature from the finished replicas (:func:`finished_replicas` of ``summary`` and
    ``members``; see the module docstring)."""
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
        rate = transition_rate(trajectories, intervals.pop(), bounds, reactant, product, confidence)
        result.temperatures.append(temperature)
        result.rates.append(rate)
        result.replicas.append(len(trajectories))
        result.left_out.append(left_out.get(temperature, 0))
    skipped = sum(n for t, n in left_out.items() if t not in groups)
    if skipped:
        warnings.warn(f"{skipped} replicas at temperatures without a finished replica were left out", stacklevel=2)
    return result


def rate_table(result: EnsembleRates) -> list[dict]:
    """JSON-ready rows: temperature, replicas used and left out, transitions, time, rate and interval."""
    return [{"temperature_K": t, "replicas": n, "left_out": m, "transitions": r.transitions, "time_ps": r.time,
             "rate_per_ps": r.rate, "lower_per_ps": r.lower, "upper_per_ps": r.upper, "confidence": r.confidence}
            for t, r, n, m in zip(result.temperatures, result.rates, result.replicas, result.left_out)]

