"""The pure decisions behind recovery: the next suspect, which deploy carries a revert, whether an
SLI is back within its baseline, and how long the loop waits before retrying an action."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from attribution.changes import RangeCommit
from attribution.identity import identify
from attribution.next_suspect import next_round
from attribution.records import MergedPR, Suspect
from attribution.revert_match import OpenedRevert, carries
from loop.watch.retry import MAX_RETRY_AFTER, retry_delay
from observer.recovery import assess_recovery
from observer.sequential import Baseline, Step
from observer.slis import Sli, SliKind
from observer.verdict import SliResult, Status

THREE = (
    Suspect("acme/app", 106, 0.3, "one of 3"),
    Suspect("acme/app", 105, 0.3, "one of 3"),
    Suspect("acme/app", 104, 0.3, "one of 3"),
)


@pytest.mark.parametrize(
    ("reverted", "bar", "unit", "confidence"),
    [
        ({106}, 0.3, (105,), 0.3 / 0.7),  # renormalised past the bar: the next one alone
        ({106}, 0.6, (104, 105), 0.3 / 0.7),  # below the bar: the rest of the range
        ({106, 105}, 0.6, (104,), 0.3 / 0.4),  # one left: that one, whatever the bar
    ],
)
def test_next_round_drops_the_reverted_and_renormalises(
    reverted: set[int], bar: float, unit: tuple[int, ...], confidence: float
) -> None:
    """The reverted PRs are gone and the rest share their probability."""
    following = next_round(THREE, reverted, bar)
    assert following is not None
    assert following.revert_unit == unit
    assert following.confidence == pytest.approx(confidence)
    assert all(s.number not in reverted for s in following.suspects)
    assert "did not restore health" in following.reason


def test_next_round_is_none_when_every_suspect_was_reverted() -> None:
    """Nothing left to revert: the caller escalates."""
    assert next_round(THREE, {104, 105, 106}, 0.3) is None


def _pr(number: int, merge_sha: str, body: str = "") -> MergedPR:
    return MergedPR("acme/app", number, "t", "bot", "u", merge_sha, "h", "main", 0.0, body,
                    identify("bot", body))  # fmt: skip


KEY = "revert-inc_0123456789ab"
REVERT = OpenedRevert(KEY, pr_number=12, head_sha="bbbb")


@pytest.mark.parametrize(
    ("commits", "known", "expected"),
    [
        ([RangeCommit("m1", f"Merge pull request #12 from acme/rearguard/{KEY}")], [], True),
        ([RangeCommit("s1", "Revert #9: Remove retry (#12)")], [], True),
        ([RangeCommit("c1", f"Revert #9\n\nRearguard-Key: {KEY}")], [], True),
        ([RangeCommit("bbbb", "Revert #9")], [], True),  # rebase merge: the branch head itself
        ([RangeCommit("x1", "Revert")], [_pr(12, "x1")], True),  # the revert PR on record
        ([RangeCommit("x2", "Revert")], [_pr(40, "x2", f"<!-- rearguard-key: {KEY} -->")], True),
        ([RangeCommit("m2", "Merge pull request #13 from acme/feature")], [], False),
        ([RangeCommit("m3", f"Merge branch 'rearguard/{KEY}-r2'")], [], False),  # a later round
        ([], [], False),
    ],
)
def test_carries_finds_the_revert_however_it_was_merged(
    commits: list[RangeCommit], known: list[MergedPR], expected: bool
) -> None:
    """Merge, squash, rebase and Rearguard-built commits all count; other PRs do not."""
    assert carries(commits, known, REVERT) is expected


SLI = Sli(name="errors", kind=SliKind.RATIO, bad="b", total="t", min_events=100, tolerance=0.1)
BASE = Baseline("before", 50.0, 10_000.0)  # 0.5%
STEP = 15.0
HORIZON = 40  # a 10-minute recovery window
ELAPSED = 10  # steps seen so far while the window is still open


def spread(bad: float, total: float, steps: int) -> list[Step]:
    """`bad` of `total` events spread evenly over the first `steps` steps since the revert."""
    return [Step(STEP * (k + 1), bad / steps, total / steps) for k in range(steps)]


def recovery(
    window: list[Step], regressed: float, complete: bool, *, sli: Sli = SLI, base: Baseline = BASE
) -> SliResult:
    """`assess_recovery` over a window of `HORIZON` steps of `STEP` seconds."""
    return assess_recovery(
        sli, base, regressed, window, complete=complete, horizon=HORIZON, step_seconds=STEP
    )


@pytest.mark.parametrize(
    ("window", "complete", "status"),
    [
        ((3.0, 600.0), False, Status.HEALTHY),  # 0.5% over 600 events: back, decisively
        ((30.0, 1200.0), False, Status.REGRESSED),  # 2.5% still: regressed vs the old baseline
        ((1.0, 60.0), False, Status.OBSERVING),  # too few events to say either
        ((6.0, 600.0), False, Status.OBSERVING),  # 1%: neither back nor clearly regressed yet
        ((0.0, 0.0), True, Status.INCONCLUSIVE),  # no traffic at all by the end
    ],
)
def test_assess_recovery(window: tuple[float, float], complete: bool, status: Status) -> None:
    """Judged against the pre-regression baseline and the regressed rate of 2.5%, the window's
    counts spread over the steps seen so far."""
    steps = spread(*window, HORIZON if complete else ELAPSED)
    assert recovery(steps, 0.025, complete).status is status


def test_assess_recovery_without_a_regressed_rate_waits_for_the_window() -> None:
    """With no regressed rate to test against, only the end of the window can say recovered."""
    assert recovery(spread(3.0, 600.0, ELAPSED), math.nan, False).status is Status.OBSERVING
    assert recovery(spread(3.0, 600.0, HORIZON), math.nan, True).status is Status.HEALTHY


def test_a_blip_after_the_revert_is_not_still_regressed() -> None:
    """20 bad events in one step among clean ones are the Watch's blip; spread over every step,
    the same 20 are still regressed."""
    blip = spread(0.0, 600.0, ELAPSED)
    blip[4] = Step(blip[4].t, 20.0, 60.0)
    assert recovery(blip, 0.025, False).status is Status.OBSERVING
    assert recovery(spread(20.0, 600.0, ELAPSED), 0.025, False).status is Status.REGRESSED


def test_assess_recovery_with_gaps_ends_inconclusive() -> None:
    """A window where most steps had no data is not a recovery, as a watch with gaps is not
    healthy."""
    result = recovery(spread(3.0, 600.0, HORIZON // 4), math.nan, True)
    assert result.status is Status.INCONCLUSIVE
    assert "gaps" in result.reason


@pytest.mark.parametrize("complete", [False, True])
def test_assess_recovery_against_a_baseline_without_events_decides_nothing(
    complete: bool,
) -> None:
    """`min_events = 0`, an empty baseline and a regressed rate above 0.99: no baseline to be
    back within, so OBSERVING and INCONCLUSIVE at the end (this once divided by zero)."""
    sli = replace(SLI, min_events=0)
    steps = spread(1.0, 600.0, HORIZON if complete else ELAPSED)
    result = recovery(steps, 0.995, complete, sli=sli, base=Baseline("before", 0.0, 0.0))
    assert result.status is (Status.INCONCLUSIVE if complete else Status.OBSERVING)
    assert "no baseline" in result.reason


@pytest.mark.parametrize(
    ("attempt", "retry_after", "delay"),
    [
        (1, None, 30.0),
        (2, None, 60.0),
        (3, None, 120.0),
        (6, None, 600.0),  # capped
        (1, 90.0, 90.0),  # the server's word beats a shorter backoff
        (3, 30.0, 120.0),  # but not a longer one
        (1, 86_400.0, MAX_RETRY_AFTER),  # and never parks a Watch for a day
        (1, 0.0, 30.0),
    ],
)
def test_retry_delay_grows_bounded_and_honours_retry_after(
    attempt: int, retry_after: float | None, delay: float
) -> None:
    """Doubling from 30 s up to 600 s; `retry-after` respected up to an hour."""
    assert retry_delay(attempt, 30.0, 600.0, retry_after) == delay
