"""Fix plumbing: patches as data, policy on patches and auto-merge answers, the Anthropic fixer's
retries against the Messages API stand-in, and the GitHub forge's merge request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path

import pytest

from rollback.anthropic_fixer import AnthropicFixer
from rollback.fixer import FixContext, FixerError, FixerUnavailable
from rollback.forge import MergeState
from rollback.github import GitHubForge
from rollback.patch import PatchError, apply, paths
from rollback.policy import (
    DEFAULT_HUMAN_GATES,
    MergeNext,
    Mode,
    after_auto_merge,
    effective,
    patch_refusals,
)
from tests.acting_rig import TOKEN, Sleeps
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.github import FakeGitHub

OLD = "a\nb\nc\nd\n"


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ("--- a/f\n+++ b/f\n@@ -2,2 +2,2 @@\n b\n-c\n+C\n", "a\nb\nC\nd\n"),
        ("--- a/f\n+++ b/f\n@@ -9,2 +9,2 @@\n b\n-c\n+C\n", "a\nb\nC\nd\n"),  # offset
        ("--- a/f\n+++ b/f\n@@ -1 +1,2 @@\n a\n+x\n", "a\nx\nb\nc\nd\n"),
        ("--- a/f\n+++ /dev/null\n@@ -1,4 +0,0 @@\n-a\n-b\n-c\n-d\n", None),
    ],
)
def test_patch_applies_to_contents(patch: str, expected: str | None) -> None:
    """Hunks apply at their line or the nearest offset; deleting every line deletes the file."""
    assert apply(patch, {"f": OLD}) == {"f": expected}


@pytest.mark.parametrize(
    ("patch", "words"),
    [
        ("nothing here", "no file patches"),
        ("--- a/f\n+++ b/f\n@@ -1 +1 @@\n-zzz\n+y\n", "does not apply"),
        ("--- a/../etc/passwd\n+++ b/../etc/passwd\n@@ -1 +1 @@\n-a\n+b\n", "unsafe"),
        ("--- /dev/null\n+++ b/f\n@@ -0,0 +1 @@\n+x\n", "exists"),
    ],
)
def test_bad_patches_are_refused_with_a_reason(patch: str, words: str) -> None:
    """Malformed, non-applying, path-escaping or clashing patches raise PatchError."""
    with pytest.raises(PatchError, match=words):
        apply(patch, {"f": OLD})


def test_new_file_patch_creates_it() -> None:
    """A /dev/null old side creates the file."""
    patch = "--- /dev/null\n+++ b/tests/test_x.py\n@@ -0,0 +1,2 @@\n+def test_x():\n+    pass\n"
    assert paths(patch) == ["tests/test_x.py"]
    assert apply(patch, {}) == {"tests/test_x.py": "def test_x():\n    pass\n"}


@pytest.mark.parametrize(
    ("touched", "refused"),
    [
        (["app/charge.py"], False),
        (["app/charge.py", "tests/test_charge.py"], False),
        (["app/test_charge.py"], False),
        ([".github/workflows/ci.yml"], True),
        (["app/other.py"], True),
        (["db/migrations/004.sql"], True),
        (["pyproject.toml"], True),
        ([], True),
    ],
)
def test_patch_scope_is_the_original_files_and_tests(touched: list[str], refused: bool) -> None:
    """A fix may touch the PR's files and tests; never workflows, gated or unrelated paths."""
    original = ["app/charge.py", "db/migrations/004.sql"]
    assert bool(patch_refusals(touched, original, DEFAULT_HUMAN_GATES)) is refused


@pytest.mark.parametrize(
    ("error", "allow", "expected"),
    [
        (None, True, MergeNext.ENABLED),
        ("Pull request is in clean status", True, MergeNext.MERGE_NOW),
        ("Pull request is in clean status", False, MergeNext.LEAVE),
        ("Auto merge is not allowed for this repository", True, MergeNext.LEAVE),
    ],
)
def test_auto_merge_answers(error: str | None, allow: bool, expected: MergeNext) -> None:
    """GitHub's answer decides: enabled, merge now through REST, or leave it for a person."""
    assert after_auto_merge(error, allow_rest_merge=allow)[0] is expected


def test_unknown_auto_merge_answer_is_not_guessed() -> None:
    """An answer the policy does not know is an error, not a silent choice."""
    with pytest.raises(ValueError, match="unexpected"):
        after_auto_merge("Something else", allow_rest_merge=True)


@pytest.mark.parametrize(
    ("service_mode", "service_gates", "expected"),
    [
        (None, None, (Mode.PROPOSE, ("g/**",))),
        (Mode.ACT, None, (Mode.ACT, ("g/**",))),
        (None, ("x/**",), (Mode.PROPOSE, ("x/**",))),
        (Mode.OBSERVE, (), (Mode.OBSERVE, ())),
    ],
)
def test_service_overrides(
    service_mode: Mode | None, service_gates: tuple[str, ...] | None,
    expected: tuple[Mode, tuple[str, ...]],
) -> None:  # fmt: skip
    """A service's own mode and gates win over the global ones where it sets them."""
    assert effective(Mode.PROPOSE, ("g/**",), service_mode, service_gates) == expected


CONTEXT = FixContext(
    incident_id="inc_1", repo="acme/app", base_branch="main", service="shop", pr_number=7,
    pr_title="t", pr_url="u", pr_author="a", pr_body="", spec=None, agent_session=None,
    files=("app/x.py",), files_known=True, diff="", evidence=("http_errors: 1% -> 9%",),
    revert_url=None, incident_url=None,
)  # fmt: skip
GOOD = {"diagnosis": "d", "hypothesis": "h", "plan": ["p"], "patch": "", "tests": []}


@pytest.fixture
async def api() -> AsyncIterator[FakeAnthropic]:
    fake = await FakeAnthropic().start()
    yield fake
    await fake.close()


def fixer(api: FakeAnthropic, sleeps: Sleeps, key: str | None = None) -> AnthropicFixer:
    return AnthropicFixer(key or api.key, "claude-haiku-4-5", base_url=api.url, timeout=2.0,
                          max_attempts=3, sleep=sleeps)  # fmt: skip


@pytest.mark.parametrize(("status", "retry_after"), [(529, None), (500, None), (429, 5)])
async def test_transient_failures_are_retried(
    api: FakeAnthropic, status: int, retry_after: int | None
) -> None:
    """Overloaded, 5xx and 429 are retried (429 after its retry-after); usage is kept."""
    api.fail_next(2, status, retry_after=retry_after)
    api.answer_with(GOOD)
    sleeps = Sleeps()
    async with aclosing(fixer(api, sleeps)) as the_fixer:
        answer = await the_fixer.propose(CONTEXT)
    assert answer.proposal is not None
    assert answer.proposal.diagnosis == "d"
    assert answer.usage is not None
    assert answer.usage.input_tokens == 1200
    assert len(api.requests) == 3
    if retry_after:
        assert sleeps.waits == [5.0, 5.0]


async def test_long_retry_after_is_not_slept_and_the_budget_ends(api: FakeAnthropic) -> None:
    """A retry-after of an hour is not waited inside a watch; overload past the budget fails."""
    api.fail_next(1, 429, retry_after=3600)
    sleeps = Sleeps()
    async with aclosing(fixer(api, sleeps)) as the_fixer:
        with pytest.raises(FixerUnavailable, match="3600"):
            await the_fixer.propose(CONTEXT)
        api.fail_next(5, 529)
        with pytest.raises(FixerUnavailable, match="after 3 attempts"):
            await the_fixer.propose(CONTEXT)
    assert 3600.0 not in sleeps.waits


async def test_bad_key_is_a_fixer_error_without_the_key(api: FakeAnthropic) -> None:
    """401 is not retried and the message carries no key."""
    async with aclosing(fixer(api, Sleeps(), key="sk-ant-wrong-key")) as the_fixer:
        with pytest.raises(FixerError) as caught:
            await the_fixer.propose(CONTEXT)
    assert "401" in str(caught.value)
    assert "sk-ant-wrong-key" not in str(caught.value)
    assert len(api.requests) == 1


async def test_answer_that_is_not_the_schema_keeps_usage(api: FakeAnthropic) -> None:
    """Prose instead of the JSON asked for: no proposal, the reason, and the tokens spent."""
    api.answer_with("Sure! Here is a fix: ...")
    async with aclosing(fixer(api, Sleeps())) as the_fixer:
        answer = await the_fixer.propose(CONTEXT)
    assert answer.proposal is None
    assert answer.usage is not None
    assert "not the JSON" in (answer.problem or "")


@pytest.mark.parametrize(
    ("allowed", "pending", "state", "merged"),
    [
        (True, True, MergeState.AUTO_MERGE, False),
        (True, False, MergeState.MERGED, True),
        (False, True, MergeState.LEFT_FOR_PERSON, False),
    ],
)
async def test_merge_request_follows_github_answer(
    tmp_path: Path, allowed: bool, pending: bool, state: MergeState, merged: bool
) -> None:
    """Auto-merge on; already clean -> REST merge; not allowed -> left for a person."""
    async with FakeGitHub(tmp_path / "gh", token=TOKEN) as github:
        github.git("branch", "feature")
        github.commit({"a.txt": "a\n"}, "change", branch="feature")
        pr = github.new_pr(1, "Revert x", "", author="bot", head_ref="feature",
                           head_sha=github.head_sha("feature"))  # fmt: skip
        github.auto_merge_allowed, github.checks_pending = allowed, pending
        async with GitHubForge(github.url, TOKEN, timeout=5.0, sleep=Sleeps()) as forge:
            result = await forge.request_merge("acme/app", 1, allow_rest_merge=True)
        assert result.state is state
        assert pr.merged is merged
        if merged:
            assert github.read_file("a.txt") == "a\n"
