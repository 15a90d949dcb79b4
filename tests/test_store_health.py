"""The store's own failures are visible: `/readyz` answers 503 while the store cannot write (a
full disk, a corrupt block, a database DuckDB invalidated), `/healthz` once only a restart helps,
and a start logs the deliveries whose deploy a torn write-ahead log dropped.

The full disk is real: a 4 MiB tmpfs holding the DuckDB file, filled by the test (mounting one
needs root; elsewhere those tests are skipped). The corrupt block is a flipped byte in the block
that holds the deploys, and the torn log a crash image of a running app's store, its `.wal` cut
inside one deploy's transaction, as a crash mid-write leaves it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import duckdb
import pytest
from aiohttp.test_utils import TestClient

from attribution.store import StoreError
from loop.api.app import build_app
from loop.api.context import DEPS
from loop.config import Settings
from tests.loop_rig import API_TOKEN, loop_settings, service_config
from tests.serve_rig import Server, free_port, server_environment, wait_up

SERVICE = "store-health"
ENV = {"REARGUARD_API_TOKEN": API_TOKEN, "GITHUB_TOKEN": "unused-token"}
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing answers


def _deploy(sha: str, finished_at: float = 1.7e9) -> dict[str, Any]:
    return {"service": SERVICE, "environment": "production", "sha": sha, "finished_at": finished_at}


def _settings(store: Path) -> Settings:
    return loop_settings(str(store), UNREACHABLE, {SERVICE: service_config(SERVICE, "acme/s")}, ENV)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs of our own, unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs to fill needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(disk: Path) -> Path:
    """Write a file until the filesystem has no block left; the file."""
    filler = disk / "filler"
    with filler.open("wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError:
            pass
    return filler


async def _status(session: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with session.get(url, headers=AUTH) as response:
        return response.status, await response.json()


async def _until_status(session: aiohttp.ClientSession, url: str, status: int) -> Any:
    deadline = time.monotonic() + 15
    while True:
        got, body = await _status(session, url)
        if got == status:
            return body
        assert time.monotonic() < deadline, f"{url} answered {got} {body}, not {status}"
        await asyncio.sleep(0.2)


def _serve_config(folder: Path, store: Path, port: int) -> Path:
    config = folder / "rearguard.toml"
    config.write_text(f"""
[server]
listen = "127.0.0.1:{port}"
store = "{store}"
[github]
api_url = "{UNREACHABLE}/"
[prometheus]
url = "{UNREACHABLE}"
[services.{SERVICE}]
repo = "acme/s"
[services.{SERVICE}.slis.errors]
bad = 'sum(rate(errors_total[$step]))'
total = 'sum(rate(requests_total[$step]))'
""")
    config.chmod(0o644)
    return config


async def _post(session: aiohttp.ClientSession, server: Server, sha: str) -> tuple[int, Any]:
    async with session.post(f"{server.url}/v1/deploys", json=_deploy(sha), headers=AUTH) as r:
        return r.status, await r.json()


async def _acknowledged_and_kept(session: aiohttp.ClientSession, server: Server, sha: str) -> None:
    """Once the store can write again: ready, and the deploy is acknowledged and kept."""
    await _until_status(session, f"{server.url}/readyz", 200)
    status, answer = await _post(session, server, sha)
    assert status == 202, answer
    got, view = await _status(session, f"{server.url}/v1/deploys/{answer['id']}")
    assert got == 200, view


async def test_readyz_is_not_ready_while_the_disk_is_full(tmp_path: Path, small_disk: Path) -> None:
    """`rearguard serve` with its store on a disk that fills up: /readyz answers 503 naming the
    full disk, a deploy posted meanwhile is not acknowledged, and once there is room again
    /readyz is ready and the same deploy is acknowledged and kept."""
    port = free_port()
    config = _serve_config(tmp_path, small_disk / "store.duckdb", port)
    server = Server(config, server_environment() | ENV, port, tmp_path / "server.log")
    server.start()
    filler: Path | None = None
    try:
        async with aiohttp.ClientSession() as session:
            await wait_up(session, server)
            filler = _fill(small_disk)
            body = await _until_status(session, f"{server.url}/readyz", 503)
            assert body["error"]["code"] == "store_unwritable", body
            assert "No space left on device" in body["error"]["message"], body
            # The log's last page may still hold a small commit or two on a full disk (a write
            # into an allocated page needs no new block): post until one is refused.
            refused = None
            for n in range(20):
                sha = f"{n:02x}" * 20
                status, answer = await _post(session, server, sha)
                if status >= 500:
                    refused = sha
                    break
            assert refused is not None, f"deploys were acknowledged on a full disk: {answer}"
            filler.unlink()
            filler = None
            await _acknowledged_and_kept(session, server, refused)
    finally:
        if filler is not None:
            filler.unlink()
        server.stop()


@pytest.fixture
def shared_folder() -> Iterator[Path]:
    """A folder an unprivileged server process can reach (pytest's own are private)."""
    folder = Path(tempfile.mkdtemp(prefix="rearguard-store-"))
    folder.chmod(0o755)
    yield folder
    for path in (folder, *folder.rglob("*")):
        if path.is_dir():
            path.chmod(0o755)
    shutil.rmtree(folder)


async def test_readyz_is_not_ready_while_the_store_folder_is_read_only(
    shared_folder: Path,
) -> None:
    """A store folder that turned read-only: DuckDB keeps reading, but its first commit after
    a checkpoint must create the `.wal` again and cannot; /readyz says so, a deploy is not
    acknowledged, and with the folder writable again both work. (As root, the server runs as
    nobody, since root may write anywhere.)"""
    nobody = 65534 if os.geteuid() == 0 else None
    if nobody is not None and shutil.which("setpriv") is None:
        pytest.skip("as root, the server must run as nobody: needs setpriv (util-linux)")
    folder = shared_folder / "store"
    folder.mkdir()
    folder.chmod(0o777)
    port = free_port()
    config = _serve_config(shared_folder, folder / "store.duckdb", port)
    env = server_environment() | ENV
    server = Server(config, env, port, shared_folder / "server.log", uid=nobody)
    try:
        async with aiohttp.ClientSession() as session:
            server.start()
            await wait_up(session, server)
            server.stop()  # a clean stop checkpoints and removes the log
            assert not (folder / "store.duckdb.wal").exists()
            folder.chmod(0o555)
            server.start()
            await wait_up(session, server, ready=False)
            body = await _until_status(session, f"{server.url}/readyz", 503)
            assert "Permission denied" in body["error"]["message"], body
            status, answer = await _post(session, server, "ef" * 20)
            assert status >= 500, f"a deploy was acknowledged into a read-only folder: {answer}"
            folder.chmod(0o777)
            await _acknowledged_and_kept(session, server, "ef" * 20)
    finally:
        folder.chmod(0o777)
        server.stop()


async def test_an_invalidated_store_is_neither_ready_nor_alive(
    tmp_path: Path, small_disk: Path, aiohttp_client: Any
) -> None:
    """A checkpoint that cannot write (DuckDB runs one by itself once the log passes 16 MB)
    invalidates the database until a restart: /readyz and /healthz answer 503, and stay so
    when the disk has room again."""
    client: TestClient[Any, Any] = await aiohttp_client(
        build_app(_settings(small_disk / "store.duckdb"), scheduler=False)
    )
    answer = await client.post("/v1/deploys", json=_deploy("cd" * 20), headers=AUTH)
    assert answer.status == 202
    filler = _fill(small_disk)
    store = client.app[DEPS].store
    with pytest.raises(StoreError, match="checkpoint"):
        await store.writer.call(lambda cur: cur.execute("CHECKPOINT"))
    filler.unlink()
    ready = await client.get("/readyz")
    assert ready.status == 503, await ready.text()
    assert "checkpoint" in (await ready.json())["error"]["message"]
    alive = await client.get("/healthz")
    assert alive.status == 503, await alive.text()
    assert (await alive.json())["error"]["code"] == "store_invalidated"


def _flip_deploys_block(path: Path) -> None:
    """Flip one byte inside the block that holds the deploys' `sha` column."""
    con = duckdb.connect(str(path))
    try:
        block_size = con.execute("SELECT block_size FROM pragma_database_size()").fetchone()
        rows = con.execute(
            "SELECT block_id, block_offset FROM pragma_storage_info('deploys') "
            "WHERE column_name = 'sha' AND block_id >= 0"
        ).fetchall()
    finally:
        con.close()
    assert block_size is not None
    assert rows, "the deploys' sha column is in no block"
    block_id, offset = rows[0]
    # Three 4 KiB headers, then the blocks, each behind an 8-byte checksum.
    at = 3 * 4096 + int(block_id) * int(block_size[0]) + 8 + int(offset) + 4
    with path.open("r+b") as f:
        f.seek(at)
        byte = f.read(1)
        f.seek(at)
        f.write(bytes([byte[0] ^ 0xFF]))


async def test_readyz_reports_a_corrupt_block_once_the_store_reads_it(
    tmp_path: Path, aiohttp_client: Any
) -> None:
    """A store whose deploys block no longer matches its checksum: reading deploys fails, and
    from then on /readyz answers 503 naming the corrupt file."""
    store = tmp_path / "store.duckdb"
    first: TestClient[Any, Any] = await aiohttp_client(build_app(_settings(store), scheduler=False))
    for i in range(3):
        answer = await first.post("/v1/deploys", json=_deploy(f"{i:x}" * 40), headers=AUTH)
        assert answer.status == 202
    await first.close()  # closes the store: everything checkpointed into the file
    _flip_deploys_block(store)

    client: TestClient[Any, Any] = await aiohttp_client(
        build_app(_settings(store), scheduler=False)
    )
    listed = await client.get("/v1/deploys", headers=AUTH)
    assert listed.status == 500
    ready = await client.get("/readyz")
    assert ready.status == 503, await ready.text()
    assert "Corrupt database file" in (await ready.json())["error"]["message"]


def _crash_image(store: Path, into: Path, wal_bytes: int | None = None) -> Path:
    """The store's files as a crash leaves them, the log cut to `wal_bytes` if given."""
    into.mkdir()
    shutil.copy(store, into / store.name)
    wal = store.with_name(f"{store.name}.wal").read_bytes()
    (into / f"{store.name}.wal").write_bytes(wal if wal_bytes is None else wal[:wal_bytes])
    return into / store.name


def _kept(image: Path, sha: str) -> bool:
    con = duckdb.connect(str(image))
    try:
        return bool(con.execute("SELECT id FROM deploys WHERE sha = ?", [sha]).fetchall())
    finally:
        con.close()


async def test_start_logs_a_deploy_a_torn_log_dropped_after_its_journal_row(
    tmp_path: Path, aiohttp_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Two deploys acknowledged, the process gone, its `.wal` cut inside the second deploy's
    transaction: the next start says the log was replayed; the second deploy's journal row went
    with its deploy (one transaction), so no acknowledged deploy is missing or named as lost."""
    store = tmp_path / "run" / "store.duckdb"
    running: TestClient[Any, Any] = await aiohttp_client(
        build_app(_settings(store), scheduler=False)
    )
    kept, torn = "1" * 40, "2" * 40
    for sha in (kept, torn):
        answer = await running.post("/v1/deploys", json=_deploy(sha), headers=AUTH)
        assert answer.status == 202
    image = _crash_image(store, tmp_path / "whole")  # every commit is flushed: a crash's image
    await running.close()
    size = (image.parent / f"{image.name}.wal").stat().st_size
    # The shortest log that still holds the second deploy ends its transaction; one byte less
    # tears it, while the journal row written before it stays whole.
    low, high, probe = 0, size, 0
    while low < high:
        middle = (low + high) // 2
        probe += 1
        if _kept(_crash_image(image, tmp_path / f"probe{probe}", middle), torn):
            high = middle
        else:
            low = middle + 1
    cut = _crash_image(image, tmp_path / "cut", low - 1)

    caplog.set_level(logging.WARNING, logger="attribution")
    client: TestClient[Any, Any] = await aiohttp_client(build_app(_settings(cut), scheduler=False))
    said = [r.getMessage() for r in caplog.records]
    assert any("not closed cleanly" in m and "replayed" in m for m in said), said
    # The CD hook's journal row and its deploy are one group-commit transaction: a torn log
    # drops both, so nothing acknowledged is missing and nothing is named as lost.
    assert not [m for m in said if torn[:12] in m or kept[:12] in m], said
    store_now = client.app[DEPS].store
    assert [d.sha for d in await store_now.watches.deploys()] == [kept]
    assert await store_now.stats.counts()
    assert (await client.get("/readyz")).status == 200
