"""The DuckDB store (`attribution.store`) on a real database file in `tmp_path`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from attribution.records import (
    AgentIdentity,
    Deploy,
    Incident,
    MergedPR,
    RevertRound,
    Suspect,
)
from attribution.store import Store, StoreError
from attribution.watch_rows import Observations, OpenIncident

T0 = 1_740_992_400.0  # 2025-03-03T09:00:00Z

DEPLOY = Deploy(
    id="cd_1",
    service="checkout",
    environment="production",
    sha="c1a29dd68c157f04ab769caf04efb7ce5f86b54b",
    finished_at=T0,
    source="cd",
    repo="acme/checkout",
    previous_sha="1046c3a3bb90ec639ec3f4eaaf4bba2a4bd642e7",
    started_at=T0 - 90,
    url="https://ci.example.com/runs/1",
)

CODEX = AgentIdentity(
    kind="agent",
    name="codex",
    session="cx-2b81d0c4",
    model="gpt-5-codex",
    role="refactorer",
    spec="acme/checkout#93",
    tokens=61877,
    cost_usd=1.12,
)


def merged_pr(number: int, merged_at: float, identity: AgentIdentity = CODEX) -> MergedPR:
    return MergedPR(
        repo="acme/checkout",
        number=number,
        title=f"PR {number}",
        author="codex[bot]" if identity.is_agent else identity.name,
        url=f"https://github.com/acme/checkout/pull/{number}",
        merge_sha=f"{number:040x}",
        head_sha=f"{number + 1000:040x}",
        base_ref="main",
        merged_at=merged_at,
        body=f"Body of {number}\n\nAgent-Session: {identity.session}",
        identity=identity,
        labels=("agent:codex", "payments"),
        files=("checkout/payment.py", "tests/test_payment.py"),
        node_id=f"PR_{number}",
    )


INCIDENT = Incident(
    id="inc_0123456789ab",
    deploy_id="cd_1",
    service="checkout",
    environment="production",
    sli="http_errors",
    opened_at=T0 + 300,
    verdict={"status": "regressed", "reason": "bad rate 5% vs 0.5%", "results": []},
    ambiguous=False,
    confidence=0.91,
    revert_unit=(103,),
    reason="#103 touches the failing route",
    suspects=(
        Suspect("acme/checkout", 103, 0.91, "stack frames in checkout/payment.py"),
        Suspect("acme/checkout", 104, 0.06, "no evidence"),
    ),
)


def writes(incident: Incident) -> tuple[OpenIncident]:
    """The rows of a transition that opens `incident`."""
    return (OpenIncident(incident),)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    """An open store on a fresh DuckDB file, closed after the test."""
    opened = await Store.open(tmp_path / "store" / "rearguard.duckdb")
    yield opened
    await opened.close()


SCHEMA_VERSIONS = sorted(
    int(p.name[:3]) for p in (Path(__file__).parent.parent / "attribution" / "schema").glob("*.sql")
)


async def test_migrations_are_idempotent_on_reopen(tmp_path: Path) -> None:
    """Reopening an existing file applies no migration twice and keeps its tables."""
    path = tmp_path / "rearguard.duckdb"
    for _ in range(3):
        store = await Store.open(path)
        versions = await store.fetch("SELECT version FROM schema_migrations ORDER BY version")
        tables = await store.fetch("SELECT table_name FROM information_schema.tables")
        await store.close()
        assert versions == [(v,) for v in SCHEMA_VERSIONS]
        assert {"journal", "deploys", "watches", "incidents", "actions"} <= {t[0] for t in tables}


async def test_journal_recognises_a_redelivery(store: Store) -> None:
    """The same delivery from the same source is journaled once; its status is kept."""
    first = await store.journal.record(
        "github", "pull_request", "d-1", status="accepted", received_at=T0, body={"n": 1}
    )
    again = await store.journal.record(
        "github", "pull_request", "d-1", status="ignored", received_at=T0
    )
    other_source = await store.journal.record(
        "cd", "deploy", "d-1", status="rejected", received_at=T0
    )
    assert (first, again, other_source) == (True, False, True)
    assert await store.journal.status("github", "d-1") == "accepted"
    assert await store.journal.status("cd", "d-1") == "rejected"
    assert await store.journal.status("github", "d-2") is None
    bodies = await store.fetch("SELECT body FROM journal WHERE id = 'github:d-1'")
    assert bodies == [('{"n": 1}',)]


async def test_record_deploy_twice_keeps_one_watch(store: Store) -> None:
    """A deploy id already recorded is refused, and its Watch is neither doubled nor reset."""
    assert await store.watches.record_deploy(DEPLOY, "deployed", now=T0) is True
    await store.watches.transition(DEPLOY.id, "deployed", "observing", now=T0 + 1, next_due=T0 + 15,
                                   reason="range resolved")  # fmt: skip
    assert await store.watches.record_deploy(DEPLOY, "deployed", now=T0 + 2) is False
    assert await store.fetch("SELECT count(*) FROM watches") == [(1,)]
    watch = await store.watches.watch(DEPLOY.id)
    assert watch is not None
    assert (watch.phase, watch.next_due) == ("observing", T0 + 15)
    assert await store.watches.deploy(DEPLOY.id) == DEPLOY
    assert [t["seq"] for t in await store.watches.timeline(DEPLOY.id)] == [0, 1]


async def test_transition_moves_the_watch_and_writes_its_row(store: Store) -> None:
    """A transition from the current phase updates the Watch and appends to its timeline."""
    await store.watches.record_deploy(DEPLOY, "deployed", now=T0)
    verdict = {"status": "observing", "reason": "watching", "results": []}
    moved = await store.watches.transition(DEPLOY.id, "deployed", "observing", now=T0 + 5,
                                           next_due=T0 + 20, reason="2 PRs",
                                           verdict=verdict)  # fmt: skip
    assert moved is True
    watch = await store.watches.watch(DEPLOY.id)
    assert watch is not None
    assert (watch.phase, watch.next_due, watch.reason) == ("observing", T0 + 20, "2 PRs")
    assert await store.watches.watch_verdict(DEPLOY.id) == verdict
    timeline = await store.watches.timeline(DEPLOY.id)
    assert timeline[-1] == {"seq": 1, "from": "deployed", "to": "observing", "at": T0 + 5,
                            "reason": "2 PRs"}  # fmt: skip


async def test_staying_in_a_phase_reschedules_without_a_timeline_row(store: Store) -> None:
    """A same-phase transition moves `next_due` and keeps the last verdict, but is no transition."""
    await store.watches.record_deploy(DEPLOY, "observing", now=T0)
    verdict = {"status": "observing", "reason": "watching", "results": []}
    await store.watches.transition(DEPLOY.id, "observing", "observing", now=T0 + 15,
                                   next_due=T0 + 30, reason="step 1", verdict=verdict)  # fmt: skip
    await store.watches.transition(DEPLOY.id, "observing", "observing", now=T0 + 30,
                                   next_due=T0 + 45, reason="step 2")  # fmt: skip
    watch = await store.watches.watch(DEPLOY.id)
    assert watch is not None
    assert (watch.next_due, watch.reason) == (T0 + 45, "step 2")
    assert await store.watches.watch_verdict(DEPLOY.id) == verdict
    assert len(await store.watches.timeline(DEPLOY.id)) == 1


async def test_transition_from_the_wrong_phase_writes_nothing(store: Store) -> None:
    """A Watch no longer in `from_phase` is left alone, and its rows are not written."""
    await store.watches.record_deploy(DEPLOY, "observing", now=T0)
    moved = await store.watches.transition(DEPLOY.id, "deployed", "regressed", now=T0 + 5,
                                           next_due=T0 + 5, reason="late replay",
                                           rows=writes(INCIDENT))  # fmt: skip
    assert moved is False
    assert await store.incidents.incident(INCIDENT.id) is None
    watch = await store.watches.watch(DEPLOY.id)
    assert watch is not None
    assert (watch.phase, watch.next_due) == ("observing", T0)
    assert len(await store.watches.timeline(DEPLOY.id)) == 1
    assert await store.watches.transition("cd_unknown", "observing", "healthy", now=T0, next_due=T0,
                                          reason="x") is False  # fmt: skip


async def test_transition_whose_rows_fail_rolls_back_everything(store: Store) -> None:
    """If a row written inside a transition fails, neither it nor the phase change is kept."""
    await store.watches.record_deploy(DEPLOY, "observing", now=T0)
    with pytest.raises(StoreError, match=r"(?i)duplicate|constraint"):  # the second row repeats
        await store.watches.transition(DEPLOY.id, "observing", "regressed", now=T0 + 300,
                                       next_due=T0 + 300, reason="regressed",
                                       rows=writes(INCIDENT) * 2)  # fmt: skip
    watch = await store.watches.watch(DEPLOY.id)
    assert watch is not None
    assert watch.phase == "observing"
    assert len(await store.watches.timeline(DEPLOY.id)) == 1
    assert await store.incidents.incident(INCIDENT.id) is None
    assert await store.fetch("SELECT count(*) FROM suspects") == [(0,)]
    # The store is still usable: the same transition succeeds once the work does.
    assert await store.watches.transition(DEPLOY.id, "observing", "regressed", now=T0 + 300,
                                          next_due=T0 + 300, reason="regressed",
                                          rows=writes(INCIDENT))  # fmt: skip
    assert await store.incidents.incident(INCIDENT.id) == INCIDENT


async def test_incident_and_suspects_round_trip(store: Store) -> None:
    """An incident written inside a transition reads back equal, suspects in rank order."""
    await store.watches.record_deploy(DEPLOY, "observing", now=T0)
    second = Deploy("cd_2", "checkout", "production", "f" * 40, T0 + 3600, "cd")
    await store.watches.record_deploy(second, "observing", now=T0 + 3600)
    later = Incident("inc_later", "cd_2", "checkout", "production", None, T0 + 3900,
                     {"status": "regressed"}, True, 0.4, (104, 105, 106), "ambiguous")  # fmt: skip
    for deploy_id, incident in (("cd_1", INCIDENT), ("cd_2", later)):
        await store.watches.transition(deploy_id, "observing", "regressed", now=incident.opened_at,
                                       next_due=incident.opened_at, reason="regressed",
                                       rows=writes(incident))  # fmt: skip
    assert await store.incidents.incident(INCIDENT.id) == INCIDENT
    assert await store.incidents.incident_for_deploy("cd_2") == later
    assert await store.incidents.incident("inc_missing") is None
    assert [i.id for i in await store.incidents.recent()] == ["inc_later", INCIDENT.id]
    assert [i.id for i in await store.incidents.recent(limit=1)] == ["inc_later"]


async def test_begin_action_is_idempotent_and_counts_attempts(store: Store) -> None:
    """Beginning a key again returns the same action with one more attempt, until it finishes."""
    first = await store.incidents.begin_action("revert:inc_1", "inc_1", "revert", now=T0)
    second = await store.incidents.begin_action("revert:inc_1", "inc_1", "revert", now=T0 + 5)
    assert (first.status, first.attempts) == ("pending", 1)
    assert (second.id, second.status, second.attempts) == ("revert:inc_1", "pending", 2)
    await store.incidents.note_action_error("revert:inc_1", now=T0 + 6, error="502 from GitHub")
    assert (await store.incidents.actions("inc_1"))[0].error == "502 from GitHub"
    await store.incidents.finish_action("revert:inc_1", "completed", now=T0 + 10,
                                        url="https://github.com/acme/checkout/pull/120",
                                        detail={"number": 120, "reused": False})  # fmt: skip
    after = await store.incidents.begin_action("revert:inc_1", "inc_1", "revert", now=T0 + 20)
    assert (after.status, after.attempts) == ("completed", 2)
    assert after.url == "https://github.com/acme/checkout/pull/120"
    assert after.detail == {"number": 120, "reused": False}
    assert after.error is None


async def test_actions_list_per_incident(store: Store) -> None:
    """Actions are listed per incident, oldest first; a failed one keeps its error."""
    await store.incidents.begin_action("revert:inc_1", "inc_1", "revert", now=T0)
    await store.incidents.begin_action("notify:inc_1", "inc_1", "notify", now=T0 + 1)
    await store.incidents.begin_action("revert:inc_2", "inc_2", "revert", now=T0 + 2)
    await store.incidents.finish_action(
        "notify:inc_1", "failed", now=T0 + 3, error="channel_not_found"
    )
    actions = await store.incidents.actions("inc_1")
    assert [(a.id, a.kind, a.status) for a in actions] == [
        ("revert:inc_1", "revert", "pending"),
        ("notify:inc_1", "notify", "failed"),
    ]
    assert actions[1].error == "channel_not_found"
    assert await store.incidents.actions("inc_none") == []


async def test_record_pr_upserts_and_keeps_the_agent_session(store: Store) -> None:
    """Recording a PR again refreshes it; its agent session is kept once, human PRs have none."""
    pr = merged_pr(103, T0)
    await store.prs.record_pr(pr, now=T0)
    edited = replace(pr, title="Simplify charge()", labels=("agent:codex",))
    await store.prs.record_pr(edited, now=T0 + 60)
    human = merged_pr(102, T0 - 60, AgentIdentity("human", "dana-ortiz"))
    await store.prs.record_pr(human, now=T0)
    assert await store.prs.of_repo("acme/checkout") == [human, edited]
    assert await store.prs.of_repo("acme/checkout", [103]) == [edited]
    assert await store.prs.of_repo("acme/other") == []
    sessions = await store.fetch(
        "SELECT id, agent_name, model, role, tokens, cost_usd FROM agent_sessions"
    )
    assert sessions == [("cx-2b81d0c4", "codex", "gpt-5-codex", "refactorer", 61877, 1.12)]


async def test_deploy_prs_come_back_oldest_merge_first(store: Store) -> None:
    """A deploy's PRs read back by merge time, whatever order they were set in; a reset replaces."""
    for number, merged_at in ((104, T0 + 200), (105, T0 + 100), (106, T0 + 300)):
        await store.prs.record_pr(merged_pr(number, merged_at), now=T0)
    await store.watches.record_deploy(DEPLOY, "deployed", now=T0)
    await store.prs.set_deploy_prs(DEPLOY.id, "acme/checkout", [106, 104, 105])
    assert [p.number for p in await store.prs.deploy_prs(DEPLOY.id)] == [105, 104, 106]
    assert (await store.prs.deploy_prs(DEPLOY.id))[0] == merged_pr(105, T0 + 100)
    await store.prs.set_deploy_prs(DEPLOY.id, "acme/checkout", [106])
    assert [p.number for p in await store.prs.deploy_prs(DEPLOY.id)] == [106]
    assert await store.prs.deploy_prs("cd_unknown") == []


async def test_due_watches_and_previous_deploy(store: Store) -> None:
    """Due watches are those in the asked phases and due; the previous deploy is the latest one
    of the same service and environment before this one."""
    older = Deploy("cd_0", "checkout", "production", "a" * 40, T0 - 3600, "cd")
    staging = Deploy("cd_s", "checkout", "staging", "b" * 40, T0 - 60, "cd")
    for deploy in (older, staging, DEPLOY):
        await store.watches.record_deploy(deploy, "observing", now=deploy.finished_at)
    due = await store.watches.due_watches(["observing"], now=T0 - 30)
    assert [w.deploy_id for w in due] == ["cd_0", "cd_s"]
    assert await store.watches.due_watches(["rolling_back"], now=T0 + 10) == []
    # With the next due: the due ones and those at the earliest `next_due` to come, no more.
    later = Deploy("cd_2", "checkout", "canary", "c" * 40, T0 + 60, "cd")
    await store.watches.record_deploy(later, "observing", now=later.finished_at)
    upcoming = await store.watches.due_watches(["observing"], now=T0 - 30, with_next=True)
    assert [(w.deploy_id, w.next_due) for w in upcoming] == [
        ("cd_0", T0 - 3600), ("cd_s", T0 - 60), ("cd_1", T0),
    ]  # fmt: skip
    upcoming = await store.watches.due_watches(["observing"], now=T0 + 60, with_next=True)
    assert [w.deploy_id for w in upcoming] == ["cd_0", "cd_s", "cd_1", "cd_2"]
    assert await store.watches.due_watches(["healthy"], now=T0, with_next=True) == []
    assert await store.watches.previous_deploy(DEPLOY) == older
    assert await store.watches.previous_deploy(older) is None
    assert [d.id for d in await store.watches.deploys()] == ["cd_2", "cd_1", "cd_s", "cd_0"]


async def test_observations_count_evaluations(store: Store) -> None:
    """Each evaluation's per-SLI rows share one sequence number."""
    row: dict[str, object] = {
        "sli": "errors", "status": "observing", "reason": "watching", "baseline_value": 0.005,
        "watch_value": None, "baseline_bad": 60.0, "baseline_total": 12000.0, "watch_bad": 0.0,
        "watch_total": 0.0, "statistic": 0.0, "threshold": 6.9, "effect": None,
    }  # fmt: skip
    await store.watches.record_deploy(DEPLOY, "observing", now=T0)
    for at, results in ((T0 + 15, [row, {**row, "sli": "memory"}]), (T0 + 30, [row])):
        assert await store.watches.transition(
            DEPLOY.id, "observing", "observing", now=at, next_due=at + 15, reason="watching",
            rows=(Observations(DEPLOY.id, at, results),),
        )  # fmt: skip
    assert await store.watches.observation_count(DEPLOY.id) == 2
    assert await store.fetch("SELECT seq, sli FROM observations ORDER BY ALL") == [
        (1, "errors"), (1, "memory"), (2, "errors"),
    ]  # fmt: skip
    assert await store.watches.observation_count("cd_none") == 0


async def test_observations_batched_in_the_transition_keep_every_row(store: Store) -> None:
    """One evaluation's rows go in with its transition, in one INSERT: each SLI's row reads back
    as it was given, all under the same sequence number; a transition that does not apply (the
    Watch already moved on) writes no observation either."""
    await store.watches.record_deploy(DEPLOY, "observing", now=T0)
    rows: list[dict[str, object]] = [
        {"sli": "errors", "status": "observing", "reason": "watching", "baseline_value": 0.005,
         "watch_value": 0.02, "baseline_bad": 60.0, "baseline_total": 12000.0, "watch_bad": 3.0,
         "watch_total": 150.0, "statistic": 1.5, "threshold": 6.9, "effect": 4.0,
         "null_value": 0.006, "onset": 15.0, "mode": "before_after",
         "queries": {"bad": "b", "total": "t"}, "windows": {"watch": [T0 + 15, T0 + 30]}},
        {"sli": "latency", "status": "observing", "reason": "no data", "baseline_value": None,
         "watch_value": None, "baseline_bad": None, "baseline_total": None, "watch_bad": None,
         "watch_total": None, "statistic": None, "threshold": None, "effect": None,
         "null_value": None, "onset": None, "mode": None, "queries": None, "windows": None},
    ]  # fmt: skip

    def observed(at: float) -> tuple[Observations]:
        return (Observations(DEPLOY.id, at, rows),)

    for at in (T0 + 30, T0 + 45):
        moved = await store.watches.transition(
            DEPLOY.id, "observing", "observing", now=at, next_due=at + 15, reason="watching",
            rows=observed(at),
        )  # fmt: skip
        assert moved
    stale = await store.watches.transition(
        DEPLOY.id, "regressed", "observing", now=T0 + 60, next_due=T0 + 75, reason="stale",
        rows=observed(T0 + 60),
    )  # fmt: skip
    assert not stale
    kept = await store.watches.observations(DEPLOY.id, latest_only=False)
    assert [(r["seq"], r["sli"], r["observed_at"]) for r in kept] == [
        (1, "errors", T0 + 30), (1, "latency", T0 + 30),
        (2, "errors", T0 + 45), (2, "latency", T0 + 45),
    ]  # fmt: skip
    for got in kept:
        given = next(r for r in rows if r["sli"] == got["sli"])
        assert {k: got[k] for k in given} == given
    assert await store.watches.observation_count(DEPLOY.id) == 2


async def test_a_watch_and_its_deploy_read_together(store: Store) -> None:
    """The read at the start of every Watch step: the same as the two separate reads."""
    assert await store.watches.watch_deploy(DEPLOY.id) is None
    await store.watches.record_deploy(DEPLOY, "deployed", now=T0)
    found = await store.watches.watch_deploy(DEPLOY.id)
    assert found == (await store.watches.watch(DEPLOY.id), DEPLOY)


async def test_revert_rounds_wake_the_watch_only_in_the_phases_given(store: Store) -> None:
    """Linking a revert's deploy and closing a revert PR move the Watch's `next_due` only while
    it is in the phase(s) the caller names; the round itself is linked or settled either way."""
    await store.watches.record_deploy(DEPLOY, "observing", now=T0)
    await store.watches.transition(DEPLOY.id, "observing", "regressed", now=T0 + 300,
                                   next_due=T0 + 900, reason="regressed",
                                   rows=writes(INCIDENT))  # fmt: skip
    first = RevertRound(INCIDENT.id, 1, (103,), "revert:inc", T0 + 301, "top suspect")
    second = RevertRound(INCIDENT.id, 2, (104,), "revert:inc:2", T0 + 302, "next suspect")
    await store.rounds.ensure_round(first)
    await store.rounds.ensure_round(second)

    async def next_due() -> float:
        watch = await store.watches.watch(DEPLOY.id)
        assert watch is not None
        return watch.next_due

    linked = await store.rounds.link_round_deploy(
        first, "cd_2", DEPLOY.id, phase="reverted", now=T0 + 400, due=T0 + 415, reason="deployed"
    )
    assert linked is True
    assert await next_due() == T0 + 900
    linked = await store.rounds.link_round_deploy(
        second, "cd_3", DEPLOY.id, phase="regressed", now=T0 + 450, due=T0 + 465, reason="deployed"
    )
    assert linked is True
    assert await next_due() == T0 + 465
    assert [r.deploy_id for r in await store.rounds.of_incident(INCIDENT.id)] == ["cd_2", "cd_3"]

    closed = await store.rounds.close_revert("revert:inc", phases=("reverted", "rolling_back"),
                                             now=T0 + 500, note="closed by @ana")  # fmt: skip
    assert closed == INCIDENT.id
    assert await next_due() == T0 + 465
    assert (await store.rounds.of_incident(INCIDENT.id))[0].outcome == "closed"
    await store.rounds.close_revert("revert:inc", phases=("regressed",), now=T0 + 600, note="x")
    assert await next_due() == T0 + 600


async def test_data_survives_close_and_reopen(tmp_path: Path) -> None:
    """Everything written before `close` reads back the same from a new `Store` on the file."""
    path = tmp_path / "rearguard.duckdb"
    store = await Store.open(path)
    await store.watches.record_deploy(DEPLOY, "observing", now=T0)
    await store.prs.record_pr(merged_pr(103, T0 - 600), now=T0)
    await store.prs.set_deploy_prs(DEPLOY.id, "acme/checkout", [103])
    await store.watches.transition(DEPLOY.id, "observing", "regressed", now=T0 + 300,
                                   next_due=T0 + 300, reason="regressed",
                                   rows=writes(INCIDENT))  # fmt: skip
    await store.incidents.begin_action("revert:inc", INCIDENT.id, "revert", now=T0 + 301)
    await store.journal.record("cd", "deploy", "d-9", status="accepted", received_at=T0)
    await store.close()

    reopened = await Store.open(path)
    try:
        assert await reopened.watches.deploy(DEPLOY.id) == DEPLOY
        watch = await reopened.watches.watch(DEPLOY.id)
        assert watch is not None
        assert watch.phase == "regressed"
        assert [t["to"] for t in await reopened.watches.timeline(DEPLOY.id)] == [
            "observing",
            "regressed",
        ]
        assert await reopened.prs.deploy_prs(DEPLOY.id) == [merged_pr(103, T0 - 600)]
        assert await reopened.incidents.incident(INCIDENT.id) == INCIDENT
        assert [(a.id, a.attempts) for a in await reopened.incidents.actions(INCIDENT.id)] == [
            ("revert:inc", 1)
        ]
        assert (
            await reopened.journal.record("cd", "deploy", "d-9", status="x", received_at=T0)
            is False
        )
    finally:
        await reopened.close()


async def test_feedback_is_kept_once_per_key(tmp_path: Path) -> None:
    """The same signal delivered twice is recorded once."""
    store = await Store.open(tmp_path / "s.duckdb")
    try:
        first = await store.incidents.record_feedback(
            "slack:a1", "inc_1", "wrong_pr", actor="priya", source="slack", now=1e9, pr_number=7
        )
        again = await store.incidents.record_feedback(
            "slack:a1", "inc_1", "wrong_pr", actor="priya", source="slack", now=1e9, pr_number=7
        )
        assert (first, again) == (True, False)
        rows = await store.fetch("SELECT incident_id, kind, pr_number, actor FROM feedback")
        assert rows == [("inc_1", "wrong_pr", 7, "priya")]
    finally:
        await store.close()
