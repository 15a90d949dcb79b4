"""The load generator of `make bench-ingest`, run as a process of its own (an aiohttp client).

`python -m bench.ingest.load URL KIND RATE SECONDS FIRST [REPO]` offers `RATE * SECONDS`
deliveries of KIND (`pr`: signed GitHub `pull_request` merges of REPO, `acme/checkout` by
default, each its own PR and `X-GitHub-Delivery`; `deploy`: CD hook deploys of `bench-cd`, each
its own sha) to the server at URL, on loopback, numbered from FIRST, and prints one JSON line:
what was offered, how many were answered 202, and the latency of each answered one.

The load is open: request i is due at `start + i / RATE` whatever the server answers, and its
latency is counted from when it was due, not from when it was sent, so a server that falls
behind is charged for the wait it causes (no coordinated omission). At most `MAX_IN_FLIGHT`
requests are outstanding; each gives up after `TIMEOUT` seconds (counted as an error).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from typing import Any

import aiohttp

from tests.serve_rig_ingest import BEARER, EXAMPLE_REPO, PullRequests

MAX_IN_FLIGHT = 4096
TIMEOUT = 10.0
CD_SERVICE = "bench-cd"


def deploy_body(number: int) -> dict[str, Any]:
    """A deploy of `bench-cd` that finished a minute ago: its short watch is already over, so
    its Watch judges it once and ends (each deploy still costs a Watch, as in production)."""
    return {"service": CD_SERVICE, "environment": "production", "sha": f"{number:040x}",
            "finished_at": time.time() - 60}  # fmt: skip


async def offer(url: str, kind: str, rate: float, seconds: float, first: int,  # noqa: PLR0917 - the command's arguments
                repo: str = EXAMPLE_REPO) -> dict[str, Any]:  # fmt: skip
    """Offer the deliveries, wait for every answer (or its timeout); the figures."""
    count = max(1, round(rate * seconds))
    prs = PullRequests(repo)
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    gate = asyncio.Semaphore(MAX_IN_FLIGHT)
    timeout = aiohttp.ClientTimeout(total=TIMEOUT)
    connector = aiohttp.TCPConnector(limit=1024)
    loop = asyncio.get_running_loop()

    async def one(session: aiohttp.ClientSession, number: int, due: float) -> None:
        async with gate:
            try:
                if kind == "pr":
                    body = prs.body(number)
                    response = await session.post(
                        f"{url}/v1/webhooks/github", data=body,
                        headers=prs.headers(f"bench-{number}", body),
                    )  # fmt: skip
                else:
                    response = await session.post(
                        f"{url}/v1/deploys", json=deploy_body(number), headers=BEARER
                    )
                async with response:
                    await response.read()
                    if response.status == 202:
                        latencies.append(loop.time() - due)
                    else:
                        errors[str(response.status)] += 1
            except (aiohttp.ClientError, TimeoutError) as exc:
                errors[type(exc).__name__] += 1

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = loop.time() + 0.05
        started_at = time.time() + 0.05
        tasks = []
        for i in range(count):
            due = start + i / rate
            if (delay := due - loop.time()) > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(session, first + i, due)))
        offered_for = loop.time() - start
        await asyncio.gather(*tasks)
        took = loop.time() - start
    return {
        "kind": kind, "rate": rate, "offered": count, "answered": len(latencies),
        "errors": dict(errors), "offered_rate": count / max(offered_for, 1e-9),
        "answered_rate": len(latencies) / max(took, 1e-9), "latencies": latencies,
        "started_at": started_at, "offered_until": started_at + offered_for,
    }  # fmt: skip


def main() -> int:
    url, kind, rate, seconds, first = sys.argv[1:6]
    repo = sys.argv[6] if len(sys.argv) > 6 else EXAMPLE_REPO
    result = asyncio.run(offer(url, kind, float(rate), float(seconds), int(first), repo))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
