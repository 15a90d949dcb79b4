"""The `rearguard` command: `serve` beside CD, `demo` on embedded defaults, `backtest` over
history, `check` of a config against the real services, and `lessons` proposed to a repository."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path

from loop.config import ConfigError, load_settings


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
    return asyncio.run(
        run_backtest(settings, args.service or [], args.since, args.at or [], as_json=args.json)
    )


def _lessons(args: argparse.Namespace) -> int:
    import asyncio  # noqa: PLC0415 - keep `rearguard demo` start-up light

    from loop.cli.lessons import run_lessons  # noqa: PLC0415

    try:
        settings = load_settings(Path(args.config), os.environ)
    except ConfigError as exc:
        print(f"rearguard: config error: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(run_lessons(settings, args.repo, as_json=args.json))


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
    back.set_defaults(run=_backtest)
    check = sub.add_parser(
        "check", help="the config against the real Prometheus, GitHub and Slack, one line each"
    )
    check.add_argument("--config", required=True, help="TOML config (see deploy/)")
    check.set_defaults(run=_check)
    lessons = sub.add_parser(
        "lessons", help="derive a repository's lessons from the store and propose them as a PR"
    )
    lessons.add_argument("--repo", required=True, metavar="OWNER/NAME", help="a service's repo")
    lessons.add_argument("--config", required=True, help="TOML config (see deploy/)")
    lessons.add_argument("--json", action="store_true", help="one JSON document")
    lessons.set_defaults(run=_lessons)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
