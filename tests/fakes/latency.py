"""A stand-in's answer latency: fixed, or drawn per answer from a seeded uniform range.

Real services do not answer in a constant time; the loop benchmark asks for 100-300 ms per call.
Seeded, so a run's sequence of latencies is the same every time.
"""

from __future__ import annotations

import random


class Latency:
    """`draw()` gives `low` seconds, or with `high`, a uniform draw in [low, high]."""

    def __init__(self, low: float, high: float | None = None, seed: int = 0) -> None:
        if low < 0 or (high is not None and high < low):
            raise ValueError(f"latency range [{low}, {high}] is not a range of seconds")
        self.low = low
        self.high = low if high is None else high
        self._rng = random.Random(seed)

    def draw(self) -> float:
        return self.low if self.high == self.low else self._rng.uniform(self.low, self.high)
