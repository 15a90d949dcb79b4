"""Watch transitions written together: the moves of many Watches in one transaction, a handful
of statements however many there are.

Every DuckDB statement costs the one writer thread about a millisecond whatever it does, and a
transaction two more (BEGIN, COMMIT): written alone, an evaluation's move (the Watch's row, its
observations) took about 6 ms, most of a core's worth at 1,000 Watches on a 15 s step (README
"Capacity"). So `WatchQueries.transition` hands each move to a group commit
(`StoreWriter.group`), and a batch is written here: one UPDATE, a compare-and-set per row on the
Watch's phase and version, for every move whose Watch is still where its step read it, then one
INSERT for all their observations; the rarer rows (a phase change's transition, an incident, the
kept baselines) are written one by one. A move refused by its compare-and-set writes nothing.

Moves of the same Watch in one batch (the scheduler's step and a webhook's, say) are written in
the order they came, each run of moves with no Watch twice in its own UPDATE, so the second sees
the first's version, as if each had its own transaction.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import duckdb

from attribution.store_incidents import IncidentQueries
from attribution.store_prs import PullRequestQueries
from attribution.store_rounds import RevertRoundQueries
from attribution.watch_rows import (
    DeployPrs,
    KeptBaselines,
    NextRound,
    Observations,
    OpenIncident,
    WatchRow,
)

OBSERVATION_COLUMNS = (
    "deploy_id", "seq", "observed_at", "sli", "status", "reason", "baseline_value",
    "watch_value", "baseline_bad", "baseline_total", "watch_bad", "watch_total", "statistic",
    "threshold", "effect", "null_value", "onset", "mode", "queries", "windows",
)  # fmt: skip
_WRITTEN = [*OBSERVATION_COLUMNS, "due_at"]
_TIMESTAMPS = {"observed_at", "due_at"}
_OBSERVATION_ROW = (
    "(" + ", ".join("to_timestamp(?)" if c in _TIMESTAMPS else "?" for c in _WRITTEN) + ")"
)

MOVE_WAIT = 0.005
"""Seconds a move waits for others to share its transaction (`GroupCommit.max_wait`). Watches
spread over the step evaluate every few milliseconds at 1,000 of them; a few milliseconds more
on a transition is nothing beside a 15 s step, and a move that came while the writer was busy
does not wait at all."""


@dataclass(frozen=True, slots=True)
class Move:
    """One Watch transition as the store writes it (`WatchQueries.transition`)."""

    deploy_id: str
    from_phase: str
    to_phase: str
    now: float
    next_due: float
    reason: str
    verdict: str | None
    """The verdict to keep, as JSON text; None keeps the one kept before."""
    rows: Sequence[WatchRow] = ()
    version: int | None = None


def json_or_value(value: Any) -> Any:
    """Dicts and lists go into JSON columns as text; everything else is bound as it is."""
    return json.dumps(value) if isinstance(value, dict | list) else value


def write_moves(cur: duckdb.DuckDBPyConnection, moves: Sequence[Move]) -> list[bool]:
    """Write `moves` in order on `cur` (inside the caller's transaction); per move, whether it
    was applied."""
    applied: list[bool] = []
    for run in _runs(moves):
        applied += _write_run(cur, run)
    return applied


def _runs(moves: Sequence[Move]) -> list[list[Move]]:
    """`moves` cut, in order, into runs in which no Watch appears twice."""
    runs: list[list[Move]] = []
    seen: set[str] = set()
    for move in moves:
        if not runs or move.deploy_id in seen:
            runs.append([])
            seen = set()
        runs[-1].append(move)
        seen.add(move.deploy_id)
    return runs


def _write_run(cur: duckdb.DuckDBPyConnection, moves: Sequence[Move]) -> list[bool]:
    params: list[Any] = []
    for m in moves:
        evaluated = sum(isinstance(row, Observations) for row in m.rows)
        params += [m.deploy_id, m.from_phase, m.to_phase, m.next_due, m.now, m.reason, m.verdict,
                   m.version, evaluated]  # fmt: skip
    values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(moves))
    moved = {
        str(deploy_id): int(evaluations)
        for deploy_id, evaluations in cur.execute(
            "UPDATE watches SET phase = v.to_phase, "
            "next_due = to_timestamp(CAST(v.next_due AS DOUBLE)), "
            "updated_at = to_timestamp(CAST(v.now AS DOUBLE)), reason = v.reason, "
            "verdict = coalesce(CAST(v.verdict AS JSON), watches.verdict), "
            "version = watches.version + 1, "
            "evaluations = watches.evaluations + CAST(v.evaluated AS INTEGER) "
            f"FROM (VALUES {values}) AS v(deploy_id, from_phase, to_phase, next_due, now, "
            "reason, verdict, version, evaluated) "
            "WHERE watches.deploy_id = v.deploy_id AND watches.phase = v.from_phase "
            "AND (v.version IS NULL OR watches.version = CAST(v.version AS BIGINT)) "
            "RETURNING watches.deploy_id, watches.evaluations",
            params,
        ).fetchall()
    }
    evaluations: list[tuple[Observations, int]] = []
    for m in moves:
        if m.deploy_id not in moved:
            continue
        if m.from_phase != m.to_phase:
            cur.execute(
                "INSERT INTO transitions SELECT ?, coalesce(max(seq), 0) + 1, ?, ?, "
                "to_timestamp(?), ? FROM transitions WHERE deploy_id = ?",
                [m.deploy_id, m.from_phase, m.to_phase, m.now, m.reason, m.deploy_id],
            )
        observed = [row for row in m.rows if isinstance(row, Observations)]
        first = moved[m.deploy_id] - len(observed) + 1  # the seqs this move's UPDATE counted
        evaluations += [(row, first + n) for n, row in enumerate(observed)]
        for row in m.rows:
            if not isinstance(row, Observations):
                write_row(cur, row)
    insert_observations(cur, evaluations)
    return [m.deploy_id in moved for m in moves]


def write_row(cur: duckdb.DuckDBPyConnection, row: WatchRow) -> None:
    """Write one of a transition's rows other than its observations (see
    `attribution.watch_rows`), which take their seq from the Watch's row (`_write_run`)."""
    match row:
        case Observations():
            raise ValueError("observations are written with their Watch's move")
        case OpenIncident(incident):
            IncidentQueries.insert_incident(cur, incident)
        case NextRound(revert_round):
            RevertRoundQueries.insert_round(cur, revert_round)
        case DeployPrs(deploy_id, repo, numbers):
            PullRequestQueries.write_deploy_prs(cur, deploy_id, repo, numbers)
        case KeptBaselines():
            cur.execute(
                "INSERT OR REPLACE INTO watch_baselines VALUES (?, ?, ?, ?, ?, to_timestamp(?))",
                [row.deploy_id, row.sli, json.dumps(row.plan), json.dumps(row.baselines),
                 json.dumps(row.spans), row.read_at],
            )  # fmt: skip


def insert_observations(
    cur: duckdb.DuckDBPyConnection, evaluations: Sequence[tuple[Observations, int]]
) -> None:
    """Write evaluations' rows, each evaluation under the `seq` given with it, in one INSERT."""
    rows = [(e, seq, r) for e, seq in evaluations for r in e.results]
    if not rows:
        return
    params: list[Any] = []
    for e, seq, r in rows:
        params += [e.deploy_id, seq, e.observed_at]
        params += [json_or_value(r.get(c)) for c in OBSERVATION_COLUMNS[3:]]
        params.append(e.due_at)
    cur.execute(
        f"INSERT INTO observations ({', '.join(_WRITTEN)}) "
        f"VALUES {', '.join([_OBSERVATION_ROW] * len(rows))}",
        params,
    )
