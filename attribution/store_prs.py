"""Pull-request queries (`store.prs`): merged PRs with the agent identity behind them, the agent
sessions they name, and which PRs each deploy carried (`deploy_prs`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb

from attribution.records import AgentIdentity, MergedPR
from attribution.store_writer import StoreWriter, fetch_records

# The agent identity comes back as one struct, its keys named after `AgentIdentity`'s fields.
_PR_COLUMNS = (
    "p.repo, p.number, p.title, p.author, p.url, p.merge_sha, p.head_sha, p.base_ref, "
    "epoch(p.merged_at) AS merged_at, p.body, p.labels, p.files, p.node_id, "
    "struct_pack(kind := p.author_kind, name := p.agent_name, session := p.agent_session, "
    "model := p.agent_model, role := p.agent_role, spec := p.spec, tokens := p.tokens, "
    "cost_usd := p.cost_usd) AS identity"
)


def _merged_pr(
    *, labels: list[str], files: list[str], identity: dict[str, Any], **columns: Any
) -> MergedPR:
    return MergedPR(
        labels=tuple(labels), files=tuple(files), identity=AgentIdentity(**identity), **columns
    )


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

    async def of_repo(self, repo: str, numbers: Sequence[int] | None = None) -> list[MergedPR]:
        """PRs of `repo` (all, or those numbered), oldest merge first."""
        sql = f"SELECT {_PR_COLUMNS} FROM pull_requests p WHERE p.repo = ?"
        params: list[Any] = [repo]
        if numbers is not None:
            sql += " AND list_contains(?, p.number)"
            params.append(list(numbers))
        return await self._writer.call(
            lambda cur: fetch_records(
                cur.execute(sql + " ORDER BY p.merged_at", params), _merged_pr
            )
        )

    async def set_deploy_prs(self, deploy_id: str, repo: str, numbers: Sequence[int]) -> None:
        await self._writer.tx(lambda cur: self.write_deploy_prs(cur, deploy_id, repo, numbers))

    @staticmethod
    def write_deploy_prs(
        cur: duckdb.DuckDBPyConnection, deploy_id: str, repo: str, numbers: Sequence[int]
    ) -> None:
        """Replace the PRs a deploy carries; used inside a Watch transition too."""
        cur.execute("DELETE FROM deploy_prs WHERE deploy_id = ?", [deploy_id])
        for n in numbers:
            cur.execute("INSERT INTO deploy_prs VALUES (?, ?, ?)", [deploy_id, repo, n])

    async def deploy_prs(self, deploy_id: str) -> list[MergedPR]:
        return await self._writer.call(lambda cur: self.read_deploy_prs(cur, deploy_id))

    @staticmethod
    def read_deploy_prs(cur: duckdb.DuckDBPyConnection, deploy_id: str) -> list[MergedPR]:
        """The PRs a deploy carried, oldest merge first, read on `cur` (also by `Store`)."""
        return fetch_records(
            cur.execute(
                f"SELECT {_PR_COLUMNS} FROM deploy_prs d JOIN pull_requests p "
                "ON p.repo = d.repo AND p.number = d.number WHERE d.deploy_id = ? "
                "ORDER BY p.merged_at",
                [deploy_id],
            ),
            _merged_pr,
        )

    async def numbers_with_head(self, repo: str, head_sha: str) -> list[int]:
        """The PRs of `repo` whose head was `head_sha` (a CI run that names no PR, from a fork)."""
        rows = await self._writer.call(
            lambda cur: cur.execute(
                "SELECT number FROM pull_requests WHERE repo = ? AND head_sha = ? ORDER BY number",
                [repo, head_sha],
            ).fetchall()
        )
        return [int(r[0]) for r in rows]

    async def agent_sessions(self) -> list[dict[str, Any]]:
        """Every agent session on record: id, agent, model and role."""
        return await self._writer.call(
            lambda cur: fetch_records(
                cur.execute(
                    "SELECT id, agent_name AS agent, model, role FROM agent_sessions ORDER BY id"
                ),
                dict,
            )
        )
