"""The ratio test's statistics carried from step to step: `RatioState`, folded one `Step` at a time.

`observer.sequential` states the test over the whole list of watch steps (`evidence`,
`heaviest_stretch`, `without_burst`, `share_evidence`): the readable definitions. This module is
their running form. For one null rate and burst width (both fixed for a Watch: they depend only
on its baselines and settings), a `RatioState` keeps the step count, the bad and total sums, per
alternative the log-LR sum with the heaviest stretch so far, the CUSUM with its start and the
heaviest stretch since that start, and the heaviest stretch at twice the null with the counts
inside it (the stretch the share test leaves out). A push costs O(burst), an evaluation O(1) in
the watch's length; `copy` lets the Watch fold its settled steps once and evaluate on a copy with
the few recent steps that may still be revised. tests/test_sequential_state.py holds the two forms
equal at every step of many series, ties and restarts included.

It also holds the pieces both forms are made of: the per-step log-LR (`LogLr`), the alternatives
(`alternatives`), their mixture (`log_mean_exp`) and the `Evidence` an evaluation yields.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from observer.detect import ALTERNATIVES

if TYPE_CHECKING:  # a type only: observer.sequential imports this module
    from observer.sequential import Step


def alternatives(p_null: float) -> list[float]:
    """The regressed rates the Watch tests against `p_null`: `ALTERNATIVES` times it."""
    rates = (min(p_null * multiple, 0.999) for multiple in ALTERNATIVES)
    return [p_alt for p_alt in rates if p_alt > p_null]


def log_mean_exp(values: Sequence[float]) -> float:
    """The log of the mean of `exp(values)`: the mixture of log-LRs with equal weights."""
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values) / len(values))


@dataclass(frozen=True, slots=True)
class LogLr:
    """The log-likelihood ratio of one step, bad rate `p_alt` against `p_null`: the weight of a
    bad event and of a good one."""

    bad_weight: float
    good_weight: float

    @classmethod
    def between(cls, p_null: float, p_alt: float) -> LogLr:
        """The weights of `p_alt` against `p_null`."""
        return cls(math.log(p_alt / p_null), math.log((1 - p_alt) / (1 - p_null)))

    def of(self, step: Step) -> float:
        """The step's log-LR (positive where it favours `p_alt`)."""
        return step.bad * self.bad_weight + max(step.total - step.bad, 0.0) * self.good_weight


@dataclass(frozen=True, slots=True)
class Evidence:
    """The two statistics at one evaluation, each with and without the blip, and where the later
    excursion started (its index among the steps and that step's `t`; NaN when none did)."""

    from_deploy: float
    from_deploy_rest: float
    excursion: float
    excursion_rest: float
    onset_index: int
    bad_since_onset: float
    total_since_onset: float
    onset_t: float = math.nan


@dataclass(slots=True)
class Stretch:
    """`heaviest_stretch` as terms arrive: the stretch `[start, end)` of at most `width` terms
    that weighs most so far, and the running sum of all terms.

    The candidate starts of the next end (the last `width` prefix sums) sit in a deque whose
    prefix sums never decrease, so its head is the earliest of the least, as `min` picks it; the
    best moves only on a strictly heavier stretch, as in the definition."""

    width: int
    terms: int = 0
    total: float = 0.0
    best: tuple[int, int, float] = (0, 0, 0.0)
    starts: deque[tuple[int, float]] = field(default_factory=deque)

    def push(self, value: float) -> bool:
        """Add the next term; whether the best stretch moved (it now ends at this term)."""
        if self.width > 0:
            while self.starts and self.starts[-1][1] > self.total:
                self.starts.pop()
            self.starts.append((self.terms, self.total))
            while self.starts[0][0] < self.terms + 1 - self.width:
                self.starts.popleft()
        self.total += value
        self.terms += 1
        if not self.starts:
            return False
        start, prefix = self.starts[0]
        if self.total - prefix > self.best[2]:
            self.best = (start, self.terms, self.total - prefix)
            return True
        return False

    def without_best(self) -> float:
        """`without_burst`: the sum of the terms less the heaviest stretch."""
        return self.total - self.best[2]

    def copy(self) -> Stretch:
        """An independent copy (O(width))."""
        return Stretch(self.width, self.terms, self.total, self.best, self.starts.copy())


@dataclass(slots=True)
class _Alternative:
    """One alternative's running statistics: from the deploy, and the CUSUM since its start."""

    llr: LogLr
    from_deploy: Stretch
    since: Stretch
    level: float = 0.0
    start: int = 0
    start_t: float = math.nan
    since_bad: float = 0.0
    since_total: float = 0.0

    def push(self, step: Step, index: int) -> None:
        value = self.llr.of(step)
        self.from_deploy.push(value)
        if self.level + value <= 0:
            # The excursion starts afresh after this step.
            self.level, self.start = 0.0, index + 1
            self.since = Stretch(self.since.width)
            self.since_bad = self.since_total = 0.0
            return
        self.level += value
        if self.since.terms == 0:
            self.start_t = step.t
        self.since.push(value)
        self.since_bad += step.bad
        self.since_total += step.total

    def copy(self) -> _Alternative:
        return _Alternative(
            self.llr,
            self.from_deploy.copy(),
            self.since.copy(),
            self.level,
            self.start,
            self.start_t,
            self.since_bad,
            self.since_total,
        )


@dataclass(slots=True)
class _LeftOut:
    """The heaviest stretch at twice the null and the bad and total counts inside it: what the
    share test leaves out. Keeps the last `width` steps to count a new best stretch."""

    llr: LogLr
    stretch: Stretch
    recent: deque[Step]
    bad: float = 0.0
    total: float = 0.0

    def push(self, step: Step) -> None:
        self.recent.append(step)
        if self.stretch.push(self.llr.of(step)):
            start, end, _ = self.stretch.best
            gone = list(self.recent)[len(self.recent) - (end - start) :]
            self.bad = sum(s.bad for s in gone)
            self.total = sum(s.total for s in gone)

    def copy(self) -> _LeftOut:
        return _LeftOut(self.llr, self.stretch.copy(), self.recent.copy(), self.bad, self.total)


@dataclass(slots=True)
class RatioState:
    """The ratio test's statistics over the steps pushed so far, for one `p_null` (None: no
    baseline could set one; only the counts are kept) and `burst` width. Build it with `start`."""

    p_null: float | None
    burst: int
    steps: int = 0
    bad: float = 0.0
    total: float = 0.0
    first_t: float = math.nan
    per_alternative: list[_Alternative] = field(default_factory=list)
    left_out: _LeftOut | None = None

    @classmethod
    def start(cls, p_null: float | None, burst: int) -> RatioState:
        """The state before any step."""
        if p_null is None:
            return cls(None, burst)
        return cls(
            p_null,
            burst,
            per_alternative=[
                _Alternative(LogLr.between(p_null, p_alt), Stretch(burst), Stretch(burst))
                for p_alt in alternatives(p_null)
            ],
            left_out=_LeftOut(
                LogLr.between(p_null, min(2 * p_null, 0.999)),
                Stretch(burst),
                deque(maxlen=burst),
            ),
        )

    def push(self, step: Step) -> None:
        """Fold in the next step (O(burst))."""
        if self.steps == 0:
            self.first_t = step.t
        for alternative in self.per_alternative:
            alternative.push(step, self.steps)
        if self.left_out is not None:
            self.left_out.push(step)
        self.steps += 1
        self.bad += step.bad
        self.total += step.total

    def copy(self) -> RatioState:
        """An independent copy: pushing on it leaves this state as it was (O(burst))."""
        return RatioState(
            self.p_null,
            self.burst,
            self.steps,
            self.bad,
            self.total,
            self.first_t,
            [alternative.copy() for alternative in self.per_alternative],
            None if self.left_out is None else self.left_out.copy(),
        )

    def evidence(self, bars: tuple[float, float] = (0.0, 0.0)) -> Evidence:
        """`observer.sequential.evidence` over the steps pushed so far."""
        if not self.per_alternative or not self.steps:
            return Evidence(0.0, 0.0, 0.0, 0.0, 0, 0.0, 0.0, self.first_t)
        from_deploy = log_mean_exp([a.from_deploy.total for a in self.per_alternative])
        from_deploy_rest = log_mean_exp(
            [a.from_deploy.without_best() for a in self.per_alternative]
        )
        chosen: _Alternative | None = None
        score = -math.inf
        for alternative in self.per_alternative:
            if alternative.since.terms == 0:
                continue
            rest = alternative.since.without_best()
            if min(alternative.level - bars[0], rest - bars[1]) > score:
                score = min(alternative.level - bars[0], rest - bars[1])
                chosen = alternative
        if chosen is None:
            return Evidence(from_deploy, from_deploy_rest, 0.0, 0.0, self.steps, 0.0, 0.0)
        return Evidence(
            from_deploy,
            from_deploy_rest,
            chosen.level,
            chosen.since.without_best(),
            chosen.start,
            chosen.since_bad,
            chosen.since_total,
            chosen.start_t,
        )

    def share_counts(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """The share test's inputs: the watch's (bad, total), and the same without the heaviest
        stretch at twice the null (`share_evidence`'s `left_out`)."""
        if self.left_out is None:
            return (self.bad, self.total), (self.bad, self.total)
        rest = (self.bad - self.left_out.bad, self.total - self.left_out.total)
        return (self.bad, self.total), rest
