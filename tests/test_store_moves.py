"""Watch moves written together (`attribution.store_moves`), on real DuckDB files: moves submitted
at once share a transaction and come out exactly as if each had been written alone, in order."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from attribution.records import Deploy, Incident
from attribution.store import Store, StoreError
from attribution.watch_rows import KeptBaselines, Observations, OpenIncident, WatchRow

T0 = 1_740_992_400.0
PHASES = ("observing", "regressed", "healthy")


def deploy(i: int) -> Deploy:
    return Deploy(f"cd_{i}", f"svc{i}", "production", f"{i:040x}", T0, "cd")


def result(sli: str, i: int) -> dict[str, Any]:
    return {"sli": sli, "status": "observing", "reason": f"step {i}", "baseline_value": 0.005,
            "watch_value": 0.001 * i, "baseline_bad": 60.0, "baseline_total": 12000.0,
            "watch_bad": float(i), "watch_total": 150.0, "statistic": 0.1 * i, "threshold": 6.9,
            "effect": None, "null_value": None, "onset": None, "mode": "before_after",
            "queries": {"bad": "b", "total": "t"},
            "windows": {"watch": [T0, T0 + 15 * i]}}  # fmt: skip


def incident(i: int) -> Incident:
    return Incident(id=f"inc_{i}", deploy_id=f"cd_{i}", service=f"svc{i}",
                    environment="production", sli="errors", opened_at=T0 + 60,
                    verdict={"status": "regressed"}, ambiguous=False, confidence=0.9,
                    revert_unit=(7,), reason="x", suspects=())  # fmt: skip


async def open_store(path: Path, watches: int) -> Store:
    store = await Store.open(path)
    for i in range(watches):
        await store.watches.record_deploy(deploy(i), "observing", now=T0)
    return store


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[tuple[Store, Store]]:
    pair = (await open_store(tmp_path / "a.duckdb", 6), await open_store(tmp_path / "b.duckdb", 6))
    yield pair
    for store in pair:
        await store.close()


def random_moves(seed: int, count: int) -> tuple[list[dict[str, Any]], list[bool]]:
    """Moves of six Watches, most from where the moves before left the Watch, some at a stale
    version or from a phase it is not in; with observations, kept baselines, phase changes and
    verdicts. With them, whether each applies (the compare-and-set's rule, kept here apart)."""
    rng = random.Random(seed)
    applies = []
    phase, version = dict.fromkeys(range(6), "observing"), dict.fromkeys(range(6), 0)
    out = []
    for n in range(count):
        i = rng.randrange(6)
        target = rng.choice(PHASES)
        source = phase[i] if rng.random() < 0.7 else rng.choice(PHASES)
        read = rng.choice([None, version[i], version[i], max(version[i] - 1, 0)])
        applies.append(source == phase[i] and read in (None, version[i]))
        if applies[-1]:
            phase[i], version[i] = target, version[i] + 1
        rows: list[WatchRow] = []
        if rng.random() < 0.8:
            slis = rng.sample(["errors", "latency", "saturation"], rng.randint(1, 3))
            rows.append(Observations(f"cd_{i}", T0 + n, [result(s, n) for s in slis], T0 + n - 1))
        if rng.random() < 0.2:
            rows.append(KeptBaselines(f"cd_{i}", "errors", {"step": 15}, [[T0, 1.0]],
                                      {"before": [T0 - 600, T0]}, T0 + n))  # fmt: skip
        out.append({
            "deploy_id": f"cd_{i}", "from_phase": source, "to_phase": target, "now": T0 + n,
            "next_due": T0 + n + rng.choice([15, 15.5]), "reason": f"move {n}",
            "verdict": {"n": n} if rng.random() < 0.5 else None, "rows": rows,
            "version": read,
        })  # fmt: skip
    return out, applies


async def tables(store: Store) -> list[list[tuple[Any, ...]]]:
    return [
        await store.fetch("SELECT deploy_id, phase, epoch(next_due), epoch(updated_at), reason, "
                          "verdict::VARCHAR, version FROM watches ORDER BY deploy_id"),
        await store.fetch("SELECT deploy_id, seq, from_phase, to_phase, epoch(changed_at), "
                          "reason FROM transitions ORDER BY ALL"),
        await store.fetch("SELECT deploy_id, seq, sli, reason, watch_value, queries::VARCHAR, "
                          "windows::VARCHAR, epoch(due_at) FROM observations ORDER BY ALL"),
        await store.fetch("SELECT deploy_id, sli, plan::VARCHAR, epoch(read_at) "
                          "FROM watch_baselines ORDER BY ALL"),
    ]  # fmt: skip


@pytest.mark.parametrize("seed", range(8))
async def test_moves_submitted_together_equal_the_same_moves_written_one_by_one(
    stores: tuple[Store, Store], seed: int
) -> None:
    """The batched writer's answers and rows equal those of each move in its own transaction,
    in the order submitted: refused compare-and-sets write nothing, and a Watch moved twice in
    one batch sees its first move's version and phase."""
    together, alone = stores
    moves, applies = random_moves(seed, 40)
    at_once = await asyncio.gather(*(together.watches.transition(**m) for m in moves))
    one_by_one = [await alone.watches.transition(**m) for m in moves]
    assert at_once == one_by_one == applies
    assert together.writer.splits == 0  # written as one batch, not item by item after a failure
    assert len(moves) / 3 < sum(applies) < len(moves)  # applied and refused moves
    assert await tables(together) == await tables(alone)


async def test_a_move_that_fails_fails_alone(stores: tuple[Store, Store]) -> None:
    """A move whose rows cannot be written (a second incident for a deploy) gets its error; the
    moves that shared its batch are written all the same."""
    store, _ = stores
    await store.watches.transition("cd_1", "observing", "regressed", now=T0, next_due=T0,
                                   reason="first", rows=(OpenIncident(incident(1)),))  # fmt: skip
    tried = await asyncio.gather(
        *(store.watches.transition(f"cd_{i}", "observing", "observing", now=T0 + 15,
                                   next_due=T0 + 30, reason="step",
                                   rows=(Observations(f"cd_{i}", T0 + 15, [result("e", i)]),))
          for i in (0, 2, 3)),
        store.watches.transition("cd_1", "regressed", "healthy", now=T0 + 15, next_due=T0 + 15,
                                 reason="again", rows=(OpenIncident(incident(1)),)),
        return_exceptions=True,
    )  # fmt: skip
    assert tried[:3] == [True, True, True]
    assert isinstance(tried[3], StoreError)
    assert store.writer.splits == 1
    assert await store.fetch("SELECT deploy_id, seq FROM observations ORDER BY 1") == [
        ("cd_0", 1), ("cd_2", 1), ("cd_3", 1),
    ]  # fmt: skip
    watch = await store.watches.watch("cd_1")
    assert watch is not None
    assert watch.phase == "regressed"


async def test_a_store_from_before_the_evaluation_count_numbers_on(tmp_path: Path) -> None:
    """Migration 019 counts each Watch's kept evaluations, so the first evaluation after the
    upgrade takes the seq after the last one kept, not 1 again."""
    path = tmp_path / "old.duckdb"
    store = await open_store(path, 2)
    for n in (1, 2):
        await store.watches.transition("cd_0", "observing", "observing", now=T0 + 15 * n,
                                       next_due=T0 + 15 * n + 15, reason="step",
                                       rows=(Observations("cd_0", T0 + 15 * n,
                                                          [result("e", n)]),))  # fmt: skip

    def downgrade(cur: Any) -> None:  # the store as the release before 019 left it
        cur.execute("ALTER TABLE watches DROP COLUMN evaluations")
        cur.execute("DELETE FROM schema_migrations WHERE version = 19")

    await store.writer.call(downgrade)
    await store.close()
    store = await Store.open(path)
    try:
        assert await store.fetch("SELECT deploy_id, evaluations FROM watches ORDER BY 1") == [
            ("cd_0", 2), ("cd_1", 0),
        ]  # fmt: skip
        for i in (0, 1):
            await store.watches.transition(f"cd_{i}", "observing", "observing", now=T0 + 60,
                                           next_due=T0 + 75, reason="step",
                                           rows=(Observations(f"cd_{i}", T0 + 60,
                                                              [result("e", 3)]),))  # fmt: skip
        assert await store.fetch("SELECT deploy_id, seq FROM observations ORDER BY ALL") == [
            ("cd_0", 1), ("cd_0", 2), ("cd_0", 3), ("cd_1", 1),
        ]  # fmt: skip
    finally:
        await store.close()
