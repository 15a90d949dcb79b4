"""The built history store, cached: `bench/.cache/store-<key>.duckdb` (gitignored).

Building a year of history takes minutes; a rerun of the bench with the same shape, generator
version and schema reuses the file. The key holds the shape (`Shape.key`, which names
`GENERATOR_VERSION`) and a digest of the store's migrations, so a new migration (a view, a table)
builds the store again. The bench works on a copy, never on the cached file.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import sys
import time
from importlib import resources
from pathlib import Path

from attribution.store import Store
from bench.store.history import HistoryGenerator, Shape

CACHE = Path(__file__).resolve().parent.parent / ".cache"


def _schema_digest() -> str:
    folder = resources.files("attribution") / "schema"
    digest = hashlib.sha256()
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".sql"):
            digest.update(entry.name.encode() + entry.read_bytes())
    return digest.hexdigest()[:12]


def cached_path(shape: Shape) -> Path:
    return CACHE / f"store-{shape.key}-m{_schema_digest()}.duckdb"


async def build(shape: Shape, path: Path) -> tuple[dict[str, int], float]:
    """Build the history of `shape` into a new store at `path`; rows per table and seconds."""
    started = time.perf_counter()
    store = await Store.open(path)
    try:
        written = await HistoryGenerator(shape).build(store)
        await store.writer.call(lambda cur: cur.execute("CHECKPOINT"))
    finally:
        await store.close()
    return written, time.perf_counter() - started


async def history_store(shape: Shape, into: Path) -> tuple[Path, dict[str, object]]:
    """A copy at `into` of the history store of `shape` (built first unless cached), and how it
    was got: whether it was cached, the build's seconds and rows."""
    cached = cached_path(shape)
    info: dict[str, object] = {"cache": str(cached), "cached": cached.exists()}
    if not cached.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        partial = cached.with_suffix(".building")
        partial.unlink(missing_ok=True)
        print(f"bench-store: building {shape.key} (once; cached after)", file=sys.stderr)
        written, seconds = await build(shape, partial)
        partial.rename(cached)
        info |= {"build_seconds": seconds, "rows_written": written}
    await asyncio.to_thread(shutil.copyfile, cached, into)
    info["file_mb"] = cached.stat().st_size / 1e6
    return into, info
