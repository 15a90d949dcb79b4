"""The `rearguard` command: `serve` beside CD, `demo` on embedded defaults, `backtest` over
history, `check` of a config against the real services, `report` of delivery metrics, and
`query` / `export` of the store's public views."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path

from loop.config import ConfigError, client_token, load_settings


def _serve(args: argparse.Namespace) -> int:
    from loop.api.app import build_app  # noqa: PLC0415 - keep `rearguard demo` start-up light
    from loop.api.server import serve  # noqa: PLC0415
    from loop.telemetry import install_tracing  # noqa: PLC0415

    try:
        settings = load_settings(Path(args.config), os.environ)
    except ConfigError as exc:
        print(f"rearguard: config error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    install_tracing("rearguard")
    serve(build_app(settings), settings.listen_host, settings.listen_port)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from loop.demo.run import main as demo_main  # noqa: PLC0415

    workdir = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="rearguard-demo-"))
    if workdir.exists() and any(workdir.iterdir()):
        print(f"rearguard: demo directory {workdir} is not empty", file=sys.stderr)
        return 2
    return demo_main(workdir, args.json)


def _check(args: argparse.Namespace) -> int:
    import asyncio  # noqa: PLC0415 - keep `rearguard demo` start-up light

    from loop.cli.check import run_check  # noqa: PLC0415

    try:
        settings = load_settings(Path(args.config), os.environ)
    except ConfigError as exc:
        print(f"FAIL config: {exc}")
        return 2
    return asyncio.run(run_check(settings))


def _backtest(args: argparse.Namespace) -> int:
    import asyncio  # noqa: PLC0415 - keep `rearguard demo` start-up light

    from loop.cli.backtest_io import run_backtest  # noqa: PLC0415

    try:
        settings = load_settings(Path(args.config), os.environ)
    except ConfigError as exc:
        print(f"rearguard: config error: {exc}", file=sys.stderr)
        return 2
    token = client_token(os.environ)
    return asyncio.run(
        run_backtest(settings, args.service or [], args.since, args.at or [], as_json=args.json,
                     url=args.url, token=token.reveal() if token else None)
    )  # fmt: skip


def _query(args: argparse.Namespace) -> int:
    from loop.cli.query import CliError, run_query, write_answer  # noqa: PLC0415

    token = client_token(os.environ)
    try:
        answer = run_query(args.sql, store=Path(args.store) if args.store else None,
                           url=args.url, token=token.reveal() if token else None)  # fmt: skip
    except CliError as exc:
        print(f"rearguard: {exc}", file=sys.stderr)
        return 2
    write_answer(answer, args.format, sys.stdout)
    if answer.get("truncated"):
        print(f"rearguard: only the first {answer['row_count']} rows are shown; narrow the "
              "query (WHERE, LIMIT) or use `rearguard export`", file=sys.stderr)  # fmt: skip
    return 0


def _export(args: argparse.Namespace) -> int:
    from loop.cli.query import CliError, run_export  # noqa: PLC0415

    token = client_token(os.environ)
    try:
        run_export(Path(args.to), store=Path(args.store) if args.store else None, url=args.url,
                   token=token.reveal() if token else None, views=args.view or [],
                   by_month=args.partition == "month", progress=sys.stderr)  # fmt: skip
    except CliError as exc:
        print(f"rearguard: {exc}", file=sys.stderr)
        return 2
    return 0


def _source_arguments(command: argparse.ArgumentParser) -> None:
    from loop.cli.remote import DEFAULT_URL  # noqa: PLC0415

    where = command.add_mutually_exclusive_group()
    where.add_argument(
        "--url", default=DEFAULT_URL,
        help=f"a running `rearguard serve` (default {DEFAULT_URL}); the bearer token comes from "
        "REARGUARD_READ_TOKEN (or REARGUARD_API_TOKEN)",
    )  # fmt: skip
    where.add_argument("--store", metavar="PATH",
                       help="a store file no server holds, opened read-only")  # fmt: skip


def _report(args: argparse.Namespace) -> int:
    from loop.cli.report import run_report  # noqa: PLC0415 - keep `rearguard demo` start-up light

    return run_report(
        args.kind, env=os.environ, url=args.url, store=args.store, since=args.since,
        service=args.service, repo=args.repo, as_json=args.json,
    )  # fmt: skip


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="rearguard", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP service and its watch loop beside CD")
    serve.add_argument("--config", required=True, help="TOML config (see deploy/)")
    serve.set_defaults(run=_serve)
    demo = sub.add_parser("demo", help="the whole loop on embedded defaults, offline")
    demo.add_argument("--json", action="store_true", help="print one JSON document")
    demo.add_argument("--dir", help="empty directory for the repo and store (default: a temp dir)")
    demo.set_defaults(run=_demo)
    back = sub.add_parser(
        "backtest", help="what the detector would have decided for past deploys, from history"
    )
    back.add_argument("--config", required=True, help="TOML config (see deploy/)")
    back.add_argument(
        "--service", action="append", metavar="NAME",
        help="a [services.NAME] of the config; repeatable (default: every service)",
    )  # fmt: skip
    back.add_argument("--json", action="store_true", help="one JSON document with every number")
    back.add_argument("--since", default="30d", help="replay the store's deploys this far back")
    back.add_argument(
        "--at", action="append", metavar="TIME",
        help="a deploy time instead of the store's (ISO 8601 or Unix seconds); repeatable",
    )  # fmt: skip
    back.add_argument(
        "--url", help="read the deploys through this running server (default: the store file, "
        "or the config's server when a running serve holds the file)",
    )  # fmt: skip
    back.set_defaults(run=_backtest)
    query = sub.add_parser(
        "query", help="one read-only SELECT over the store's public views (README: the views)"
    )
    query.add_argument("sql", help='e.g. "select service, count(*) from deploys group by 1"')
    query.add_argument("--format", choices=("table", "csv", "json"), default="table")
    _source_arguments(query)
    query.set_defaults(run=_query)
    export = sub.add_parser("export", help="every public view as Parquet files")
    export.add_argument("--to", required=True, metavar="DIR", help="directory to write into")
    export.add_argument(
        "--partition", choices=("month",),
        help="hive-partition views with a time column by month (DIR/VIEW/month=YYYY-MM/)",
    )  # fmt: skip
    export.add_argument("--view", action="append", metavar="NAME",
                        help="only this view; repeatable (default: every view)")  # fmt: skip
    _source_arguments(export)
    export.set_defaults(run=_export)
    check = sub.add_parser(
        "check", help="the config against the real Prometheus, GitHub and Slack, one line each"
    )
    check.add_argument("--config", required=True, help="TOML config (see deploy/)")
    check.set_defaults(run=_check)
    report = sub.add_parser(
        "report", help="delivery metrics (DORA, the agent loop) and regression rates, as tables"
    )
    report.add_argument("kind", help="dora | agents | models | specs | areas | loop")
    where = report.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--url", help="a running server (read token from REARGUARD_READ_TOKEN or _API_TOKEN)"
    )
    where.add_argument("--store", metavar="PATH", help="a store file no server holds")
    report.add_argument("--json", action="store_true", help="print one JSON document")
    report.add_argument(
        "--since", help="from this time: ISO 8601, Unix seconds, or back from now (`90d`)"
    )
    report.add_argument("--service", help="one service")
    report.add_argument("--repo", help="one repository (owner/name)")
    report.set_defaults(run=_report)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
