"""Journal queries (`store.journal`): every webhook delivery kept once, so a redelivery is
recognised and its effect is applied at most once.

Deliveries are group-committed (`StoreWriter.group`): the deliveries waiting for the writer are
journaled together in one transaction, and with them the rows that are their whole effect
(`Applied`: a merged PR and when it was opened, a deploy and its Watch). Such a delivery is
journaled `applied` at once, its effect in the same COMMIT, so there is no moment at which it is
journaled and not applied. A delivery whose effect needs more than rows (reads, other calls) is
journaled `accepted`, applied by its caller, then `mark`ed applied.

Dedupe on `source:delivery` is exact within a batch (deliveries are decided in arrival order,
the first of an id wins) and across batches (batches commit one after another). A delivery
journaled `accepted` by this process and still being applied makes any copy of it a duplicate;
one left `accepted` by a process that died before applying it is applied on its redelivery.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import duckdb

from attribution.records import Deploy, MergedPR
from attribution.store_evidence import EvidenceQueries
from attribution.store_prs import PullRequestQueries
from attribution.store_watches import WatchQueries
from attribution.store_writer import StoreWriter

ACCEPTED, APPLIED = "accepted", "applied"


@dataclass(frozen=True, slots=True)
class Applied:
    """A delivery's effect as rows, written in the journal's own transaction."""

    prs: tuple[MergedPR, ...] = ()
    opened: tuple[tuple[str, int, float], ...] = ()  # (repo, number, opened at): lead times
    deploys: tuple[Deploy, ...] = ()
    phase: str = ""  # the phase a new deploy's Watch starts in


@dataclass(frozen=True, slots=True)
class Delivery:
    """One delivery to journal: `status` is its row's (accepted, ignored, rejected) unless
    `applied` is given, which is written with it and makes the row `applied`. `dedupe=False`
    writes `applied` even for an id already journaled (its rows are idempotent themselves)."""

    source: str
    event: str
    delivery: str
    received_at: float
    status: str = ACCEPTED
    body: Any = None
    error: str | None = None
    applied: Applied | None = None
    dedupe: bool = True
    text: str | None = None  # `body` as the JSON text it arrived as: kept as is, not re-encoded

    @property
    def key(self) -> str:
        return f"{self.source}:{self.delivery}"

    def body_json(self) -> str | None:
        if self.body is None:
            return None
        return self.text if self.text is not None else json.dumps(self.body)


@dataclass(frozen=True, slots=True)
class Journaled:
    """What journaling a delivery did: `fresh` when its id was new, `duplicate` when it was
    already journaled (and applied, or being applied) so nothing is to be done, and per deploy
    of its `applied` rows whether that deploy was new."""

    fresh: bool
    duplicate: bool
    created: tuple[bool, ...] = ()


class JournalQueries:
    """The delivery journal: dedupe by `source:delivery` and track whether it was applied."""

    def __init__(self, writer: StoreWriter) -> None:
        self._writer = writer
        self._group = writer.group(self._write_batch)
        # Keys journaled `accepted` whose caller is applying them now; read and changed only on
        # the writer thread (in the batch and in `mark`), so no lock is needed.
        self._applying: set[str] = set()

    async def deliver(self, delivery: Delivery) -> Journaled:
        """Journal `delivery` (and write its `applied` rows) in the next batch; returns once
        that batch has committed."""
        return await self._group.submit(delivery)

    async def record(
        self,
        source: str,
        event: str,
        delivery: str,
        *,
        status: str,
        received_at: float,
        body: Any = None,
        error: str | None = None,
    ) -> bool:
        """Record a delivery; False when it was already journaled (a redelivery)."""
        done = await self.deliver(
            Delivery(source, event, delivery, received_at, status, body, error)
        )
        return done.fresh

    def _write_batch(
        self, cur: duckdb.DuckDBPyConnection, deliveries: Sequence[Delivery]
    ) -> list[Journaled]:
        keys = list({d.key for d in deliveries})
        known: dict[str, str] = dict(
            cur.execute(
                "SELECT id, status FROM journal WHERE list_contains(?, id)", [keys]
            ).fetchall()
        )
        rows: list[dict[str, Any]] = []
        promoted: list[str] = []
        applying: set[str] = set()  # claimed by this batch; kept once its rows are written
        decided: list[tuple[Delivery, bool, bool]] = []  # delivery, fresh, whether it applies
        for d in deliveries:
            before = known.get(d.key)
            # Left `accepted` by a process that died before applying it: apply it now.
            stale = before == ACCEPTED and d.key not in self._applying and d.key not in applying
            applies = before is None or stale or not d.dedupe
            status = APPLIED if d.applied is not None else d.status
            if before is None:
                rows.append({
                    "id": d.key, "source": d.source, "event": d.event, "at": d.received_at,
                    "status": status, "error": d.error,
                    "body": d.body_json(),
                })  # fmt: skip
            elif stale and d.applied is not None:
                promoted.append(d.key)
            if applies and status == ACCEPTED:
                applying.add(d.key)
            known[d.key] = status if applies else known[d.key]
            decided.append((d, before is None, applies))
        if rows:
            cur.execute(
                "INSERT INTO journal SELECT r.id, r.source, r.event, to_timestamp(r.at), "
                "r.status, r.error, r.body FROM (SELECT unnest(?) AS r)",
                [rows],
            )
        if promoted:
            cur.execute(
                "UPDATE journal SET status = ? WHERE list_contains(?, id)", [APPLIED, promoted]
            )
        results = self._apply(cur, decided)
        self._applying.update(applying)
        return results

    @staticmethod
    def _apply(
        cur: duckdb.DuckDBPyConnection, decided: Sequence[tuple[Delivery, bool, bool]]
    ) -> list[Journaled]:
        """Write the `applied` rows of the deliveries that apply, one statement per table, at
        the batch's time (its latest delivery's)."""
        effects = [d.applied for d, _, applies in decided if applies and d.applied is not None]
        now = max((d.received_at for d, _, _ in decided), default=0.0)
        PullRequestQueries.write_prs(cur, [pr for e in effects for pr in e.prs], now)
        EvidenceQueries.write_opened(cur, [o for e in effects for o in e.opened])
        created: dict[tuple[int, int], bool] = {}  # (effect, deploy) -> new
        for phase in dict.fromkeys(e.phase for e in effects if e.deploys):
            places = [(i, j) for i, e in enumerate(effects) if e.phase == phase
                      for j in range(len(e.deploys))]  # fmt: skip
            deploys = [effects[i].deploys[j] for i, j in places]
            made = WatchQueries.write_deploys(cur, deploys, phase, now)
            created.update(zip(places, made, strict=True))
        results, applied = [], 0
        for d, fresh, applies in decided:
            news: tuple[bool, ...] = ()
            if applies and d.applied is not None:
                news = tuple(created[applied, j] for j in range(len(d.applied.deploys)))
                applied += 1
            results.append(Journaled(fresh, not applies, news))
        return results

    async def mark(self, source: str, delivery: str, status: str) -> None:
        """Move a journaled delivery on (`accepted` -> `applied` once its effect is stored)."""
        key = f"{source}:{delivery}"

        def update(cur: duckdb.DuckDBPyConnection) -> None:
            cur.execute("UPDATE journal SET status = ? WHERE id = ?", [status, key])
            self._applying.discard(key)

        await self._writer.call(update)

    async def release(self, source: str, delivery: str) -> None:
        """Its caller could not apply an `accepted` delivery: a redelivery may apply it."""
        key = f"{source}:{delivery}"
        await self._writer.call(lambda cur: self._applying.discard(key))

    async def unapplied(self, source: str) -> list[tuple[str, Any]]:
        """`source`'s deliveries journaled `accepted` and never marked applied (their process
        died, or their work failed), oldest first: (delivery id, journaled body)."""
        rows = await self._writer.call(
            lambda cur: cur.execute(
                "SELECT id, body FROM journal WHERE source = ? AND status = ? ORDER BY received_at",
                [source, ACCEPTED],
            ).fetchall()
        )
        prefix = len(source) + 1
        return [(str(key)[prefix:], json.loads(body) if isinstance(body, str) else body)
                for key, body in rows]  # fmt: skip

    async def status(self, source: str, delivery: str) -> str | None:
        rows = await self._writer.call(
            lambda cur: cur.execute(
                "SELECT status FROM journal WHERE id = ?", [f"{source}:{delivery}"]
            ).fetchall()
        )
        return str(rows[0][0]) if rows else None

    async def bodies(self, source: str, prefix: str) -> list[tuple[str, float, Any]]:
        """The event, time and body of `source`'s deliveries whose id starts with `prefix`
        (a Flagger canary's deliveries, by its deploy's id), oldest first."""
        rows = await self._writer.call(
            lambda cur: cur.execute(
                "SELECT event, epoch(received_at), body FROM journal "
                "WHERE source = ? AND starts_with(id, ?) ORDER BY received_at, id",
                [source, f"{source}:{prefix}"],
            ).fetchall()
        )
        return [
            (str(event), float(at), json.loads(body) if body is not None else None)
            for event, at, body in rows
        ]
