"""Issue 5's acceptance scenarios for acting: the loop with GitHubForge, SlackNotifier and the
Anthropic SDK pointed at their stand-ins."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from rollback.anthropic_fixer import AnthropicFixer
from tests.acting_rig import CHANNEL, ActingRig, Sleeps, make_acting_rig
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.github import FakeGitHub
from tests.fakes.slack import FakeSlack

FIX = """--- a/app/charge.py
+++ b/app/charge.py
@@ -1,2 +1,2 @@
 def charge(x):
-    return x
+    return retry(x)
--- /dev/null
+++ b/tests/test_charge.py
@@ -0,0 +1,2 @@
+def test_charge_retries():
+    assert charge(1) == 1
"""
WORKFLOW = """--- a/.github/workflows/ci.yml
+++ b/.github/workflows/ci.yml
@@ -1 +1 @@
-on: push
+on: workflow_dispatch
"""


@pytest.fixture
async def anthropic_api() -> AsyncIterator[FakeAnthropic]:
    fake = await FakeAnthropic().start()
    yield fake
    await fake.close()


async def _close(rig: ActingRig) -> None:
    await rig.close_clients()
    await rig.store.close()


def _thread(slack: FakeSlack) -> tuple[str, list[str]]:
    first = [m for m in slack.messages if m.thread_ts is None]
    assert len(first) == 1
    replies = [m.text for m in slack.messages if m.thread_ts == first[0].ts]
    return first[0].text, replies


async def test_act_mode_opens_one_revert_with_evidence_enables_auto_merge_and_threads_slack(
    tmp_path: Path, github: FakeGitHub, slack: FakeSlack
) -> None:
    """act: one revert PR with the evidence, auto-merge on, a first message, plot and reply."""
    rig = await make_acting_rig(tmp_path, github, slack, mode="act")
    try:
        assert await rig.run() == "reverted"
    finally:
        await _close(rig)
    (revert,) = [p for p in github.created_pulls() if "Revert" in p.title]
    for needle in ("http_errors", "0.50%", "8.00%", "statistic", "#1", "cx-7f3a",
                   "http://rg.test/v1/incidents/"):  # fmt: skip
        assert needle in revert.body
    assert {"revert", "rearguard", "critical"} <= set(revert.labels)
    assert revert.auto_merge == "SQUASH"
    first, replies = _thread(slack)
    assert "#1" in first
    assert any("Revert PR opened" in r and "auto-merge enabled" in r for r in replies)
    (plot,) = slack.files
    assert plot.data.startswith(b"\x89PNG")
    assert plot.channel == CHANNEL
    assert plot.thread_ts == next(m.ts for m in slack.messages if m.thread_ts is None)


async def test_migration_revert_needs_a_person_and_slack_says_so(
    tmp_path: Path, github: FakeGitHub, slack: FakeSlack
) -> None:
    """A culprit under db/migrations/: needs-human, no auto-merge, Slack says a person merges."""
    files = {"db/migrations/003_orders.sql": "ALTER TABLE orders DROP COLUMN total;\n"}
    rig = await make_acting_rig(tmp_path, github, slack, mode="act", culprit_files=files)
    try:
        assert await rig.run() == "reverted"
    finally:
        await _close(rig)
    (revert,) = [p for p in github.created_pulls() if "Revert" in p.title]
    assert "needs-human" in revert.labels
    assert revert.auto_merge is None
    assert not revert.merged
    first, replies = _thread(slack)
    assert "a person must merge it" in first
    assert any("needs-human" in r for r in replies)


async def test_two_502s_then_created_opens_exactly_one_revert(
    tmp_path: Path, github: FakeGitHub, slack: FakeSlack
) -> None:
    """GitHub answering 502 twice on the revert, then 201: exactly one revert PR."""
    rig = await make_acting_rig(tmp_path, github, slack, mode="propose")
    github.fail_next(2, 502, match="POST /graphql")
    try:
        assert await rig.run() == "reverted"
    finally:
        await _close(rig)
    assert len([p for p in github.created_pulls() if "Revert" in p.title]) == 1


async def test_secondary_rate_limit_waits_retry_after_and_completes(
    tmp_path: Path, github: FakeGitHub, slack: FakeSlack
) -> None:
    """A secondary rate limit with retry-after: 30 on the revert is waited out; one PR opens."""
    rig = await make_acting_rig(tmp_path, github, slack, mode="propose")
    try:
        await rig.run_until("rolling_back")
        github.rate_limit_next(30, secondary=True)
        assert await rig.run() == "reverted"
    finally:
        await _close(rig)
    assert 30.0 in rig.sleeps.waits
    assert len([p for p in github.created_pulls() if "Revert" in p.title]) == 1


async def test_github_down_for_the_budget_fails_says_so_and_restart_does_not_duplicate(
    tmp_path: Path, github: FakeGitHub, slack: FakeSlack
) -> None:
    """GitHub 502 for the whole budget: the revert is failed with the reason, the Slack message
    says so; after a restart with GitHub back, no PR is opened and no second message posted."""
    rig = await make_acting_rig(tmp_path, github, slack, mode="propose", forge_attempts=2)
    try:
        await rig.run_until("rolling_back")
        github.fail_next(1000, 502, match="/graphql")
        github.fail_next(1000, 502, match="/pulls")
        assert await rig.run() == "escalated"
        incident = await rig.store.incidents.incident_for_deploy(rig.deploy.id)
        assert incident is not None
        revert = next(
            a for a in await rig.store.incidents.actions(incident.id) if a.kind == "revert"
        )
        assert revert.status == "failed"
        assert "502" in (revert.error or "")
        assert "gave up after 2 attempts" in (revert.error or "")
        first, _ = _thread(slack)
        assert "revert FAILED" in first
        github._failures.clear()
        restarted = await rig.restarted()
        try:
            await restarted.run()
        finally:
            await restarted.close_clients()
    finally:
        await _close(rig)
    assert github.created_pulls() == []
    assert len([m for m in slack.messages if m.thread_ts is None]) == 1


async def test_workflow_patch_is_refused_and_a_bug_issue_opened(
    tmp_path: Path, github: FakeGitHub, slack: FakeSlack, anthropic_api: FakeAnthropic
) -> None:
    """A model patch touching .github/workflows/ is refused: a critical bug issue instead."""
    anthropic_api.answer_with({"diagnosis": "retry removed", "hypothesis": "no retry",
                               "plan": ["restore"], "patch": WORKFLOW, "tests": []})  # fmt: skip
    fixer = AnthropicFixer(anthropic_api.key, "claude-sonnet-4-6", base_url=anthropic_api.url,
                           timeout=5.0, sleep=Sleeps())  # fmt: skip
    rig = await make_acting_rig(tmp_path, github, slack, mode="propose", fixer=fixer)
    try:
        assert await rig.run() == "reverted"
    finally:
        await fixer.aclose()
        await _close(rig)
    assert not [p for p in github.created_pulls() if "agent-fix" in p.labels]
    (issue,) = github.issues
    assert "critical" in issue.labels
    assert ".github/workflows/ci.yml: CI workflows are never patched" in issue.body
    assert "Given " in issue.body
    assert "Then " in issue.body
    assert issue.assignees == ["octo-dev"]
    _, replies = _thread(slack)
    assert any("Bug issue opened" in r for r in replies)


async def test_valid_patch_opens_a_draft_fix_pr_on_top_of_the_original_change(
    tmp_path: Path, github: FakeGitHub, slack: FakeSlack, anthropic_api: FakeAnthropic
) -> None:
    """A valid patch: a draft agent-fix PR re-applying the change plus the fix; tokens stored."""
    anthropic_api.answer_with({"diagnosis": "the retry was removed", "hypothesis": "transient "
                               "gateway errors now surface", "plan": ["restore the retry"],
                               "patch": FIX, "tests": ["test_charge_retries"]})  # fmt: skip
    fixer = AnthropicFixer(anthropic_api.key, "claude-sonnet-4-6", base_url=anthropic_api.url,
                           timeout=5.0, sleep=Sleeps())  # fmt: skip
    rig = await make_acting_rig(
        tmp_path, github, slack, mode="propose", fixer=fixer,
        culprit_files={"app/charge.py": "def charge(x):\n    return x\n",
                       "app/fast.py": "FAST = True\n"},
    )  # fmt: skip
    try:
        assert await rig.run() == "reverted"
        rows = await rig.store.fetch("SELECT input_tokens, output_tokens FROM llm_usage")
    finally:
        await fixer.aclose()
        await _close(rig)
    (fix,) = [p for p in github.created_pulls() if "agent-fix" in p.labels]
    assert fix.draft
    assert fix.auto_merge is None
    assert fix.assignees == ["octo-dev"]
    assert f"#{rig.culprit.number}" in fix.body
    revert = next(p for p in github.created_pulls() if "Revert" in p.title)
    assert revert.html_url in fix.body
    assert github.read_file("app/fast.py", fix.head_ref) == "FAST = True\n"  # the original change
    assert (
        github.read_file("app/charge.py", fix.head_ref) == "def charge(x):\n    return retry(x)\n"
    )
    assert github.read_file("tests/test_charge.py", fix.head_ref) is not None
    assert github.read_file("app/fast.py", "main") == "FAST = True\n"  # main untouched
    assert rows == [(1200, 350)]
    request = anthropic_api.requests[0]
    assert request["output_config"]["format"]["type"] == "json_schema"
    assert "app/charge.py" in json.dumps(request["messages"])


async def test_a_bot_written_culprit_gets_its_draft_fix_pr_assigned_to_nobody(
    tmp_path: Path, github: FakeGitHub, slack: FakeSlack, anthropic_api: FakeAnthropic
) -> None:
    """The culprit opened by `copilot-swe-agent[bot]`, which GitHub refuses as an assignee: the
    draft fix PR opens assigned to nobody and says who wrote the change."""
    anthropic_api.answer_with({"diagnosis": "the retry was removed", "hypothesis": "errors",
                               "plan": ["restore it"], "patch": FIX, "tests": []})  # fmt: skip
    fixer = AnthropicFixer(anthropic_api.key, "claude-sonnet-4-6", base_url=anthropic_api.url,
                           timeout=5.0, sleep=Sleeps())  # fmt: skip
    bot = "copilot-swe-agent[bot]"
    rig = await make_acting_rig(tmp_path, github, slack, mode="propose", fixer=fixer, author=bot)
    try:
        assert await rig.run() == "reverted"
        incident = await rig.store.incidents.incident_for_deploy(rig.deploy.id)
        assert incident is not None
        actions = {str(a.kind): a for a in await rig.store.incidents.actions(incident.id)}
    finally:
        await fixer.aclose()
        await _close(rig)
    assert actions["fix"].status == "completed", actions["fix"].error
    (fix,) = [p for p in github.created_pulls() if "agent-fix" in p.labels]
    assert fix.assignees == []
    assert f"written by @{bot}, a bot account" in fix.body


async def test_over_the_daily_budget_no_model_is_asked_and_a_bug_issue_says_why(
    tmp_path: Path, github: FakeGitHub, slack: FakeSlack, anthropic_api: FakeAnthropic
) -> None:
    """With the day's Anthropic budget spent, the Fixer is not called; the issue says why."""
    fixer = AnthropicFixer(
        anthropic_api.key, "claude-sonnet-4-6", base_url=anthropic_api.url, sleep=Sleeps()
    )
    rig = await make_acting_rig(tmp_path, github, slack, mode="propose", fixer=fixer)
    await rig.store.usage.record(
        "inc_earlier", model="m", input_tokens=1, output_tokens=1, cost_usd=25.0,
        now=rig.clock.now(),
    )  # fmt: skip
    try:
        assert await rig.run() == "reverted"
    finally:
        await fixer.aclose()
        await _close(rig)
    assert anthropic_api.requests == []
    (issue,) = github.issues
    assert "the day's Anthropic budget is spent ($25.00)" in issue.body


async def test_a_culprit_found_through_its_commit_is_gated_by_its_files(
    tmp_path: Path, github: FakeGitHub, slack: FakeSlack
) -> None:
    """act, the culprit not on record (found through its merge commit) and under migrations/:
    needs-human, no auto-merge, and Slack names the path."""
    files = {"db/migrations/003_orders.sql": "ALTER TABLE orders DROP COLUMN total;\n"}
    rig = await make_acting_rig(tmp_path, github, slack, mode="act", culprit_files=files,
                                learned="commit")  # fmt: skip
    try:
        assert await rig.run() == "reverted"
    finally:
        await _close(rig)
    (revert,) = [p for p in github.created_pulls() if "Revert" in p.title]
    assert revert.auto_merge is None
    assert not revert.merged
    assert "needs-human" in revert.labels
    first, _ = _thread(slack)
    assert "db/migrations/003_orders.sql" in first


async def test_fix_pr_re_applying_a_webhook_pr_behind_a_gate_needs_a_person(
    tmp_path: Path, github: FakeGitHub, slack: FakeSlack, anthropic_api: FakeAnthropic
) -> None:
    """A webhook-learned culprit changing auth/session.py and app/charge.py: the model's patch
    lands on top of the whole original change, in a draft fix PR labelled needs-human."""
    anthropic_api.answer_with({"diagnosis": "the retry was removed", "hypothesis": "transient "
                               "gateway errors now surface", "plan": ["restore the retry"],
                               "patch": FIX, "tests": ["test_charge_retries"]})  # fmt: skip
    fixer = AnthropicFixer(anthropic_api.key, "claude-sonnet-4-6", base_url=anthropic_api.url,
                           timeout=5.0, sleep=Sleeps())  # fmt: skip
    rig = await make_acting_rig(
        tmp_path, github, slack, mode="act", fixer=fixer, learned="webhook",
        culprit_files={"app/charge.py": "def charge(x):\n    return x\n",
                       "auth/session.py": "TTL = 60\n"},
    )  # fmt: skip
    try:
        assert await rig.run() == "reverted"
    finally:
        await fixer.aclose()
        await _close(rig)
    revert = next(p for p in github.created_pulls() if "Revert" in p.title)
    assert "needs-human" in revert.labels
    assert revert.auto_merge is None
    (fix,) = [p for p in github.created_pulls() if "agent-fix" in p.labels]
    assert "needs-human" in fix.labels
    assert fix.auto_merge is None
    assert github.read_file("auth/session.py", fix.head_ref) == "TTL = 60\n"
    assert "auth/session.py" in json.dumps(anthropic_api.requests[0]["messages"])


async def test_unknown_files_gate_the_revert_and_the_fix_step_asks_no_model(
    tmp_path: Path, github: FakeGitHub, slack: FakeSlack, anthropic_api: FakeAnthropic
) -> None:
    """GitHub answering 502 to every listing of the culprit's files: the revert is gated, no
    model is asked, and the bug issue says the files are unknown."""
    anthropic_api.answer_with({"diagnosis": "d", "hypothesis": "h", "plan": ["p"],
                               "patch": FIX, "tests": []})  # fmt: skip
    fixer = AnthropicFixer(anthropic_api.key, "claude-sonnet-4-6", base_url=anthropic_api.url,
                           timeout=5.0, sleep=Sleeps())  # fmt: skip
    number = github.next_number()
    github.fail_next(10_000, 502, match=f"GET /repos/acme/app/pulls/{number}/files")
    rig = await make_acting_rig(tmp_path, github, slack, mode="act", fixer=fixer,
                                learned="webhook")  # fmt: skip
    try:
        assert await rig.run() == "reverted"
    finally:
        await fixer.aclose()
        await _close(rig)
    assert rig.culprit.number == number
    revert = next(p for p in github.created_pulls() if "Revert" in p.title)
    assert "needs-human" in revert.labels
    assert revert.auto_merge is None
    assert not [p for p in github.created_pulls() if "agent-fix" in p.labels]
    assert anthropic_api.requests == []
    (issue,) = github.issues
    assert f"files of PR #{number} unknown" in issue.body
    first, _ = _thread(slack)
    assert f"files of PR #{number} unknown" in first
