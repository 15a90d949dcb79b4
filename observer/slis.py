"""SLI definitions: what to query and how to judge it.

A ratio SLI is two PromQL expressions giving bad events and all events per step (errors over
requests; requests slower than a threshold, from histogram buckets, over requests). A gauge SLI is
one expression (memory, CPU, queue depth). `$step` in a query is replaced by a PromQL duration:
the step (`15s`), or for a ratio SLI whose scrape interval is known the step plus one interval, so
that `increase(x[$step])` yields the events of each step once (`observer.scrape_interval`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class SliKind(StrEnum):
    RATIO = "ratio"
    GAUGE = "gauge"


class Direction(StrEnum):
    """Which way is worse: `up` (errors, latency, memory) or `down` (throughput, hit rate)."""

    UP = "up"
    DOWN = "down"


class SliError(ValueError):
    """An SLI definition is unusable; the message names the SLI and the field."""


@dataclass(frozen=True, slots=True)
class Sli:
    """One service-level indicator and the bar a deploy must clear on it.

    `tolerance` is the practical-effect floor, relative to the baseline (0.2: a change of less than
    20% is never a regression). `min_events` is the traffic below which a ratio SLI is
    inconclusive. A `critical` SLI decides the verdict alone. `version_label` turns on canary mode.
    `max_blip` (seconds; None: the detector's `blip`) is the longest burst of a ratio SLI that
    ends and is still no regression (see `observer.sequential`).
    """

    name: str
    kind: SliKind
    bad: str = ""
    total: str = ""
    query: str = ""
    direction: Direction = Direction.UP
    tolerance: float = 0.1
    min_events: int = 100
    critical: bool = True
    traffic_drop: float = 0.5
    """The share of the baseline's traffic (ratio SLIs) whose loss after the deploy raises an
    early warning (`observer.early_warning`); 0 turns that warning off."""
    version_label: str = ""
    """Canary mode when set: the label whose value names the version (the deployed sha or its
    prefix); series of other versions over the same steps are the baseline."""
    scrape_interval: float | None = None
    """Seconds between the samples of this SLI's series, when set; else learnt from them
    (`observer.scrape_interval`)."""
    max_blip: float | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise SliError("an SLI needs a name")
        if self.kind is SliKind.RATIO and not (self.bad and self.total):
            raise SliError(f"SLI {self.name!r}: a ratio SLI needs both `bad` and `total` PromQL")
        if self.kind is SliKind.GAUGE and not self.query:
            raise SliError(f"SLI {self.name!r}: a gauge SLI needs `query` PromQL")
        if self.tolerance < 0:
            raise SliError(f"SLI {self.name!r}: tolerance must be >= 0, got {self.tolerance}")
        if self.scrape_interval is not None and self.scrape_interval <= 0:
            raise SliError(f"SLI {self.name!r}: scrape_interval must be positive")
        if self.max_blip is not None and self.max_blip < 0:
            raise SliError(f"SLI {self.name!r}: max_blip must be >= 0, got {self.max_blip}")
        if not 0 <= self.traffic_drop < 1:
            raise SliError(
                f"SLI {self.name!r}: traffic_drop must be in [0, 1), got {self.traffic_drop}"
            )
        if self.min_events < 0:
            raise SliError(f"SLI {self.name!r}: min_events must be >= 0, got {self.min_events}")

    @property
    def unit(self) -> str:
        """How values of this SLI read: `ratio` shows as a percentage."""
        return "ratio" if self.kind is SliKind.RATIO else ""

    def queries(self, step: float, window: float | None = None) -> dict[str, str]:
        """The resolved PromQL per role (`bad`/`total` or `value`), `$step` substituted by
        `window` seconds (the step itself by default; see `observer.scrape_interval`)."""
        seconds = step if window is None else window
        millis = round(seconds * 1000)
        duration = f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis}ms"
        if self.kind is SliKind.RATIO:
            return {
                "bad": self.bad.replace("$step", duration),
                "total": self.total.replace("$step", duration),
            }
        return {"value": self.query.replace("$step", duration)}
