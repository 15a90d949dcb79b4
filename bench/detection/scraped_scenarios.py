"""Deploys as a real Prometheus would have scraped them: rate profiles, counters, OpenMetrics.

Each scenario is one service (its own `service` label) with a request rate and an error ratio per
second around one shared deploy time: the baseline window before it, the watch window after it,
and the same watch window a day and a week earlier (the seasonal baselines). Events are drawn
per second (Poisson requests, binomial errors) and the counters are written as OpenMetrics
samples every scrape interval, at a per-series offset inside the interval as Prometheus spreads
its targets, so `promtool tsdb create-blocks-from openmetrics` backfills what scraping keeps.

Truth per kind: `clean`, `burst`, `blip`, `peak` and `gap` are clean deploys; `ramp` and `step`
regressed from the deploy on; `vanish` and `drop` are warnings (data missing, never a rollback).
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

BASELINE = 1800  # seconds; the example config's baseline and watch windows
WATCH = 1800
SEASONS = (86400, 604800)  # the example config's seasonal baselines: a day and a week earlier
BASE_RATIO = 0.01
TRAFFIC_BUCKETS = (2.0, 5.0, 20.0, 100.0)
STEP_EFFECTS = (1.5, 2.0, 3.0)
CLEAN_KINDS = ("clean", "burst", "blip", "peak", "gap")
REGRESSED_KINDS = ("ramp", "step")
WARNING_KINDS = ("vanish", "drop")
KINDS = (*CLEAN_KINDS, *REGRESSED_KINDS, *WARNING_KINDS)


@dataclass(frozen=True)
class Scenario:
    """One deploy of one service. `rate`/`ratio` are per second over `[-BASELINE, WATCH)` from
    the deploy; `earlier_*` the same for the watch window a day and a week before; `missing`
    marks seconds with no scrape (an outage or a vanished series); `onset` is the first
    regressed or warned watch second."""

    name: str
    kind: str
    truth: str
    rps: float
    effect: float
    onset: int
    rate: np.ndarray
    ratio: np.ndarray
    earlier_rate: np.ndarray
    earlier_ratio: np.ndarray
    missing: np.ndarray
    offset: int
    detail: dict[str, float] = field(default_factory=dict)


def _profile(rps: float) -> tuple[np.ndarray, np.ndarray]:
    seconds = BASELINE + WATCH
    return np.full(seconds, rps), np.full(seconds, BASE_RATIO)


def make(rng: random.Random, kind: str, index: int, scrape: int) -> Scenario:
    """One scenario of `kind`; parameters drawn from `rng` (a held-out seed per run)."""
    rps = rng.choice(TRAFFIC_BUCKETS)
    rate, ratio = _profile(rps)
    earlier_rate, earlier_ratio = np.full(WATCH, rps), np.full(WATCH, BASE_RATIO)
    missing = np.zeros(BASELINE + WATCH, dtype=bool)
    truth, effect, onset, detail = "clean", 1.0, 0, {}
    deploy = BASELINE
    if kind == "burst":
        length = rng.choice((30, 60, 120))
        start = deploy + rng.randrange(60, WATCH // 3)
        factor = rng.choice((5.0, 10.0, 20.0))
        ratio[start : start + length] = min(BASE_RATIO * factor, 0.9)
        detail = {"burst_s": length, "factor": factor, "at_s": start - deploy}
    elif kind == "blip":
        # One 15 s step of x20 straddling a scrape: half in one scrape interval, half in the next.
        boundary = deploy + scrape * rng.randrange(4, WATCH // scrape // 2)
        ratio[boundary - 7 : boundary + 8] = min(BASE_RATIO * 20, 0.9)
        detail = {"at_s": boundary - 7 - deploy}
    elif kind == "peak":
        # The daily peak: more traffic and errors after the deploy, as at the same time yesterday.
        rate[deploy:] = rps * 1.5
        ratio[deploy:] = BASE_RATIO * 2
        earlier_rate[:] = rps * 1.5
        earlier_ratio[:] = BASE_RATIO * 2
    elif kind == "gap":
        # Prometheus down from 15% to 60% of the watch: nothing scraped meanwhile.
        missing[deploy + int(0.15 * WATCH) : deploy + int(0.6 * WATCH)] = True
    elif kind == "ramp":
        rps = 20.0
        rate[:] = rps
        ratio[deploy:] = BASE_RATIO * np.linspace(1.0, 3.0, WATCH)
        truth, effect = "regressed", 3.0
    elif kind == "step":
        effect = rng.choice(STEP_EFFECTS)
        ratio[deploy:] = BASE_RATIO * effect
        truth = "regressed"
    elif kind == "vanish":
        onset = rng.randrange(60, WATCH // 2)
        missing[deploy + onset :] = True
        truth = "warning"
    elif kind == "drop":
        onset = rng.randrange(60, WATCH // 2)
        rate[deploy + onset :] = rps * 0.1
        truth = "warning"
    return Scenario(
        f"{kind}-{index:04d}", kind, truth, rps, effect, onset, rate, ratio,
        earlier_rate, earlier_ratio, missing, rng.randrange(scrape), detail,
    )  # fmt: skip


def scenario_set(seed: int, scrape: int, per_kind: dict[str, int]) -> list[Scenario]:
    """`per_kind[kind]` scenarios of each kind; `step` is spread over every bucket and effect."""
    rng = random.Random(f"{seed}-{scrape}")
    out: list[Scenario] = []
    for kind in KINDS:
        for i in range(per_kind.get(kind, 0)):
            s = make(rng, kind, len(out), scrape)
            if kind == "step":  # cover every (bucket, effect) cell evenly
                cell = i % (len(TRAFFIC_BUCKETS) * len(STEP_EFFECTS))
                rps = TRAFFIC_BUCKETS[cell // len(STEP_EFFECTS)]
                effect = STEP_EFFECTS[cell % len(STEP_EFFECTS)]
                rate = np.full_like(s.rate, rps)
                ratio = np.concatenate(
                    [np.full(BASELINE, BASE_RATIO), np.full(WATCH, BASE_RATIO * effect)]
                )
                s = Scenario(
                    s.name, kind, s.truth, rps, effect, 0, rate, ratio, np.full(WATCH, rps),
                    np.full(WATCH, BASE_RATIO), s.missing, s.offset,
                )  # fmt: skip
            out.append(s)
    return out


@dataclass(frozen=True)
class Scraped:
    """The counters one scenario's scrapes kept: (timestamp, requests, errors) around the deploy,
    and per seasonal offset the same for the watch window that much earlier."""

    now: list[tuple[int, float, float]]
    earlier: list[list[tuple[int, float, float]]]


def scrape(s: Scenario, deployed_at: int, interval: int, seed: int) -> Scraped:
    """Draw the events per second and keep the counters at each scrape (none where missing)."""
    # crc32, not hash(): str hashes change with every process, and the draws must not.
    gen = np.random.default_rng(zlib.crc32(f"{seed}-{s.name}-{interval}".encode()))

    def counters(
        rate: np.ndarray, ratio: np.ndarray, start: int, missing: np.ndarray | None
    ) -> list[tuple[int, float, float]]:
        requests = gen.poisson(rate)
        errors = gen.binomial(requests, np.clip(ratio, 0.0, 1.0))
        req, err = np.cumsum(requests), np.cumsum(errors)
        kept = []
        for k in range(s.offset, len(rate), interval):
            if missing is not None and missing[k]:
                continue
            kept.append((start + k, float(req[k]), float(err[k])))
        return kept

    now = counters(s.rate, s.ratio, deployed_at - BASELINE, s.missing)
    earlier = [
        counters(s.earlier_rate, s.earlier_ratio, deployed_at - season, None)
        for season in sorted(SEASONS, reverse=True)
    ]
    return Scraped(now, earlier)


def openmetrics(scenarios: list[tuple[Scenario, Scraped]]) -> Iterator[str]:
    """OpenMetrics text for every scenario: `http_requests_total{service, code}` counters.

    Successes (code 200) and errors (code 500) are separate series, as a real service exports
    them; the example config's `code=~"5.."` selects the errors and the sum of both the total.
    """
    yield "# TYPE http_requests counter\n"
    for s, kept in scenarios:
        for window in (*kept.earlier, kept.now):
            for t, req, err in window:
                labels = f'service="{s.name}",code="200"'
                yield f"http_requests_total{{{labels}}} {req - err} {t}\n"
        for window in (*kept.earlier, kept.now):
            for t, _, err in window:
                labels = f'service="{s.name}",code="500"'
                yield f"http_requests_total{{{labels}}} {err} {t}\n"
    yield "# EOF\n"
