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
    "epoch(p.merged_at) AS merged_at, p.body, p.labels, p.files, p.node_id, p.head_ref, "
    "struct_pack(kind := p.author_kind, name := p.agent_name, session := p.agent_session, "
    "model := p.agent_model, role := p.agent_role, spec := p.spec, tokens := p.tokens, "
    "cost_usd := p.cost_usd, source := p.agent_source, grain := coalesce(p.agent_grain, 'pr')) "
    "AS identity"
)


def _merged_pr(
    *, labels: list[str], files: list[str], identity: dict[str, Any], **columns: Any
) -> MergedPR:
    return MergedPR(
        labels=tuple(labels), files=tuple(files), identity=AgentIdentity(**identity), **columns
    )


def _pr_row(pr: MergedPR, now: float) -> dict[str, Any]:
    """A PR as one row of `pull_requests`, its fields named as `write_prs` reads them."""
    ident = pr.identity
    return {
        "repo": pr.repo, "number": pr.number, "title": pr.title, "author": pr.author,
        "url": pr.url, "merge_sha": pr.merge_sha, "head_sha": pr.head_sha,
        "base_ref": pr.base_ref, "merged_at": pr.merged_at, "body": pr.body,
        "labels": list(pr.labels), "files": list(pr.files), "node_id": pr.node_id,
        "kind": ident.kind, "name": ident.name, "session": ident.session, "model": ident.model,
        "role": ident.role, "spec": ident.spec, "tokens": ident.tokens,
        "cost_usd": ident.cost_usd, "recorded_at": now, "head_ref": pr.head_ref,
        "source": ident.source, "grain": ident.grain,
    }  # fmt: skip


class PullRequestQueries:
    """Merged PRs, agent sessions, and the PRs each deploy shipped."""

    def __init__(self, writer: StoreWriter) -> None:
        self._writer = writer

    async def record_pr(self, pr: MergedPR, now: float) -> None:
        """Insert or refresh a merged PR, and its agent session when it names one."""
        await self._writer.tx(lambda cur: self.write_prs(cur, [pr], now))

    @staticmethod
    def write_prs(cur: duckdb.DuckDBPyConnection, prs: Sequence[MergedPR], now: float) -> None:
        """Insert or refresh merged PRs (of one PR listed twice, the later wins) and the agent
        sessions they name (a session keeps what it was first seen with), one statement per
        table however many there are: the journal writes a whole batch of deliveries' PRs here."""
        latest = {(pr.repo, pr.number): pr for pr in prs}
        if not latest:
            return
        cur.execute(
            "INSERT OR REPLACE INTO pull_requests SELECT r.repo, r.number, r.title, r.author, "
            "r.url, r.merge_sha, r.head_sha, r.base_ref, to_timestamp(r.merged_at), r.body, "
            "r.labels::VARCHAR[], r.files::VARCHAR[], r.node_id, r.kind, r.name, r.session, "
            "r.model, r.role, r.spec, r.tokens, r.cost_usd, to_timestamp(r.recorded_at), "
            "r.head_ref, r.source, r.grain "
            "FROM (SELECT unnest(?) AS r)",
            [[_pr_row(pr, now) for pr in latest.values()]],
        )
        sessions: dict[str, AgentIdentity] = {}
        for pr in prs:
            if pr.identity.session:
                sessions.setdefault(pr.identity.session, pr.identity)
        if sessions:
            cur.execute(
                "INSERT INTO agent_sessions SELECT r.id, r.name, r.model, r.role, "
                "to_timestamp(r.first_seen), r.tokens, r.cost_usd "
                "FROM (SELECT unnest(?) AS r) ON CONFLICT DO NOTHING",
                [[{"id": session, "name": ident.name, "model": ident.model, "role": ident.role,
                   "first_seen": now, "tokens": ident.tokens, "cost_usd": ident.cost_usd}
                  for session, ident in sessions.items()]],
            )  # fmt: skip

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
