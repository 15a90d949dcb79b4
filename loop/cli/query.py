"""`rearguard query "SQL"` and `rearguard export --to DIR`: the public views, from a running
server (`--url`, the read token from the environment) or from a store file no server holds
(`--store PATH`, opened read-only).

A query runs in the same sandbox either way (`attribution.sandbox`): one SELECT over the views,
time, row and memory limits. Output is a table (default), CSV or the route's JSON document.
An export writes each view as Parquet (`--partition month`: a directory per view, hive-style by
month, for views with a time column), a progress line per view on stderr, each file under a
temporary name until complete.
"""

from __future__ import annotations

import contextlib
import csv
import json
import shutil
import tempfile
from pathlib import Path
from typing import IO, Any

import duckdb

from attribution.public_views import VIEWS, UnknownView, check_view, export_view
from attribution.sandbox import QueryRefused, StoreLocked, open_read_only, query_file
from loop.cli import remote

MAX_CELL = 60
"""Characters of a cell a table shows (CSV and JSON show every character)."""


class CliError(Exception):
    """A query or export could not be done; the message is what the user reads."""


def _locked(path: Path, url: str) -> CliError:
    return CliError(
        f"the store {path} is held by a running `rearguard serve`; read it through the server "
        f"instead: --url {url} (the read token in REARGUARD_READ_TOKEN)"
    )


def run_query(sql: str, *, store: Path | None, url: str, token: str | None) -> dict[str, Any]:
    """The answer (the route's JSON shape) of `sql`, from the file `store` or the server."""
    if store is None:
        try:
            answer: dict[str, Any] = remote.query(url, token, sql)
        except remote.RemoteError as exc:
            raise CliError(str(exc)) from exc
        return answer
    try:
        return query_file(store, sql).to_json()
    except StoreLocked as exc:
        raise _locked(store, url) from exc
    except FileNotFoundError as exc:
        raise CliError(str(exc)) from exc
    except QueryRefused as exc:
        raise CliError(f"{exc.code}: {exc.message}") from exc


def _text(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def write_answer(answer: dict[str, Any], fmt: str, out: IO[str]) -> None:
    """`answer` as a table, CSV or JSON on `out`."""
    names = [c["name"] for c in answer["columns"]]
    rows = answer["rows"]
    if fmt == "json":
        json.dump(answer, out, indent=2)
        out.write("\n")
        return
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(names)
        writer.writerows([["" if v is None else _text(v) for v in row] for row in rows])
        return
    cells = [[_cut(_text(v)) for v in row] for row in rows]
    widths = [max([len(n)] + [len(r[i]) for r in cells]) for i, n in enumerate(names)]
    out.write("  ".join(n.ljust(w) for n, w in zip(names, widths, strict=True)).rstrip() + "\n")
    out.write("  ".join("-" * w for w in widths) + "\n")
    for row in cells:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")
    out.write(f"({len(rows)} row{'s' if len(rows) != 1 else ''}"
              f"{', more left out' if answer.get('truncated') else ''})\n")  # fmt: skip


def _cut(text: str) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def _views(names: list[str]) -> list[str]:
    try:
        return [check_view(n) for n in names] or list(VIEWS)
    except UnknownView as exc:
        raise CliError(str(exc)) from exc


def _described(con: duckdb.DuckDBPyConnection, path: Path) -> str:
    pattern = str(path / "**" / "*.parquet") if path.is_dir() else str(path)
    count = con.execute(
        "SELECT count(*) FROM read_parquet(?, hive_partitioning = true)", [pattern]
    ).fetchone()
    rows = count[0] if count else 0
    return f"{rows} rows -> {path}"


def run_export(
    target: Path,
    *,
    store: Path | None,
    url: str,
    token: str | None,
    views: list[str],
    by_month: bool,
    progress: IO[str],
) -> list[Path]:
    """Every view of `views` (all when empty) as Parquet under `target`; the paths written."""
    chosen = _views(views)
    target.mkdir(parents=True, exist_ok=True)
    with contextlib.closing(duckdb.connect(":memory:")) as local:
        if store is None:
            return _export_remote(local, target, url, token, chosen, by_month=by_month,
                                  progress=progress)  # fmt: skip
        try:
            source = open_read_only(store)
        except StoreLocked as exc:
            raise _locked(store, url) from exc
        except FileNotFoundError as exc:
            raise CliError(str(exc)) from exc
        written = []
        with contextlib.closing(source):
            for i, view in enumerate(chosen, 1):
                try:
                    path = export_view(source, view, target, by_month=by_month)
                except duckdb.CatalogException as exc:
                    raise CliError(f"the store {store} has no view {view} (start `rearguard "
                                   "serve` on it once to migrate it)") from exc  # fmt: skip
                progress.write(f"[{i}/{len(chosen)}] {view}: {_described(local, path)}\n")
                written.append(path)
        return written


def _export_remote(
    local: duckdb.DuckDBPyConnection,
    target: Path,
    url: str,
    token: str | None,
    views: list[str],
    *,
    by_month: bool,
    progress: IO[str],
) -> list[Path]:
    written = []
    work = Path(tempfile.mkdtemp(prefix="rearguard-export-"))
    try:
        for i, view in enumerate(views, 1):
            split = by_month and VIEWS[view] is not None
            dest = (work if split else target) / f"{view}.parquet"
            try:
                remote.download(url, token, view, dest)
            except remote.RemoteError as exc:
                raise CliError(str(exc)) from exc
            if split:
                quoted = str(dest).replace("'", "''")
                dest = export_view(local, view, target, source=f"read_parquet('{quoted}')",
                                   by_month=True)  # fmt: skip
            progress.write(f"[{i}/{len(views)}] {view}: {_described(local, dest)}\n")
            written.append(dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return written
