"""Tune the gauge test on a training half of the NAB series and report the held-out half.

`python -m bench.detection.tune_gauge` splits NAB's files in two (alternate files in name order),
scores each candidate (`gauge_persist`, `gauge_mad_factor`) on the training half by false
rollbacks on clean deploys and recall of injected steps, picks the candidate with the most
recall among those at the lowest false-rollback count, and prints the held-out figures of it
and of the current defaults. The defaults in `observer.detect.DetectorSettings` come from a run
of this script; the benchmark itself runs the defaults on every file.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from itertools import product

from bench.detection.run import GAUGE_SLI
from bench.detection.scenarios import FixturesMissing, Scenario, nab_set
from observer.detect import DEFAULT_SETTINGS, DetectorSettings, decide
from observer.observe import SliData, Windows, judge
from observer.verdict import Status


def verdict(s: Scenario, settings: DetectorSettings) -> bool:
    """Whether the Watch's evaluation calls the scenario regressed at some step."""
    n = len(s.watch)
    windows = Windows(0.0, len(s.before) * s.step, n * s.step, s.step, seasonal=(86400.0,))
    watch = tuple((float(k + 1) * s.step, p[0], p[1]) for k, p in enumerate(s.watch) if p)
    base = tuple((0.0, p[0], p[1]) for p in s.before)
    earlier = tuple((0.0, p[0], p[1]) for p in s.earlier)
    data = SliData(watch, (("before", base), ("1d", earlier)), {}, {"watch": [0, 0]}, "x")
    for k in range(n):
        result = judge(GAUGE_SLI, data, windows, (k + 1) * s.step, settings)
        if decide([GAUGE_SLI], [result], k == n - 1).status is Status.REGRESSED:
            return True
    return False


def score(scenarios: list[Scenario], settings: DetectorSettings) -> tuple[int, int, int, int]:
    """(false rollbacks, clean deploys, injected steps caught, injected steps)."""
    clean = [s for s in scenarios if s.variant == "nab-clean"]
    steps = [s for s in scenarios if s.variant == "nab-step"]
    return (
        sum(verdict(s, settings) for s in clean),
        len(clean),
        sum(verdict(s, settings) for s in steps),
        len(steps),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=20261103)
    args = parser.parse_args(argv)
    try:
        scenarios = nab_set(args.seed, 15, (1.5, 2.0, 5.0))
    except FixturesMissing as exc:
        print(f"tune_gauge: {exc}", file=sys.stderr)
        return 2
    files = sorted({s.name.rsplit("/", 2)[0] for s in scenarios})
    train_files = set(files[::2])
    train = [s for s in scenarios if s.name.rsplit("/", 2)[0] in train_files]
    held = [s for s in scenarios if s.name.rsplit("/", 2)[0] not in train_files]
    grid = [
        replace(DEFAULT_SETTINGS, gauge_persist=p, gauge_mad_factor=k)
        for p, k in product((1, 2, 3, 4, 5, 6), (3.0, 5.0, 8.0))
    ]
    scored = [(score(train, s), s) for s in grid]
    for (false, clean, hit, steps), s in scored:
        print(f"train persist={s.gauge_persist} k={s.gauge_mad_factor:g}: "
              f"false {false}/{clean}, steps caught {hit}/{steps}")  # fmt: skip
    best = min(scored, key=lambda item: (item[0][0], -item[0][2]))[1]
    previous = replace(DEFAULT_SETTINGS, gauge_persist=1, gauge_mad_factor=5.0)
    for label, s in (("chosen", best), ("defaults", DEFAULT_SETTINGS), ("previous", previous)):
        false, clean, hit, steps = score(held, s)
        print(f"held-out {label} persist={s.gauge_persist} k={s.gauge_mad_factor:g}: "
              f"false {false}/{clean}, steps caught {hit}/{steps}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
