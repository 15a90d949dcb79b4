"""Evidence queries (`store.evidence`): the attribution tables of the store (schema
`004_attribution.sql`): PR files and facts, CI runs, errors and alerts, and the rows feedback
learns from.

Like every query group it runs on the store's one writer (`StoreWriter.call`), so its writes stay
ordered with the rest; it reads merged PRs through the PR group. Records go in and come out as
the frozen values of `attribution.evidence` and `attribution.diffs`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

import duckdb

from attribution.diffs import FileChange
from attribution.evidence import ErrorEvent, FiringAlert, Frame, PrChange
from attribution.feedback import Blame, Signal
from attribution.records import MergedPR
from attribution.store_prs import PullRequestQueries
from attribution.store_reports import write_pr_loop
from attribution.store_writer import R, StoreWriter, fetch_records

_FILE_COLUMNS = "number, path, status, additions, deletions, ranges, previous_path, edits"


def _numbered_file(
    *, number: int, ranges: str, edits: str | None, **columns: Any
) -> tuple[int, FileChange]:
    """A `pr_files` row as its PR's number and the file, line ranges and edits decoded."""
    spans = tuple((int(a), int(b)) for a, b in json.loads(ranges))
    kept = tuple((int(a), int(b), int(c), int(d)) for a, b, c, d in json.loads(edits or "[]"))
    return number, FileChange(ranges=spans, edits=kept, **columns)


def _blame(
    *, suspects: list[int], ambiguous: bool, revert_unit: list[int], **columns: Any
) -> Blame:
    return Blame(
        suspects=tuple(suspects),
        ambiguous=bool(ambiguous),
        revert_unit=tuple(revert_unit),
        **columns,
    )


class EvidenceQueries:
    """Attribution's tables: PR files, CI runs, error and alert signals, and what learning reads."""

    def __init__(self, writer: StoreWriter, prs: PullRequestQueries) -> None:
        self._writer = writer
        self._prs = prs

    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return await self._writer.call(lambda cur: cur.execute(sql, list(params)).fetchall())

    async def _records(self, sql: str, params: Sequence[Any], make: Callable[..., R]) -> list[R]:
        return await self._writer.call(
            lambda cur: fetch_records(cur.execute(sql, list(params)), make)
        )

    async def record_pr_files(
        self, repo: str, number: int, files: Sequence[FileChange], opened_at: float | None = None
    ) -> None:
        """Keep every file of a PR (replacing what was held) and mark its files known."""

        def write(cur: duckdb.DuckDBPyConnection) -> None:
            cur.execute("DELETE FROM pr_files WHERE repo = ? AND number = ?", [repo, number])
            for f in files:
                cur.execute(
                    "INSERT INTO pr_files (repo, number, path, previous_path, status, additions, "
                    "deletions, ranges, edits) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT DO NOTHING",
                    [
                        repo,
                        number,
                        f.path,
                        f.previous_path,
                        f.status,
                        f.additions,
                        f.deletions,
                        json.dumps([list(r) for r in f.ranges]),
                        json.dumps([list(e) for e in f.edits]),
                    ],
                )
            cur.execute(
                "INSERT INTO pr_facts VALUES (?, ?, to_timestamp(?), true) ON CONFLICT DO UPDATE "
                "SET files_known = true, opened_at = coalesce(excluded.opened_at, opened_at)",
                [repo, number, opened_at],
            )

        await self._writer.tx(write)

    async def record_opened_at(self, repo: str, number: int, opened_at: float) -> None:
        """Keep when a PR was opened (its lead time is merged_at - opened_at)."""
        await self._writer.call(lambda cur: self.write_opened(cur, [(repo, number, opened_at)]))

    @staticmethod
    def write_opened(
        cur: duckdb.DuckDBPyConnection, opened: Sequence[tuple[str, int, float]]
    ) -> None:
        """Keep when PRs (repo, number) were opened, in one statement (of one PR listed twice,
        the later time wins); the journal writes a batch's opening times here."""
        latest = {(repo, number): at for repo, number, at in opened}
        if latest:
            cur.execute(
                "INSERT INTO pr_facts SELECT r.repo, r.number, to_timestamp(r.at), false "
                "FROM (SELECT unnest(?) AS r) "
                "ON CONFLICT DO UPDATE SET opened_at = excluded.opened_at",
                [[{"repo": k[0], "number": k[1], "at": at} for k, at in latest.items()]],
            )

    async def files_known(self, repo: str, numbers: Sequence[int]) -> set[int]:
        rows = await self._fetch(
            "SELECT number FROM pr_facts WHERE repo = ? AND files_known "
            "AND list_contains(?, number)",
            [repo, list(numbers)],
        )
        return {int(r[0]) for r in rows}

    async def changes(self, prs: Sequence[MergedPR]) -> list[PrChange]:
        """The PRs with their stored files and CI counts (no files: only their paths known)."""
        if not prs:
            return []
        repo, numbers = prs[0].repo, [p.number for p in prs]
        rows = await self._records(
            f"SELECT {_FILE_COLUMNS} FROM pr_files WHERE repo = ? AND list_contains(?, number) "
            "ORDER BY number, path",
            [repo, numbers],
            _numbered_file,
        )
        files: dict[int, list[FileChange]] = {}
        for number, change in rows:
            files.setdefault(number, []).append(change)
        ci = await self._fetch(
            "SELECT number, count(*), count(*) FILTER (WHERE conclusion NOT IN "
            "('success', 'neutral', 'skipped')) FROM ci_runs WHERE repo = ? "
            "AND list_contains(?, number) GROUP BY number",
            [repo, numbers],
        )
        runs = {int(r[0]): (int(r[1]), int(r[2])) for r in ci}
        return [
            PrChange(p, tuple(files.get(p.number, ())), *runs.get(p.number, (0, 0))) for p in prs
        ]

    async def record_ci_run(  # noqa: PLR0917 - one CI run's columns, called from one place
        self,
        run_id: str,
        repo: str,
        numbers: Sequence[int],
        kind: str,
        head_sha: str,
        attempt: int,
        conclusion: str | None,
        finished_at: float,
    ) -> None:
        """Keep one CI run (a workflow run attempt or a check suite) per PR it names, and
        rebuild those PRs' loop summary (`pr_loop`)."""

        def write(cur: duckdb.DuckDBPyConnection) -> None:
            for n in numbers:
                cur.execute(
                    "INSERT INTO ci_runs VALUES (?, ?, ?, ?, ?, ?, ?, to_timestamp(?)) "
                    "ON CONFLICT DO UPDATE SET conclusion = excluded.conclusion",
                    [f"{run_id}#{n}", repo, n, kind, head_sha, attempt, conclusion, finished_at],
                )
            write_pr_loop(cur, repo, numbers)

        await self._writer.tx(write)

    async def record_errors(self, service: str, events: Sequence[ErrorEvent]) -> None:
        await self._signals("sentry", service, [(e.key, e.first_seen, asdict(e)) for e in events])

    async def record_alerts(self, service: str, alerts: Sequence[FiringAlert]) -> None:
        rows = [
            (
                f"{a.name}:{sorted(a.labels.items())}",
                a.starts_at,
                asdict(a) | {"labels": dict(a.labels)},
            )
            for a in alerts
        ]
        await self._signals("alertmanager", service, rows)

    async def _signals(
        self, source: str, service: str, rows: Sequence[tuple[str, float, dict[str, Any]]]
    ) -> None:
        def write(cur: duckdb.DuckDBPyConnection) -> None:
            for key, seen, record in rows:
                cur.execute(
                    "INSERT INTO signals VALUES (?, ?, ?, ?, to_timestamp(?), ?) "
                    "ON CONFLICT DO NOTHING",
                    [f"{source}:{key}:{seen}", source, service, key, seen, json.dumps(record)],
                )

        await self._writer.tx(write)

    async def errors_since(self, service: str, start: float, end: float) -> list[ErrorEvent]:
        """Error signatures first seen in [start, end] (never before `start`), most seen first."""
        rows = await self._fetch(
            "SELECT key, arg_min(record, seen_at), min(epoch(seen_at)), count(*) FROM signals "
            "WHERE source = 'sentry' AND service = ? AND seen_at <= to_timestamp(?) GROUP BY key "
            "HAVING min(seen_at) >= to_timestamp(?) ORDER BY count(*) DESC, key",
            [service, end, start],
        )
        out = []
        for _, record, _, _ in rows:
            data = json.loads(record)
            frames = tuple(Frame(f["path"], f["line"], f["function"]) for f in data["frames"])
            out.append(ErrorEvent(data["key"], data["title"], data["first_seen"], frames))
        return out

    async def alerts_since(self, service: str, start: float, end: float) -> list[FiringAlert]:
        """Alerts of `service` that started firing in [start, end]."""
        rows = await self._fetch(
            "SELECT record FROM signals WHERE source = 'alertmanager' AND service = ? "
            "AND seen_at BETWEEN to_timestamp(?) AND to_timestamp(?) ORDER BY seen_at",
            [service, start, end],
        )
        found = [json.loads(r[0]) for r in rows]
        return [FiringAlert(d["name"], dict(d["labels"]), d["starts_at"]) for d in found]

    async def learning(self, repo: str) -> tuple[list[PrChange], list[Blame], list[Signal]]:
        """Every deployed PR of `repo`, every incident's blame, and every signal in order."""
        numbers = await self._fetch("SELECT DISTINCT number FROM deploy_prs WHERE repo = ?", [repo])
        prs = await self._prs.of_repo(repo, [int(r[0]) for r in numbers])
        deployed = await self.changes(prs)
        blames, signals = await self.labels([repo])
        return deployed, blames, signals

    async def labels(self, repos: Sequence[str]) -> tuple[list[Blame], list[Signal]]:
        """Every incident's blame on PRs of `repos`, and the signals on them in order."""
        blames = await self._records(
            "SELECT i.id AS incident_id, s.repo, list(s.number ORDER BY s.rank) AS suspects, "
            "i.ambiguous, i.revert_unit FROM incidents i JOIN suspects s ON s.incident_id = i.id "
            "WHERE list_contains(?, s.repo) GROUP BY i.id, s.repo, i.ambiguous, i.revert_unit "
            "ORDER BY i.id",
            [list(repos)],
            _blame,
        )
        signals = await self._records(
            "SELECT incident_id, kind, pr_number FROM feedback ORDER BY created_at, id", (), Signal
        )
        ids = {b.incident_id for b in blames}
        return blames, [s for s in signals if s.incident_id in ids]
