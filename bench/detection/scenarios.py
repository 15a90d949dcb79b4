"""Scenarios of the detection benchmark: seeded synthetic request streams and NAB's real series.

A scenario is the data one deploy's watch would see: per-step baseline points (before the deploy
and the same window a day earlier), per-step watch points (None for a gap), the steps at which
the metrics source fails, and the truth (clean, or a regression of a given size from a given step).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

STEP = 30.0
WATCH_STEPS = 60  # 30 minutes
BASE_STEPS = 60
TRAFFIC = (0.2, 2.0, 20.0, 200.0)
BASE_RATIOS = (0.001, 0.005, 0.02)
EFFECTS = (1.25, 1.5, 2.0, 5.0, 10.0)
DAY = 86400.0

Point = tuple[float, float]  # (bad, total) for ratios; (value, 0) for gauges


@dataclass
class Scenario:
    """One deploy's watch as the detectors see it, and the truth about it."""

    name: str
    family: str  # synthetic | nab
    kind: str  # ratio | gauge
    variant: str  # plain | delayed | blip | gap | outage | drop | peak | nab-clean | ...
    effect: float  # 1.0 for clean deploys
    traffic: float  # requests per second (0 for gauges)
    base_ratio: float
    step: float
    before: list[Point]
    earlier: list[Point]  # the same watch window a day earlier
    watch: list[Point | None]
    onset: int = 0  # first regressed watch step
    outage: set[int] = field(default_factory=set)
    p0: list[float] = field(default_factory=list)  # true bad ratio per watch step (oracle)
    p1: list[float] = field(default_factory=list)

    @property
    def regression(self) -> bool:
        return self.effect > 1.0


def binomial(rng: random.Random, n: int, p: float) -> int:
    """Binomial(n, p): geometric gaps for small means, a normal approximation for large ones."""
    if n <= 0 or p <= 0:
        return 0
    mean = n * p
    if mean > 40:
        return max(0, min(n, round(rng.gauss(mean, math.sqrt(mean * (1 - p))))))
    count, position, log_q = 0, 0, math.log1p(-min(p, 0.999999))
    while True:
        position += int(math.log(1.0 - rng.random()) / log_q) + 1
        if position > n:
            return count
        count += 1


def _traffic(base: float, t: float, bursts: set[int], index: int) -> float:
    """Requests/s at time t: a daily cycle of +-40% and bursts of x3."""
    daily = 1 + 0.4 * math.sin(2 * math.pi * t / DAY)
    return base * daily * (3.0 if index in bursts else 1.0)


def synthetic(  # noqa: PLR0917 - the scenario grid's axes, in order
rng: random.Random, name: str, traffic: float, ratio: float, effect: float,
              variant: str) -> Scenario:  # fmt: skip
    """One synthetic request stream around a deploy at a random time of day."""
    deploy = rng.uniform(0, DAY)
    onset = rng.randint(10, 30) if variant == "delayed" else 0
    bursts = {rng.randint(-BASE_STEPS, WATCH_STEPS) for _ in range(3)}
    peak = variant == "peak"

    def ratio_at(t: float, k: int, watch: bool) -> float:
        r = ratio * (2.0 if peak and (t - deploy) % DAY >= 0 and (t - deploy) % DAY < 1800 else 1.0)
        if watch and k >= onset:
            r *= effect
        if variant == "blip" and watch and k == 8:
            r = min(0.5, r * 20)
        return min(r, 0.999)

    def counts(t: float, k: int, watch: bool) -> tuple[Point, float]:
        rate = _traffic(traffic, t, bursts, k) * (
            4.0 if peak and 0 <= (t - deploy) % DAY < 1800 else 1.0
        )
        if variant == "drop" and watch:
            rate *= 0.1
        n = max(0, round(rng.gauss(rate * STEP, math.sqrt(rate * STEP))))
        p = ratio_at(t, k, watch)
        return (float(binomial(rng, n, p)), float(n)), p

    before = [counts(deploy + (k - BASE_STEPS + 1) * STEP, k - BASE_STEPS, False)[0]
              for k in range(BASE_STEPS)]  # fmt: skip
    earlier = [counts(deploy - DAY + (k + 1) * STEP, k, False)[0] for k in range(WATCH_STEPS)]
    watch: list[Point | None] = []
    p0, p1 = [], []
    for k in range(WATCH_STEPS):
        point, p = counts(deploy + (k + 1) * STEP, k, True)
        watch.append(point)
        p0.append(ratio_at(deploy + (k + 1) * STEP, k, False))
        p1.append(p if effect > 1 else min(2 * p0[-1], 0.999))
    outage: set[int] = set()
    if variant == "gap":
        start = rng.randint(5, 40)
        for k in range(start, start + 6):
            watch[k] = None
    if variant == "outage":
        start = rng.randint(5, 40)
        outage = set(range(start, start + 4))  # two minutes of errors from the source
    return Scenario(name, "synthetic", "ratio", variant, effect, traffic, ratio, STEP, before,
                    earlier, watch, onset, outage, p0, p1)  # fmt: skip


def synthetic_set(seed: int, clean_reps: int, reg_reps: int) -> list[Scenario]:
    """Every traffic level x baseline ratio x effect x onset, plus clean variants."""
    rng = random.Random(seed)
    out = []
    for traffic in TRAFFIC:
        for ratio in BASE_RATIOS:
            for sli in ("errors", "slow"):
                tag = f"{sli}/{traffic}rps/{ratio:.1%}"
                for i in range(clean_reps):
                    out.append(synthetic(rng, f"{tag}/clean/{i}", traffic, ratio, 1.0, "plain"))
                for variant in ("blip", "gap", "outage", "drop", "peak"):
                    for i in range(max(1, clean_reps // 6)):
                        out.append(
                            synthetic(rng, f"{tag}/{variant}/{i}", traffic, ratio, 1.0, variant)
                        )
                for effect in EFFECTS:
                    for variant in ("plain", "delayed"):
                        for i in range(reg_reps):
                            name = f"{tag}/x{effect}/{variant}/{i}"
                            out.append(synthetic(rng, name, traffic, ratio, effect, variant))
    return out


# -- NAB ------------------------------------------------------------------------------------------

NAB_SETTING = "REARGUARD_SHARED_FIXTURES"
NAB_BASE, NAB_WATCH = 24, 12  # 2 h of baseline and 1 h of watch at NAB's 5-minute resolution


class FixturesMissing(RuntimeError):
    """The shared NAB fixtures are not where the setting says."""


def nab_dir() -> Path:
    default = Path(__file__).resolve().parents[3] / "shared" / "fixtures"
    root = Path(os.environ.get(NAB_SETTING, str(default))) / "nab"
    if not (root / "labels" / "combined_windows.json").is_file():
        raise FixturesMissing(
            f"NAB fixtures not found at {root}: set {NAB_SETTING} to the shared/fixtures folder "
            "(Numenta Anomaly Benchmark subset) to run the real-series half of the benchmark"
        )
    return root


def _parse(text: str) -> float:
    return (
        dt.datetime.fromisoformat(text.split(".", maxsplit=1)[0]).replace(tzinfo=dt.UTC).timestamp()
    )


def nab_set(seed: int, clean_per_series: int, effects: tuple[float, ...]) -> list[Scenario]:
    """Clean deploys outside labelled windows, the same with a step injected, and deploys
    placed just before a labelled anomaly window."""
    root = nab_dir()
    windows = json.loads((root / "labels" / "combined_windows.json").read_text())
    rng = random.Random(seed)
    out = []
    for path in sorted((root / "data").glob("*/*.csv")):
        key = f"{path.parent.name}/{path.name}"
        with path.open() as fh:
            rows = [(_parse(r["timestamp"]), float(r["value"])) for r in csv.DictReader(fh)]
        times = [t for t, _ in rows]
        values = [v for _, v in rows]
        step = times[1] - times[0]
        per_day = round(DAY / step)
        labelled = [(_parse(a), _parse(b)) for a, b in windows.get(key, [])]

        candidates = [
            i
            for i in range(per_day + NAB_BASE, len(rows) - NAB_WATCH)
            if _clean_at(times, labelled, i)
        ]
        for j, i in enumerate(rng.sample(candidates, min(clean_per_series, len(candidates)))):
            out.append(_nab(f"{key}/clean/{j}", values, i, per_day, step, 1.0, "nab-clean"))
            effect = effects[j % len(effects)]
            out.append(_nab(f"{key}/x{effect}/{j}", values, i, per_day, step, effect, "nab-step"))
        for j, (start, _) in enumerate(labelled):
            at = next((k for k, t in enumerate(times) if t >= start), None)
            if at is not None and per_day + NAB_BASE <= at - 2 < len(rows) - NAB_WATCH:
                out.append(_nab(f"{key}/anomaly/{j}", values, at - 2, per_day, step, math.inf,
                                "nab-anomaly"))  # fmt: skip
    return out


def _clean_at(times: list[float], labelled: list[tuple[float, float]], i: int) -> bool:
    """Whether a deploy at index i has baseline and watch clear of every labelled window."""
    lo, hi = times[i - NAB_BASE], times[min(i + NAB_WATCH, len(times) - 1)]
    return not any(a <= hi and lo <= b for a, b in labelled)


def _nab(  # noqa: PLR0917 - a scenario is built from these seven facts
name: str, values: list[float], i: int, per_day: int, step: float, effect: float,
         variant: str) -> Scenario:  # fmt: skip
    """A deploy at index i; `effect` scales the watch (inf: the labelled anomaly is the truth)."""
    scale = effect if math.isfinite(effect) else 1.0
    watch: list[Point | None] = [(v * scale, 0.0) for v in values[i : i + NAB_WATCH]]
    before = [(v, 0.0) for v in values[i - NAB_BASE : i]]
    earlier = [(v, 0.0) for v in values[i - per_day : i - per_day + NAB_WATCH]]
    return Scenario(name, "nab", "gauge", variant, effect, 0.0, 0.0, step, before, earlier, watch)
