"""The public views (`attribution/schema/011_public_views.sql`) and their export as Parquet.

The views live in schema `public` of the store file, beside the internal tables in `main`:
plain names would collide (`deploys`, `incidents`, `suspects`... are internal tables too), and a
schema of its own says which names are the contract. Not `rearguard`: DuckDB names a file's
catalog after the file, and a schema with the catalog's name (`rearguard.duckdb`, the usual
name) makes `rearguard.deploys` ambiguous. With DuckDB on a store file no server holds, the
views are `public.deploys` (or `SET search_path = 'public'`); the sandbox (`attribution.sandbox`)
holds them under their plain names and as `public.<view>`.

`export_view` writes one view as Parquet: one file, or a directory partitioned by month (hive
style, `month=2026-11/…`; rows without a time under `month=__HIVE_DEFAULT_PARTITION__`, and an
empty view as one empty file there, so the directory always reads back) for views with a time
column. It writes under a temporary name and
renames at the end, so a crash leaves no half-written file under the final name.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import duckdb

SCHEMA = "public"

VIEWS: dict[str, str | None] = {
    "deploys": "deployed_at",
    "prs": "merged_at",
    "deploy_prs": None,
    "agent_sessions": "first_seen",
    "incidents": "opened_at",
    "suspects": None,
    "actions": "created_at",
    "revert_rounds": "decided_at",
    "observations": "observed_at",
    "feedback": "created_at",
    "fixes": "created_at",
}
"""Every public view, with the time column that `--partition month` splits it by (None: the view
has none, and is written as one file)."""


NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"
"""The directory name DuckDB gives rows whose month is NULL (`month=__HIVE_DEFAULT_PARTITION__`)."""


class UnknownView(ValueError):
    """A name that is not one of `VIEWS`."""


def check_view(name: str) -> str:
    """`name` when it is a public view; `UnknownView` naming the views otherwise."""
    if name not in VIEWS:
        raise UnknownView(f"no view {name!r}; the views are: {', '.join(VIEWS)}")
    return name


def _quote_path(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def export_view(
    con: duckdb.DuckDBPyConnection,
    view: str,
    target_dir: Path,
    *,
    source: str | None = None,
    by_month: bool = False,
) -> Path:
    """Write `view` (read from `source`, a relation in SQL; the store's view by default) under
    `target_dir`: `<view>.parquet`, or with `by_month` (for views with a time column) a directory
    `<view>/month=YYYY-MM/…`. The path written; nothing under it until the write is complete."""
    relation = source or f"{SCHEMA}.{check_view(view)}"
    column = VIEWS[check_view(view)]
    target_dir.mkdir(parents=True, exist_ok=True)
    if by_month and column is not None:
        final = target_dir / view
        partial = target_dir / f".{view}.partial-{os.getpid()}"
        shutil.rmtree(partial, ignore_errors=True)
        con.execute(
            # Names from VIEWS and a relation of Rearguard's own: no user text in this SQL.
            f"COPY (SELECT *, strftime({column}, '%Y-%m') AS month FROM {relation}) "  # noqa: S608
            f"TO {_quote_path(partial)} (FORMAT parquet, PARTITION_BY (month))"
        )
        if not any(partial.rglob("*.parquet")):  # an empty view: one empty file instead
            empty = partial / f"month={NULL_PARTITION}" / "data_0.parquet"
            empty.parent.mkdir(parents=True, exist_ok=True)
            con.execute(
                f"COPY (SELECT * FROM {relation} LIMIT 0) TO {_quote_path(empty)} "  # noqa: S608
                "(FORMAT parquet)"
            )
        if final.exists():
            shutil.rmtree(final)
        partial.rename(final)
        return final
    final = target_dir / f"{view}.parquet"
    partial = target_dir / f".{view}.parquet.partial-{os.getpid()}"
    copy = f"COPY (SELECT * FROM {relation}) TO {_quote_path(partial)} (FORMAT parquet)"  # noqa: S608 - as above
    con.execute(copy)
    partial.replace(final)
    return final
