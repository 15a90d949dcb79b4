"""The store's own health (`store.health`): whether it can write now, and what a start found.

Readiness is a real write. DuckDB acknowledges a commit only once its entries are appended to
`<file>.wal` and flushed (`fdatasync`, on every commit), and after each checkpoint it deletes
that file and creates it again on the next commit. So `ready` commits an update of one row,
padded to 4 KiB so that the append needs a new filesystem block (a few hundred bytes still fit
in the slack of the WAL's last block on a full disk, while a deploy's rows no longer do): a full
disk, a directory or file that can no longer be written, and a database DuckDB invalidated all
fail it. A corrupt block fails only the reads that touch it; the writer keeps the first such
failure (`StoreWriter.lasting`) and readiness reports it until a restart.

At open, `report_open` logs what the previous run left behind: that DuckDB replayed a
write-ahead log (the run did not close cleanly; a transaction cut off mid-write is dropped
without a trace, and it was never acknowledged), and every delivery the journal accepted but
never marked applied, naming a deploy whose rows are missing from the store. Those are the ones
a 202 may have been given for and then lost (see the README's "What a crash can lose").
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import duckdb

from attribution.store_writer import StoreError, StoreWriter, fetch_records

log = logging.getLogger(__name__)

PROBE_PAD = 4096
"""Bytes the readiness write carries: more than a filesystem block, so it needs a new one."""

PROBE_EVERY = 1.0
"""Seconds a readiness answer is reused: probes polled faster share one write (and its flush)."""

_LISTED = 20
"""Unapplied deliveries logged one by one at open; the rest are counted."""


@dataclass(frozen=True, slots=True)
class Unapplied:
    """A delivery journaled as accepted and never marked applied; for a deploy, whether the
    store holds a deploy of that service (when named), environment and commit."""

    id: str
    source: str
    event: str
    received_at: float
    service: str | None
    environment: str | None
    sha: str | None
    deploy_kept: bool | None


class HealthQueries:
    """The readiness write and the start-up report, over the one writer."""

    def __init__(self, writer: StoreWriter) -> None:
        self._writer = writer
        self._lock = asyncio.Lock()
        self._answer: tuple[float, str | None] | None = None

    async def ready(self) -> str | None:
        """None when the store can write now; else why not."""
        if self._writer.lasting is not None:
            return self._writer.lasting
        async with self._lock:
            if self._answer is not None and time.monotonic() - self._answer[0] < PROBE_EVERY:
                return self._answer[1]
            try:
                await self._writer.call(_probe)
                reason = None
            except StoreError as exc:
                reason = str(exc)
            self._answer = (time.monotonic(), reason)
            return reason

    async def unapplied(self) -> list[Unapplied]:
        """Deliveries accepted and never applied, oldest first, with their deploy's fate."""

        def read(cur: duckdb.DuckDBPyConnection) -> list[Unapplied]:
            cur.execute(
                """
                SELECT j.id, j.source, j.event, epoch(j.received_at) AS received_at,
                       coalesce(j.body->>'service', j.body->'repository'->>'full_name')
                           AS service,
                       coalesce(j.body->>'environment', j.body->'deployment'->>'environment')
                           AS environment,
                       coalesce(j.body->>'sha', j.body->'deployment'->>'sha') AS sha,
                       CASE
                           WHEN j.source = 'cd' AND j.event = 'deploy' THEN EXISTS (
                               SELECT 1 FROM deploys d WHERE d.service = j.body->>'service'
                               AND d.environment = j.body->>'environment'
                               AND d.sha = j.body->>'sha')
                           WHEN j.source = 'github' AND j.event = 'deployment_status' THEN
                               EXISTS (SELECT 1 FROM deploys d
                                       WHERE d.id = 'gh_' || (j.body->'deployment'->>'id'))
                       END AS deploy_kept
                FROM journal j WHERE j.status = 'accepted' ORDER BY j.received_at, j.id
                """
            )
            return fetch_records(cur, Unapplied)

        return await self._writer.call(read)

    async def report_open(self, replayed_wal_bytes: int) -> None:
        """After a run that did not close cleanly (DuckDB replayed its log), log the deliveries
        accepted and never applied: the deploys missing from the store one by one, the rest
        counted. A clean close checkpoints and removes the log, and a run with no commit since
        its last checkpoint journaled nothing new, so after either there is nothing to say."""
        if not replayed_wal_bytes:
            return
        log.warning(
            "store %s was not closed cleanly: DuckDB replayed %d bytes of its write-ahead log "
            "(a transaction cut off mid-write, never acknowledged, is dropped)",
            self._writer.path, replayed_wal_bytes,
        )  # fmt: skip
        try:
            found = await self.unapplied()
        except StoreError:  # a corrupt block read here: keep starting, readiness reports it
            log.exception("store %s: cannot read its journal at start", self._writer.path)
            return
        missing = [row for row in found if row.deploy_kept is False]
        for row in missing[:_LISTED]:
            log.warning("%s", _describe(row))
        if len(missing) > _LISTED:
            log.warning("... and %d more deploys journaled but not in the store",
                        len(missing) - _LISTED)  # fmt: skip
        waiting = [row.id for row in found if row.deploy_kept is None]
        if waiting:
            log.warning("%d deliveries journaled but never applied (a redelivery applies "
                        "them): %s", len(waiting), ", ".join(waiting[:_LISTED]))  # fmt: skip
        unmarked = sum(1 for row in found if row.deploy_kept)
        if unmarked:
            log.info("%d deploys are in the store but their deliveries not marked applied",
                     unmarked)  # fmt: skip


def _probe(cur: duckdb.DuckDBPyConnection) -> None:
    """Commit one padded row (autocommit: the commit appends and flushes the WAL)."""
    cur.execute("UPDATE store_probe SET probed_at = now(), pad = ? WHERE id = 1", ["x" * PROBE_PAD])


def _describe(row: Unapplied) -> str:
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(row.received_at))
    return (
        f"the deploy of {row.service or '?'} {row.sha} to {row.environment} "
        f"({row.source} delivery {row.id!r}, journaled at {when}) is NOT in the store: lost if "
        "its sender was answered 2xx (post it again), else it waits for its redelivery"
    )
