"""`rearguard report KIND`: a report as tables in the terminal, or one JSON document (`--json`).

It asks the running server (`--url`, with the read token from `REARGUARD_READ_TOKEN`, or the API
token from `REARGUARD_API_TOKEN`), or reads a store file that no server holds (`--store PATH`;
DuckDB lets one process open a file for writing, so a store a server has open is refused with a
message saying to use `--url`). Both give the same document (`attribution.reports`).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TextIO

import aiohttp

from attribution.reports import KINDS, build_report
from attribution.store import Store, StoreError
from attribution.store_reports import Window
from loop.api.fields import IngestError
from loop.api.reports import parse_since
from loop.config import ENV_API_TOKEN, ENV_READ_TOKEN

_DORA_COLUMNS = (
    ("deployment_frequency", "deployment frequency"),
    ("lead_time_for_changes", "lead time for changes"),
    ("change_failure_rate", "change failure rate"),
    ("failed_deployment_recovery_time", "failed deployment recovery time"),
    ("deployment_rework_rate", "deployment rework rate"),
)
_LOOP_PR_COLUMNS = (
    ("prs", "PRs"),
    ("open_to_merge", "open to merge"),
    ("merge_to_deploy", "merge to deploy"),
    ("verification_pass_rate", "verification pass rate"),
    ("ci_attempts", "CI attempts/PR"),
    ("review_rounds", "review rounds/PR"),
    ("tokens_per_pr", "tokens/PR"),
    ("cost_per_pr", "cost/PR"),
)
_LOOP_INCIDENT_COLUMNS = (
    ("incidents", "incidents"),
    ("onset_to_detection", "onset to detection"),
    ("detection_to_attribution", "detection to attribution"),
    ("detection_to_revert", "detection to revert PR"),
    ("tokens_per_incident", "tokens/incident"),
    ("cost_per_incident", "cost/incident"),
)
_REGRESSION_COLUMNS = (
    ("prs", "PRs"),
    ("incidents_blamed", "incidents"),
    ("culprits", "culprits"),
    ("corrections", "corrections"),
    ("regression_rate", "regression rate"),
    ("interval", "95% interval"),
    ("smoothed_rate", "smoothed"),
)


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0)):
        if abs(seconds) >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


_FORMATS: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "seconds": lambda m: _duration(float(m["value"])),
    "ratio": lambda m: (
        f"{float(m['value']):.1%} ({float(m['low']):.0%}-{float(m['high']):.0%}, n={m['n']})"
    ),
    "usd": lambda m: f"${float(m['value']):.2f}",
    "deploys/week": lambda m: f"{float(m['value']):.0f}",
}


def cell(value: Any, notes: dict[str, int]) -> str:
    """A metric (or a plain value) as table text; a null metric is `n/a [k]`, its reason
    numbered `k` in `notes`."""
    if not isinstance(value, Mapping):
        return "" if value is None else str(value)
    if value.get("value") is None:
        reason = str(value.get("reason") or "not computed")
        return f"n/a [{notes.setdefault(reason, len(notes) + 1)}]"
    shown = _FORMATS.get(str(value.get("unit")))
    return shown(value) if shown else f"{float(value['value']):.1f}"


def _table(headers: list[str], rows: list[list[str]], out: TextIO) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    print(line.rstrip(), file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip(), file=out)


def _section(
    title: str,
    rows: list[dict[str, Any]],
    keys: tuple[str, ...],
    columns: tuple[tuple[str, str], ...],
    out: TextIO,
) -> None:
    print(f"\n{title}", file=out)
    if not rows:
        print("  (no rows)", file=out)
        return
    notes: dict[str, int] = {}
    body = []
    for row in rows:
        shown = [str(row.get(k, "")) for k in keys]
        r = dict(row)
        if "regression_rate_low" in r:
            r["interval"] = f"{r['regression_rate_low']:.2f}-{r['regression_rate_high']:.2f}"
        body.append(shown + [cell(r.get(key), notes) for key, _ in columns])
    _table([*keys, *(name for _, name in columns)], body, out)
    for reason, number in notes.items():
        print(f"  [{number}] n/a: {reason}", file=out)


def render(document: Mapping[str, Any], out: TextIO) -> None:
    """A report document as terminal tables, with its definitions beneath."""
    kind = document["report"]
    rows = list(document.get("rows", []))
    if kind == "dora":
        _section("DORA metrics per service and ISO week", rows, ("service", "week"),
                 _DORA_COLUMNS, out)  # fmt: skip
    elif kind == "loop":
        _section("Agent loop, per repository and ISO week of merge", rows, ("repo", "week"),
                 _LOOP_PR_COLUMNS, out)  # fmt: skip
        _section("Agent loop, per service and ISO week of detection",
                 list(document.get("incident_rows", [])), ("service", "week"),
                 _LOOP_INCIDENT_COLUMNS, out)  # fmt: skip
    else:
        dimension = {"agents": "agent", "models": "model", "specs": "spec", "areas": "area"}[kind]
        _section(f"Regression rates per {dimension}", rows, ("repo", dimension),
                 _REGRESSION_COLUMNS, out)  # fmt: skip
    definitions = document.get("definitions") or {}
    if definitions:
        print("\nDefinitions", file=out)
        for text in definitions.values():
            print(f"  - {text}", file=out)


async def _from_server(
    url: str, kind: str, params: dict[str, str], token: str | None
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    endpoint = url.rstrip("/") + f"/v1/reports/{kind}"
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session,
        session.get(endpoint, params=params, headers=headers) as response,
    ):
        return response.status, await response.json(content_type=None)


async def _from_store(path: Path, kind: str, window: Window) -> dict[str, Any]:
    store = await Store.open(path)
    try:
        return await build_report(store, kind, window)
    finally:
        await store.close()


Fetched = tuple[int, Any]
"""An exit code (0: the document was made) and the document, or the message to print."""


def _via_server(url: str, kind: str, params: dict[str, str], token: str | None) -> Fetched:
    try:
        status, document = asyncio.run(_from_server(url, kind, params, token))
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return 1, f"cannot read {url}: {exc}"
    if status != 200:  # noqa: PLR2004 - the one success the route answers
        error = document.get("error", {}) if isinstance(document, Mapping) else {}
        return 1, f"the server answered {status}: {error.get('message')}"
    return 0, document


def _via_store(store: str, kind: str, since: str | None, service: str | None,
               repo: str | None) -> Fetched:  # fmt: skip
    now = time.time()
    try:
        window = Window(until=now, since=parse_since(since, now), service=service, repo=repo)
    except IngestError as exc:
        return 2, f"--since: {exc.message}"
    path = Path(store)
    if not path.exists():
        return 2, f"no store at {path}"
    try:
        return 0, asyncio.run(_from_store(path, kind, window))
    except StoreError as exc:
        hint = "; a server holds it: use --url" if "lock" in str(exc).lower() else ""
        return 1, f"cannot read the store {path}{hint}: {exc}"


def run_report(
    kind: str,
    *,
    env: Mapping[str, str],
    url: str | None,
    store: str | None,
    since: str | None,
    service: str | None,
    repo: str | None,
    as_json: bool,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Print the report (on `out`, errors on `err`: stdout and stderr unless given); 0 when it
    was made, 1 when the server or store refused, 2 for bad use."""
    out, err = out or sys.stdout, err or sys.stderr
    if kind not in KINDS:
        code, found = 2, f"no report {kind!r}; the kinds are {', '.join(KINDS)}"
    elif (url is None) == (store is None):
        code, found = 2, "give one of --url (a running server) or --store PATH"
    elif url is not None:
        params = {k: v for k, v in (("since", since), ("service", service), ("repo", repo)) if v}
        token = env.get(ENV_READ_TOKEN) or env.get(ENV_API_TOKEN)
        code, found = _via_server(url, kind, params, token)
    else:
        code, found = _via_store(str(store), kind, since, service, repo)
    if code != 0 or not isinstance(found, Mapping):
        print(f"rearguard: {found}", file=err)
    elif as_json:
        json.dump(found, out, indent=2)
        print(file=out)
    else:
        render(found, out)
    return code
