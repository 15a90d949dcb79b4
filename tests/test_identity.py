"""Agent-session identity from trailers, labels and co-author lines (`attribution.identity`).

Tables of PR bodies, commit messages and labels, then the demo repository as ground truth: its
PRs' `identity` is the session their trailers were written from, and their merge commits are real.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from attribution.identity import identify, trailers
from attribution.records import AgentIdentity
from loop.demo.repo import DemoRepo, build_demo_repo
from rollback.localgit import LocalGitForge

SESSION = """Validate quantity and price before pricing a cart.

Agent-Session: cc-7f3a91e2
Agent-Name: claude-code
Agent-Model: claude-sonnet-4-5
Agent-Role: implementer
Spec: acme/checkout#88
Agent-Tokens: 48211
Agent-Cost-USD: 0.73"""

NAMED, SESSIONED = "Agent-Name trailer", "Agent-Session trailer"
CLAUDE = AgentIdentity(
    kind="agent",
    name="claude-code",
    session="cc-7f3a91e2",
    model="claude-sonnet-4-5",
    role="implementer",
    spec="acme/checkout#88",
    tokens=48211,
    cost_usd=0.73,
    source="Agent-Name trailer",
)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoRepo:
    """The demo repository, built once for the module (the tests only read it)."""
    return build_demo_repo(tmp_path_factory.mktemp("identity") / "r")


@pytest.mark.parametrize(
    ("body", "message", "labels", "expected"),
    [
        pytest.param(SESSION, "", (), CLAUDE, id="trailers-in-body"),
        pytest.param("", SESSION, (), CLAUDE, id="trailers-in-commit-message"),
        pytest.param(SESSION.upper().replace("CC-7F3A91E2", "cc-7f3a91e2"), "", (),
                     AgentIdentity("agent", "CLAUDE-CODE", "cc-7f3a91e2", "CLAUDE-SONNET-4-5",
                                   "IMPLEMENTER", "ACME/CHECKOUT#88", 48211, 0.73, NAMED),
                     id="keys-case-insensitive"),
        pytest.param(SESSION.replace("\n", "\r\n"), "", (), CLAUDE, id="crlf-body"),
        pytest.param("  agent-session:   s-1  \n\tAgent-Name :codex\t", "", (),
                     AgentIdentity("agent", "codex", "s-1", source=NAMED), id="padding-trimmed"),
        pytest.param("Agent-Name: codex\nAgent-Session: body-1", "Agent-Session: msg-1\n"
                     "Agent-Model: gpt-5-codex\nAgent-Name: devin", (),
                     AgentIdentity("agent", "codex", "body-1", "gpt-5-codex", source=NAMED),
                     id="body-wins-message-fills-gaps"),
        pytest.param("No trailers here.", "", ("bug", "agent:devin"),
                     AgentIdentity("agent", "devin", source="label agent:devin"), id="agent-label"),
        pytest.param("Agent-Name: codex", "", ("agent:devin",),
                     AgentIdentity("agent", "codex", source=NAMED), id="trailer-beats-label"),
        pytest.param("Fix the cart.\n\nCo-authored-by: Claude <noreply@anthropic.com>", "", (),
                     AgentIdentity("agent", "claude", source="Co-Authored-By trailer"),
                     id="co-author-known-agent"),
        pytest.param("", "Tidy\n\nCo-Authored-By: Copilot <175728472+Copilot@users.noreply"
                     ".github.com>", (),
                     AgentIdentity("agent", "copilot", source="Co-Authored-By trailer"),
                     id="co-author-in-commit-message"),
        pytest.param("Agent-Session: zz-1\nAgent-Model: mystery-1", "", (),
                     AgentIdentity("agent", "unknown-agent", "zz-1", "mystery-1",
                                   source=SESSIONED),
                     id="session-without-name"),
        pytest.param("Pair work.\n\nCo-authored-by: Dana Ortiz <dana@acme.dev>", "", ("docs",),
                     AgentIdentity("unknown", "priya-raman"), id="human-co-author"),
        pytest.param("Bump the README.", "Merge pull request #9 from acme/readme", (),
                     AgentIdentity("unknown", "priya-raman"), id="human"),
        pytest.param("Agent-Tokens: 100\nAgent-Cost-USD: 1.00", "", (),
                     AgentIdentity("unknown", "priya-raman"), id="usage-alone-is-not-an-agent"),
        pytest.param("Closes #12", "", (), AgentIdentity("unknown", "priya-raman", spec="#12"),
                     id="human-keeps-spec"),
        pytest.param("Agent-Name:\nAgent-Session: ok-1", "", ("agent:",),
                     AgentIdentity("agent", "unknown-agent", "ok-1", source=SESSIONED),
                     id="empty-name-and-label"),
    ],
)  # fmt: skip
def test_identify_reads_trailers_and_fallbacks(
    body: str, message: str, labels: tuple[str, ...], expected: AgentIdentity
) -> None:
    """Trailers (body first), then an `agent:` label, then markers and co-author lines; else
    the authorship is unknown (never human for lacking a marker)."""
    assert identify("priya-raman", body, message, labels=labels) == expected


@pytest.mark.parametrize(
    ("body", "message", "repo", "spec"),
    [
        pytest.param("Closes #12", "", None, "#12", id="closes"),
        pytest.param("Closes #12", "", "acme/checkout", "acme/checkout#12", id="closes-qualified"),
        pytest.param("This fixes owner/repo#3.", "", "acme/checkout", "owner/repo#3",
                     id="fixes-other-repo"),
        pytest.param("Resolves https://github.com/acme/checkout/issues/7", "", "acme/checkout",
                     "https://github.com/acme/checkout/issues/7", id="issue-url"),
        pytest.param("Fixed: #5", "", None, "#5", id="keyword-with-colon"),
        pytest.param("Fixes #1, and closes #2", "", None, "#1", id="first-keyword"),
        pytest.param("Spec: acme/checkout#88\n\nCloses #12", "", None, "acme/checkout#88",
                     id="spec-trailer-beats-keyword"),
        pytest.param("Closes #12", "Spec: acme/checkout#88", None, "acme/checkout#88",
                     id="spec-trailer-in-message-beats-keyword-in-body"),
        pytest.param("Spec: #42", "", "acme/checkout", "acme/checkout#42",
                     id="bare-spec-trailer-qualified"),
        pytest.param("Spec: https://linear.app/acme/issue/ACM-7", "", "acme/checkout",
                     "https://linear.app/acme/issue/ACM-7", id="any-spec-trailer-kept"),
        pytest.param("", "Squash (#104)\n\nCloses #95", "acme/checkout", "acme/checkout#95",
                     id="keyword-in-commit-message"),
        pytest.param("A prefix #9 and a hotfix #10", "", None, None, id="not-a-keyword"),
        pytest.param("Closes the loop on retries.", "", None, None, id="keyword-without-issue"),
    ],
)  # fmt: skip
def test_spec_is_the_trailer_else_the_first_closing_keyword(
    body: str, message: str, repo: str | None, spec: str | None
) -> None:
    """A `Spec:` trailer names the spec; else the first closing keyword; `#N` takes the repo."""
    found = identify("codex[bot]", body + "\nAgent-Name: codex", message, repo=repo)
    assert found.spec == spec


@pytest.mark.parametrize(
    ("tokens", "cost", "expected_tokens", "expected_cost"),
    [
        ("48211", "0.73", 48211, 0.73),
        ("48,211", "$1,234.50", 48211, 1234.5),
        ("0", "0", 0, 0.0),
        ("12k", "about a dollar", None, None),
        ("1.5", "1e3", None, 1000.0),
        ("-3", "-0.5", None, None),
        ("99", "nan", 99, None),
        ("99", "inf", 99, None),
    ],
)
def test_usage_numbers_are_parsed_or_dropped(
    tokens: str, cost: str, expected_tokens: int | None, expected_cost: float | None
) -> None:
    """Token and cost trailers become numbers; junk, negative or non-finite values become None."""
    body = f"Agent-Name: codex\nAgent-Tokens: {tokens}\nAgent-Cost-USD: {cost}"
    found = identify("codex[bot]", body)
    assert found.tokens == expected_tokens
    assert found.cost_usd == expected_cost


def test_trailers_keep_the_first_text_on_conflict() -> None:
    """`trailers` lower-cases keys and lets earlier texts win."""
    assert trailers("SPEC: a#1\nagent-name: x", "Spec: b#2\nAgent-Role: r") == {
        "spec": "a#1",
        "agent-name": "x",
        "agent-role": "r",
    }


def test_identify_agrees_with_the_demo_ground_truth(demo: DemoRepo) -> None:
    """Every demo PR parses to the session its trailers were written from; `#N` takes the repo."""
    assert len(demo.prs) == 6
    for pr in demo.prs:
        truth = pr.identity
        bare = identify(pr.author, pr.body, labels=pr.labels)
        assert replace(bare, spec=truth.spec) == truth, pr.number
        if bare.spec != truth.spec:
            assert truth.spec == f"{pr.repo}{bare.spec}", pr.number
        assert identify(pr.author, pr.body, labels=pr.labels, repo=pr.repo) == truth, pr.number
    assert identify(demo.pr(104).author, demo.pr(104).body).spec == "#95"
    assert demo.pr(102).identity == AgentIdentity("unknown", "dana-ortiz")


async def test_demo_merge_commits_alone_identify_the_session(demo: DemoRepo) -> None:
    """The real merge and squash commit messages carry the same identity as the PR bodies."""
    commits = await LocalGitForge(Path(demo.path)).commits_between(
        demo.repo, demo.initial_sha, demo.deploys[-1].sha
    )
    messages = {c.sha: c.message for c in commits}
    for pr in demo.prs:
        found = identify(pr.author, "", messages[pr.merge_sha], repo=pr.repo)
        assert found == pr.identity, pr.number
