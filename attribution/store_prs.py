"""Pull-request queries: merged PRs with the agent identity behind them, the agent sessions
they name, and which PRs each deploy carried (`deploy_prs`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb

from attribution.records import AgentIdentity, MergedPR
from attribution.store_writer import StoreWriter


class PullRequestQueries:
    """Merged PRs, agent sessions, and the PRs each deploy shipped."""

    def __init__(self, writer: StoreWriter) -> None:
        self._writer = writer

    async def record_pr(self, pr: MergedPR, now: float) -> None:
        """Insert or refresh a merged PR, and its agent session when it names one."""
        ident = pr.identity

        def upsert(cur: duckdb.DuckDBPyConnection) -> None:
            cur.execute(
                "INSERT OR REPLACE INTO pull_requests VALUES (?, ?, ?, ?, ?, ?, ?, ?, "
                "to_timestamp(?), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, to_timestamp(?))",
                [
                    pr.repo,
                    pr.number,
                    pr.title,
                    pr.author,
                    pr.url,
                    pr.merge_sha,
                    pr.head_sha,
                    pr.base_ref,
                    pr.merged_at,
                    pr.body,
                    list(pr.labels),
                    list(pr.files),
                    pr.node_id,
                    ident.kind,
                    ident.name,
                    ident.session,
                    ident.model,
                    ident.role,
                    ident.spec,
                    ident.tokens,
                    ident.cost_usd,
                    now,
                ],
            )
            if ident.session:
                cur.execute(
                    "INSERT INTO agent_sessions VALUES (?, ?, ?, ?, to_timestamp(?), ?, ?) "
                    "ON CONFLICT DO NOTHING",
                    [
                        ident.session,
                        ident.name,
                        ident.model,
                        ident.role,
                        now,
                        ident.tokens,
                        ident.cost_usd,
                    ],
                )

        await self._writer.tx(upsert)

    _PR_COLS = (
        "repo, number, title, author, url, merge_sha, head_sha, base_ref, "
        "epoch(merged_at), body, labels, files, node_id, author_kind, agent_name, "
        "agent_session, agent_model, agent_role, spec, tokens, cost_usd"
    )

    @staticmethod
    def _pr(row: Sequence[Any]) -> MergedPR:
        identity = AgentIdentity(*row[13:21])
        return MergedPR(
            repo=row[0],
            number=row[1],
            title=row[2],
            author=row[3],
            url=row[4],
            merge_sha=row[5],
            head_sha=row[6],
            base_ref=row[7],
            merged_at=row[8],
            body=row[9],
            labels=tuple(row[10]),
            files=tuple(row[11]),
            node_id=row[12],
            identity=identity,
        )

    async def of_repo(self, repo: str, numbers: Sequence[int] | None = None) -> list[MergedPR]:
        """PRs of `repo` (all, or those numbered), oldest merge first."""
        sql = f"SELECT {self._PR_COLS} FROM pull_requests WHERE repo = ?"
        params: list[Any] = [repo]
        if numbers is not None:
            sql += " AND list_contains(?, number)"
            params.append(list(numbers))
        rows = await self._writer.call(
            lambda cur: cur.execute(sql + " ORDER BY merged_at", params).fetchall()
        )
        return [self._pr(r) for r in rows]

    async def set_deploy_prs(self, deploy_id: str, repo: str, numbers: Sequence[int]) -> None:
        def write(cur: duckdb.DuckDBPyConnection) -> None:
            cur.execute("DELETE FROM deploy_prs WHERE deploy_id = ?", [deploy_id])
            for n in numbers:
                cur.execute("INSERT INTO deploy_prs VALUES (?, ?, ?)", [deploy_id, repo, n])

        await self._writer.tx(write)

    async def deploy_prs(self, deploy_id: str) -> list[MergedPR]:
        return await self._writer.call(lambda cur: self.read_deploy_prs(cur, deploy_id))

    @classmethod
    def read_deploy_prs(cls, cur: duckdb.DuckDBPyConnection, deploy_id: str) -> list[MergedPR]:
        """The PRs a deploy carried, oldest merge first, read on `cur` (also by `Store`)."""
        cols = ", ".join(
            f"p.{c.strip()}" if "(" not in c else c.replace("(", "(p.")
            for c in cls._PR_COLS.split(",")
        )
        rows = cur.execute(
            f"SELECT {cols} FROM deploy_prs d JOIN pull_requests p "
            "ON p.repo = d.repo AND p.number = d.number WHERE d.deploy_id = ? "
            "ORDER BY p.merged_at",
            [deploy_id],
        ).fetchall()
        return [cls._pr(r) for r in rows]
