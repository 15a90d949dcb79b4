"""PRs, culprits and evidence of the benchmark's deploys, from a seed (see `world`).

Evidence kinds, one per incident: `trace` (a Sentry error whose frames run into the culprit's
changed lines, sometimes through an unchanged library frame, sometimes reported with another
path prefix), `trace_shared` (the innermost frame is in a shared library file that the culprit
and another PR of the deploy both changed), `route_split` (only the regressed SLI split by
route), `alert` (only an Alertmanager alert; its `handler` label is there 60% of the time), and
`priors` (nothing but history). A few percent of traces point at the wrong PR's lines, as real
errors sometimes surface in innocent code.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import TypeVar

from attribution.evidence import ErrorEvent, Evidence, FiringAlert, Frame, RouteCounts
from bench.attribution.world import AGENTS, AREAS, PEOPLE, ROUTES, Deploy, Pr, Stream, route_of

KINDS = ("trace", "trace_shared", "route_split", "alert", "priors")
METHODS = (("merge", 0.5), ("squash", 0.35), ("rebase", 0.15))


@dataclass
class Incident:
    deploy: Deploy
    kind: str
    culprits: tuple[int, ...]
    bug: tuple[str, int] | None = None  # path and line at the deploy's head
    shared: tuple[int, int] | None = None


T = TypeVar("T")


def _pick(rng: random.Random, items: list[tuple[T, float]]) -> T:
    return rng.choices([i for i, _ in items], weights=[w for _, w in items])[0]


def _edit(stream: Stream, pr: Pr, path: str) -> None:
    lines = stream.files[path]
    start = stream.rng.randrange(0, max(1, len(lines) - 10))
    count = stream.rng.randint(1, 8)
    new = stream._content(path, pr.number, stream.rng.randint(1, 10))
    lines[start : start + count] = new
    pr.lines += count + len(new)
    pr.touched.setdefault(path, None)


def _rename(stream: Stream, pr: Pr) -> None:
    old = stream.rng.choice([p for p in stream.files if f"/{pr.area}/" in p])
    new = old.replace(".py", f"_v{pr.number}.py")
    stream.files[new] = stream.files.pop(old)
    pr.touched[new] = old
    _edit(stream, pr, new)


def _new_pr(stream: Stream, deploy_prs: list[Pr], shared_lib: str | None) -> Pr:
    rng = stream.rng
    agent = _pick(rng, [(a, a[2]) for a in AGENTS])
    name, model, _, propensity = agent
    number = stream.next_number
    stream.next_number += 1
    author = f"{name}[bot]" if name else rng.choice(PEOPLE)
    session = f"{name or 'human'}-{stream.index}-{rng.randint(0, 3)}"
    method = str(_pick(rng, list(METHODS)))
    pr = Pr(number, name, model, session, author, rng.choice(AREAS), method, propensity)
    area_files = [p for p in stream.files if f"/{pr.area}/" in p]
    for path in rng.sample(area_files, rng.randint(1, 4)):
        _edit(stream, pr, path)
    earlier = [p for q in deploy_prs for p in q.touched if p in stream.files]
    if earlier and rng.random() < 0.25:
        _edit(stream, pr, rng.choice(earlier))
    if shared_lib is not None:
        _edit(stream, pr, shared_lib)
    elif rng.random() < 0.25:
        _edit(stream, pr, rng.choice([p for p in stream.files if "/lib/" in p]))
    if rng.random() < 0.08:
        _rename(stream, pr)
    return pr


def _land(stream: Stream, pr: Pr, main: int) -> int:
    paths = [p for p in pr.touched if p in stream.files]
    gone = tuple(old for old in pr.touched.values() if old)
    title = f"{pr.area}: change {pr.number}"
    if pr.method == "merge":
        branch = stream._commit(f"pr-{pr.number}", title, paths, (main,), gone)
        message = f"Merge pull request #{pr.number} from acme/pr-{pr.number}\n\n{title}"
        return stream._commit("main", message, paths, (main, branch), gone)
    message = f"{title} (#{pr.number})" if pr.method == "squash" else title
    return stream._commit("main", message, paths, (main,), gone)


def build_deploy(
    stream: Stream, main: int, kind: str
) -> tuple[Deploy, int, dict[int, int], tuple[int, int] | None]:
    """One deploy's PRs landed on main; the new main mark, PR marks and the shared pair."""
    rng = stream.rng
    n = rng.randint(2, 20)
    pair = sorted(rng.sample(range(n), 2)) if kind == "trace_shared" else None
    lib = rng.choice([p for p in stream.files if "/lib/" in p]) if pair else None
    prs: list[Pr] = []
    marks = {}
    for i in range(n):
        pr = _new_pr(stream, prs, lib if pair and i in pair else None)
        main = _land(stream, pr, main)
        marks[pr.number] = main
        prs.append(pr)
    shared = (prs[pair[0]].number, prs[pair[1]].number) if pair else None
    return Deploy("", "", prs), main, marks, shared


def _size(pr: Pr) -> int:
    return max(1, pr.lines)


def choose_culprits(
    rng: random.Random, deploy: Deploy, shared: tuple[int, int] | None
) -> tuple[int, ...]:
    pool = [p for p in deploy.prs if shared is None or p.number in shared]
    weights = [
        p.propensity * _size(p) ** 0.4 * (1.5 if p.area == "payments" else 1.0) for p in pool
    ]
    first = rng.choices(pool, weights=weights)[0]
    if len(pool) > 2 and rng.random() < 0.15:
        rest = [p for p in pool if p is not first]
        second = rng.choices(rest, weights=[p.propensity for p in rest])[0]
        return (first.number, second.number)
    return (first.number,)


def _bug(stream: Stream, pr_number: int, paths: list[str]) -> tuple[str, int] | None:
    for path in paths:
        lines = stream.files.get(path, [])
        mine = [i + 1 for i, (_, origin) in enumerate(lines) if origin == pr_number]
        if mine:
            return path, stream.rng.choice(mine)
    return None


def _reported(rng: random.Random, path: str) -> str:
    """How an SDK reports a path: absolute in a container, or relative to another root."""
    return rng.choice([f"/app/{path}", path.removeprefix("svc/"), f"/srv/shop/{path}"])


def trace(stream: Stream, incident: Incident, by_number: dict[int, Pr]) -> Evidence:
    rng = stream.rng
    culprit = by_number[incident.culprits[0]]
    target = culprit
    if rng.random() < 0.04:
        target = rng.choice(list(by_number.values()))
    paths = [p for p in target.touched if p in stream.files]
    if incident.kind == "trace_shared" and target is culprit:
        paths = [p for p in paths if "/lib/" in p] + paths
    else:
        paths = sorted(paths, key=lambda p: "/lib/" in p)
    bug = _bug(stream, target.number, paths)
    if bug is None:
        return Evidence()
    incident.bug = bug
    handler = f"svc/src/{culprit.area}/{culprit.area}_00.py"
    frames = [Frame(_reported(rng, handler), rng.randint(1, 40), "handle")]
    frames.append(Frame(_reported(rng, bug[0]), bug[1], "changed_code"))
    if incident.kind == "trace" and rng.random() < 0.2:
        lib = rng.choice([p for p in stream.files if "/lib/" in p])
        frames.append(Frame(_reported(rng, lib), rng.randint(1, 150), "library_call"))
    event = ErrorEvent(
        f"err-{incident.deploy.head[:8]}", "TypeError: bad operand", 0.0, tuple(frames)
    )
    return Evidence(errors=(event,), route_globs=ROUTES)


def _counts(rng: random.Random, n: float, p: float) -> float:
    return max(0.0, round(rng.gauss(n * p, math.sqrt(n * p * (1 - p)))))


def _culprit_route(rng: random.Random, culprit: Pr) -> str | None:
    """The route the culprit's bug shows on: one of the routes its changed files serve."""
    routes = sorted({r for p in culprit.touched if (r := route_of(p))})
    return rng.choice(routes) if routes else None


def route_split(rng: random.Random, culprit: Pr) -> Evidence:
    bad_route = _culprit_route(rng, culprit)
    counts = []
    for route in ROUTES:
        rate = 0.03 if route == bad_route else 0.005
        counts.append(
            RouteCounts(route, _counts(rng, 4000, 0.005), 4000, _counts(rng, 1000, rate), 1000)
        )
    return Evidence(routes=tuple(counts), route_label="route", route_globs=ROUTES)


def alert(rng: random.Random, culprit: Pr) -> Evidence:
    labels = {"alertname": "HighErrorRate", "service": "shop", "severity": "page"}
    route = _culprit_route(rng, culprit)
    if route and rng.random() < 0.6:
        labels["handler"] = route
    return Evidence(alerts=(FiringAlert("HighErrorRate", labels, 0.0),), route_globs=ROUTES)
