"""Which SLI queries fail now, and how often they failed: the state behind `/readyz`'s degraded
answer and `rearguard_sli_query_failures_total`.

Each evaluation of a Watch reports its SLIs' results here (`record`): a result with a `failure`
(`observer.verdict.SliResult.failure`) sets its (service, SLI) as failing and counts one failure
of that cause; a result whose queries answered clears it. `record` returns the failures that are
new, so the Watch logs a failure at its first evaluation, not at every step. In memory: after a
restart the first evaluation finds them again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from observer.verdict import Verdict


@dataclass(frozen=True, slots=True)
class QueryFailure:
    """One SLI whose queries fail: the cause code and the source's own words."""

    service: str
    sli: str
    cause: str
    reason: str


@dataclass(slots=True)
class QueryHealth:
    """The failing SLIs, by (service, SLI), and the failure counts by (service, SLI, cause)."""

    failing: dict[tuple[str, str], QueryFailure] = field(default_factory=dict)
    counts: dict[tuple[str, str, str], int] = field(default_factory=dict)

    def record(self, service: str, verdict: Verdict) -> list[QueryFailure]:
        """Take one evaluation's results; the failures that were not there before."""
        new = []
        for result in verdict.results:
            if not result.queries:  # not queried (no watch step yet): tells nothing
                continue
            key = (service, result.sli)
            if not result.failure:
                self.failing.pop(key, None)
                continue
            failure = QueryFailure(service, result.sli, result.failure, result.reason)
            counted = (service, result.sli, result.failure)
            self.counts[counted] = self.counts.get(counted, 0) + 1
            if self.failing.get(key, failure).cause != failure.cause or key not in self.failing:
                new.append(failure)
            self.failing[key] = failure
        return new

    def current(self) -> list[QueryFailure]:
        """The failing SLIs, by service and SLI."""
        return [self.failing[key] for key in sorted(self.failing)]
