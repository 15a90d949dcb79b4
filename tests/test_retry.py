"""The one retry policy: `retry_inline` and `retry_delay`, and each edge's classification of a
failure (status -> retried inline? -> after which waits -> which error), against the stand-ins."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from slack_sdk.http_retry.interval_calculator import RetryIntervalCalculator

from observer.retry import Retryable, retry_delay, retry_inline
from observer.sources import MetricsError, QueryRejected, SourceUnavailable
from rollback.anthropic_fixer import AnthropicFixer
from rollback.fixer import FixContext, FixerError, FixerUnavailable
from rollback.forge import ForgeError, ForgeUnavailable
from rollback.github import GitHubForge
from rollback.notify import Notice, NotifyError, NotifyRejected, NotifyRetryable
from rollback.slack import SlackNotifier
from tests.acting_rig import TOKEN, Sleeps
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.github import FakeGitHub
from tests.fakes.slack import TOKEN as SLACK_TOKEN
from tests.fakes.slack import FakeSlack


class Flaky:
    """A call that fails with `failures` in turn, then answers "ok"."""

    def __init__(self, *failures: Exception) -> None:
        self.failures = list(failures)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "ok"


def after_a_second(exc: Exception, attempt: int) -> float | None:
    """Retry `TimeoutError` after `attempt` seconds; nothing else."""
    return float(attempt) if isinstance(exc, TimeoutError) else None


async def test_retry_inline_waits_as_classified_then_answers() -> None:
    """Each failure worth a retry is waited out as `classify` says; `on_retry` sees each one."""
    call, sleeps, seen = Flaky(TimeoutError(), TimeoutError()), Sleeps(), []
    answer = await retry_inline(call, after_a_second, attempts=3, sleep=sleeps,
                                on_retry=lambda exc, n, wait: seen.append((n, wait)))  # fmt: skip
    assert (answer, call.calls, sleeps.waits, seen) == ("ok", 3, [1.0, 2.0], [(1, 1.0), (2, 2.0)])


async def test_retry_inline_gives_up_with_the_last_failure() -> None:
    """Once the attempts are spent, the last failure propagates as it is, without a last wait."""
    last = TimeoutError("third")
    call, sleeps = Flaky(TimeoutError(), TimeoutError(), last), Sleeps()
    with pytest.raises(TimeoutError) as caught:
        await retry_inline(call, after_a_second, attempts=3, sleep=sleeps)
    assert (caught.value, call.calls, sleeps.waits) == (last, 3, [1.0, 2.0])


async def test_retry_inline_does_not_retry_a_refused_failure() -> None:
    """`classify` answering None, or raising the edge's own error, ends the call at once."""
    call, sleeps = Flaky(ValueError("bad")), Sleeps()
    with pytest.raises(ValueError, match="bad"):
        await retry_inline(call, after_a_second, attempts=3, sleep=sleeps)

    def refuse(exc: Exception, attempt: int) -> float:
        raise Retryable("later", retry_after=90.0) from exc

    with pytest.raises(Retryable) as caught:
        await retry_inline(Flaky(TimeoutError()), refuse, attempts=3, sleep=sleeps)
    assert (caught.value.retry_after, sleeps.waits) == (90.0, [])
    with pytest.raises(ValueError, match="at least 1"):
        await retry_inline(Flaky(), after_a_second, attempts=0)


@pytest.mark.parametrize(
    ("base", "cap", "delays"),
    [
        (0.5, 8.0, [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]),  # GitHub, inline
        (1.0, 16.0, [1.0, 2.0, 4.0, 8.0, 16.0, 16.0]),  # Anthropic, inline
        (30.0, 600.0, [30.0, 60.0, 120.0, 240.0, 480.0, 600.0]),  # the loop, between steps
    ],
)
def test_one_growing_delay_for_every_distance(base: float, cap: float, delays: list[float]) -> None:
    """The same doubling, capped, backs off inline calls and the loop's pending actions."""
    assert [retry_delay(attempt, base, cap) for attempt in range(1, 7)] == delays


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (SourceUnavailable, True),
        (ForgeUnavailable, True),
        (NotifyRetryable, True),
        (FixerUnavailable, True),
        (QueryRejected, False),
        (MetricsError, False),
        (ForgeError, False),
        (NotifyRejected, False),
        (FixerError, False),
    ],
)
def test_every_edge_says_retryable_with_one_base(error: type[Exception], retryable: bool) -> None:
    """The loop catches `Retryable`, whichever edge failed; the others are final."""
    assert issubclass(error, Retryable) is retryable
    assert (error("x").retry_after if retryable else None) is None  # type: ignore[attr-defined]


# -- GitHub ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "retryable", "waits", "requests"),
    [
        (500, True, [0.5, 1.0, 2.0], 4),
        (502, True, [0.5, 1.0, 2.0], 4),
        (503, True, [0.5, 1.0, 2.0], 4),
        (401, False, [], 1),
        (404, False, [], 1),
        (422, False, [], 1),
    ],
)
async def test_github_status_to_retry(
    github: FakeGitHub, status: int, retryable: bool, waits: list[float], requests: int
) -> None:
    """5xx backs off 0.5 s, 1 s, 2 s over four attempts; a 4xx is final at once."""
    github.fail_next(10, status)
    sleeps = Sleeps()
    async with GitHubForge(github.url, TOKEN, timeout=5.0, sleep=sleeps) as forge:
        with pytest.raises(ForgeError) as caught:
            await forge.commits_between("acme/app", "main", "main")
    assert isinstance(caught.value, ForgeUnavailable) is retryable
    assert (sleeps.waits, len(github.requests)) == (waits, requests)


@pytest.mark.parametrize(
    ("retry_after", "waits", "loop_wait"),
    [
        (3, [3.0], None),  # under the cap: waited out inline, then answered
        (3600, [], 3600.0),  # beyond it: handed to the loop with GitHub's wait
    ],
)
async def test_github_rate_limit_to_retry(
    github: FakeGitHub, retry_after: int, waits: list[float], loop_wait: float | None
) -> None:
    """A secondary rate limit's retry-after is waited inline up to `max_retry_after`."""
    github.rate_limit_next(retry_after, secondary=True)
    sleeps = Sleeps()
    async with GitHubForge(github.url, TOKEN, timeout=5.0, sleep=sleeps) as forge:
        if loop_wait is None:
            await forge.commits_between("acme/app", "main", "main")
        else:
            with pytest.raises(ForgeUnavailable) as caught:
                await forge.commits_between("acme/app", "main", "main")
            assert caught.value.retry_after == loop_wait
    assert sleeps.waits == waits


# -- Anthropic -------------------------------------------------------------------------------

CONTEXT = FixContext(
    incident_id="inc_1", repo="acme/app", base_branch="main", service="shop", pr_number=7,
    pr_title="t", pr_url="u", pr_author="a", pr_body="", spec=None, agent_session=None,
    files=("app/x.py",), files_known=True, diff="", evidence=(), revert_url=None,
    incident_url=None,
)  # fmt: skip


@pytest.fixture
async def anthropic_api() -> AsyncIterator[FakeAnthropic]:
    fake = await FakeAnthropic().start()
    yield fake
    await fake.close()


@pytest.mark.parametrize(
    ("answer", "error", "waits", "requests"),
    [
        ((529, None), FixerUnavailable, [1.0, 2.0], 3),  # overloaded: backoff
        ((500, None), FixerUnavailable, [1.0, 2.0], 3),
        ((429, None), FixerUnavailable, [1.0, 2.0], 3),
        ((429, 5), FixerUnavailable, [5.0, 5.0], 3),  # its retry-after, under the cap
        ((429, 3600), FixerUnavailable, [], 1),  # beyond the cap: the loop retries later
        ((400, None), FixerError, [], 1),
        ((404, None), FixerError, [], 1),
    ],
)
async def test_anthropic_status_to_retry(
    anthropic_api: FakeAnthropic,
    answer: tuple[int, int | None],
    error: type[FixerError],
    waits: list[float],
    requests: int,
) -> None:
    """Overload, 5xx and 429 are retried (after retry-after when given); other 4xx are final."""
    status, retry_after = answer
    anthropic_api.fail_next(10, status, retry_after=retry_after)
    sleeps = Sleeps()
    fixer = AnthropicFixer(anthropic_api.key, "claude-haiku-4-5", base_url=anthropic_api.url,
                           timeout=2.0, max_attempts=3, sleep=sleeps)  # fmt: skip
    try:
        with pytest.raises(FixerError) as caught:
            await fixer.propose(CONTEXT)
    finally:
        await fixer.aclose()
    assert type(caught.value) is error
    assert (sleeps.waits, len(anthropic_api.requests)) == (waits, requests)


# -- Slack -----------------------------------------------------------------------------------

CHANNEL = "C0RETRY"


class Intervals(RetryIntervalCalculator):
    """slack_sdk's interval interface, recording which retry it was asked about."""

    def __init__(self) -> None:
        self.asked: list[int] = []

    def calculate_sleep_duration(self, current_attempt: int) -> float:
        self.asked.append(current_attempt)
        return 0.01


@pytest.mark.parametrize(
    ("status", "error", "expected", "posts", "intervals"),
    [
        (500, None, NotifyRetryable, 3, [0, 1]),  # paced by `retry_interval`
        (503, None, NotifyRetryable, 3, [0, 1]),
        (429, "ratelimited", NotifyRetryable, 3, []),  # paced by Retry-After instead
        (502, None, NotifyRetryable, 1, []),  # not retried inline; retryable for the loop
        (200, "internal_error", NotifyRetryable, 1, []),
        (200, "invalid_blocks", NotifyRejected, 1, []),
        (400, "invalid_arguments", NotifyRejected, 1, []),
    ],
)
async def test_slack_status_to_retry(
    status: int, error: str | None, expected: type[NotifyError], posts: int, intervals: list[int]
) -> None:
    """slack_sdk's rules: 429 after Retry-After, 500/503 after the interval, two retries."""
    slack = await FakeSlack(channels=[CHANNEL]).start()
    if status == 429:  # Slack's rate limit carries its own Retry-After
        slack.rate_limit_next(10, retry_after=0, method="chat.postMessage")
    else:
        slack.fail_next(10, status=status, error=error, method="chat.postMessage")
    paced = Intervals()
    notifier = SlackNotifier(SLACK_TOKEN, CHANNEL, base_url=slack.url, timeout=2.0,
                             max_retries=2, retry_interval=paced)  # fmt: skip
    try:
        with pytest.raises(NotifyError) as caught:
            await notifier.send(_notice())
    finally:
        await notifier.aclose()
        await slack.close()
    assert type(caught.value) is expected
    assert (slack.calls.count("chat.postMessage"), paced.asked) == (posts, intervals)


def _notice() -> Notice:
    return Notice(
        key="inc-9:notify", incident_id="inc-9", service="shop", environment="production",
        deploy_sha="9f3c2a1b7e6d", sli="errors", baseline_value=0.001, watch_value=0.05,
        unit="ratio", verdict_reason="r", suspects=(), ambiguous=True, action="a",
        action_url=None, mode="observe", opened_at=time.time(),
    )  # fmt: skip
