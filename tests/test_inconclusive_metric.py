"""`rearguard_inconclusive_watches{cause}`: the Watches that ended inconclusive, told apart by
whether an SLI's queries failed in their last evaluation (what the alert on failing sources
reads), from the verdict the Watch keeps in the store."""

from __future__ import annotations

from pathlib import Path

from attribution.records import Deploy
from attribution.store import Store
from loop.api.metrics import OwnMetrics
from observer.verdict import SliResult, Status, Verdict

T0 = 1.7e9


def _verdict(*failures: str) -> Verdict:
    results = tuple(SliResult(sli=f"sli{i}", status=Status.INCONCLUSIVE, reason="r", failure=f)
                    for i, f in enumerate(failures))  # fmt: skip
    return Verdict(status=Status.INCONCLUSIVE, reason="nothing to judge", results=results)


async def test_inconclusive_watches_are_counted_by_the_cause_of_their_failed_queries(
    tmp_path: Path,
) -> None:
    """A source that failed, a PromQL error, too little traffic (no failure) and a Watch never
    evaluated each land under their cause; a Watch that ended healthy is not counted."""
    store = await Store.open(tmp_path / "s.duckdb")
    metrics = OwnMetrics()
    try:
        cases = {
            "down": ("inconclusive", _verdict("source_unavailable", "")),
            "typo": ("inconclusive", _verdict("", "query_rejected")),
            "quiet": ("inconclusive", _verdict("", "")),
            "unknown": ("inconclusive", None),
            "fine": ("healthy", _verdict("source_unavailable")),
        }
        for i, (name, (phase, verdict)) in enumerate(cases.items()):
            deploy = Deploy(id=name, service="checkout", environment="production",
                            sha=f"{i:040x}", finished_at=T0, source="cd")  # fmt: skip
            assert await store.watches.record_deploy(deploy, "observing", T0)
            assert await store.watches.transition(
                name, "observing", phase, now=T0 + 60, next_due=T0 + 60, reason="ended",
                verdict=verdict.to_json() if verdict else None,
            )  # fmt: skip
        text = (await metrics.render(store)).decode()
        for cause, count in [("source_unavailable", 1), ("query_rejected", 1), ("none", 2)]:
            assert f'rearguard_inconclusive_watches{{cause="{cause}"}} {count}.0' in text, text
        assert text.count("rearguard_inconclusive_watches{") == 3
    finally:
        metrics.shutdown()
        await store.close()
