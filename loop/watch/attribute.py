"""The I/O around attribution: what the Watch fetches so that `attribution.suspects.rank` can
stay a pure function.

When a deploy's change set is resolved: PRs for range commits with no PR on record (GitHub's
"pull requests associated with a commit"), each PR's files with their changed line ranges, and,
in a monorepo, only the PRs touching the service's `paths`. When a gate is decided (the revert
plan, its actions, the fix step): the files of the PRs concerned, however each PR was learned
(`pr_files`); a webhook's PR record holds none of them. When an incident is opened: Sentry
errors first seen after the deploy, alerts that started firing after it, the regressed SLI split
by the service's `route_label`, and the history the priors learn from. Any of these failing
costs that evidence, never the incident: attribution then says less, and falls back to the range.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from attribution.changes import RangeCommit, mainline
from attribution.diffs import FileChange, changed_edits, changed_ranges, matches
from attribution.evidence import Evidence, PrChange, RouteCounts
from attribution.feedback import history
from attribution.identity import identify
from attribution.markers import MarkerRule
from attribution.records import Deploy, MergedPR
from attribution.signals import split_query
from attribution.suspects import Ranking, rank
from loop.config import ServiceSettings
from loop.watch.deps import WatchDeps
from loop.watch.line_provenance import with_line_records
from observer.slis import SliKind
from observer.sources import MetricsError, Series
from rollback.forge import ForgeError, PullFile, PullInfo

log = logging.getLogger(__name__)

MAX_COMMIT_LOOKUPS = 50
"""Commits without a PR on record looked up one by one per deploy; beyond this, say so."""


def file_change(f: PullFile) -> FileChange:
    """A forge's file entry as attribution keeps it, line ranges read from the patch."""
    ranges = changed_ranges(f.patch) if f.patch else ()
    edits = changed_edits(f.patch) if f.patch else ()
    return FileChange(f.path, f.status, f.additions, f.deletions, ranges, f.previous_path, edits)


def _merged_pr(repo: str, sha: str, info: PullInfo, rules: Sequence[MarkerRule]) -> MergedPR:
    """A PR found through commit `sha` (its landing commit: merge, squash or rebase)."""
    return MergedPR(
        repo=repo,
        number=info.number,
        title=info.title,
        author=info.author,
        url=info.url,
        merge_sha=sha,
        head_sha=info.head_sha,
        base_ref=info.base_ref,
        merged_at=info.merged_at or 0.0,
        body=info.body,
        identity=identify(
            info.author,
            info.body,
            labels=info.labels,
            repo=repo,
            head_ref=info.head_ref,
            rules=rules,
        ),
        labels=info.labels,
        node_id=info.node_id,
        head_ref=info.head_ref,
    )


async def find_missing_prs(
    deps: WatchDeps,
    service: ServiceSettings,
    commits: Sequence[RangeCommit],
    known: Sequence[MergedPR],
) -> int:
    """Record the merged PRs of mainline commits that match no PR on record; how many found."""
    shas = {pr.merge_sha for pr in known}
    missing = [c.sha for c in mainline(commits) if c.sha not in shas]
    found = 0
    for sha in missing[:MAX_COMMIT_LOOKUPS]:
        try:
            pulls = await deps.forge.pulls_for_commit(service.repo, sha)
        except ForgeError as exc:
            log.warning("PRs of commit %s unresolved: %s", sha[:12], exc)
            continue
        for info in pulls:
            if info.merged_at is not None and info.base_ref == service.default_branch:
                await deps.store.prs.record_pr(
                    _merged_pr(service.repo, sha, info, deps.settings.marker_rules),
                    deps.clock.now(),
                )
                if info.created_at is not None:
                    await deps.store.evidence.record_opened_at(
                        service.repo, info.number, info.created_at
                    )
                found += 1
    return found


async def fetch_files(deps: WatchDeps, repo: str, prs: Sequence[MergedPR]) -> None:
    """Fetch and keep the files (with line ranges) of the PRs whose files are not held yet."""
    evidence = deps.store.evidence
    held = await evidence.files_known(repo, [p.number for p in prs])
    for pr in prs:
        if pr.number in held:
            continue
        try:
            files = await deps.forge.pull_files(repo, pr.number)
        except ForgeError as exc:
            log.warning("files of %s#%d unresolved: %s", repo, pr.number, exc)
            continue
        await evidence.record_pr_files(repo, pr.number, [file_change(f) for f in files])


@dataclass(frozen=True, slots=True)
class PrFiles:
    """The paths each PR touched (a rename's old path too); a PR absent from `known` is one
    whose files nobody could tell, which a gate treats as touching a gated path."""

    known: Mapping[int, tuple[str, ...]]

    def paths(self) -> tuple[str, ...]:
        """Every path any of the PRs touched, sorted."""
        return tuple(sorted({path for paths in self.known.values() for path in paths}))

    def unknown(self, numbers: Iterable[int]) -> tuple[int, ...]:
        """Those of `numbers` whose files are unknown (no PR on record counts as unknown)."""
        return tuple(n for n in numbers if n not in self.known)


async def pr_files(deps: WatchDeps, repo: str, prs: Sequence[MergedPR]) -> PrFiles:
    """The files of `prs`, however each PR was learned: the PR record's (`MergedPR.files`) and
    the evidence store's per-PR file changes, else fetched from the forge now and kept there.
    Every gate decision reads files here; a PR that none of these can answer for is unknown."""
    await fetch_files(deps, repo, [p for p in prs if not p.files])
    evidence = deps.store.evidence
    held = await evidence.files_known(repo, [p.number for p in prs])
    changes = {c.number: c for c in await evidence.changes(prs)}
    known: dict[int, tuple[str, ...]] = {}
    for pr in prs:
        paths = set(pr.files)
        if pr.number in held:
            paths.update(changes[pr.number].paths)
        if paths or pr.number in held:  # a PR changing no file is known to touch nothing
            known[pr.number] = tuple(sorted(paths))
    return PrFiles(known)


async def in_service_paths(
    deps: WatchDeps, service: ServiceSettings, prs: list[MergedPR]
) -> tuple[list[MergedPR], int]:
    """Fetch the PRs' files; in a monorepo (`paths` set), keep the PRs touching the service's
    paths, and say how many were left out. A PR whose files are unknown is kept: not knowing is
    no reason to drop it."""
    await fetch_files(deps, service.repo, prs)
    if not service.paths or not prs:
        return prs, 0
    changes = await deps.store.evidence.changes(prs)
    kept = [c.pr for c in changes if not c.paths or any(matches(p, service.paths) for p in c.paths)]
    return kept, len(prs) - len(kept)


def _totals(series: Sequence[Series], label: str, start: float, end: float) -> dict[str, float]:
    out: dict[str, float] = {}
    for s in series:
        value = s.labels.get(label)
        if value is None:
            continue
        total = sum(p.value for p in s.samples if start < p.t <= end and math.isfinite(p.value))
        out[value] = out.get(value, 0.0) + total
    return out


async def route_split(
    deps: WatchDeps, deploy: Deploy, service: ServiceSettings, sli_name: str | None, now: float
) -> tuple[RouteCounts, ...]:
    """Bad and total events per `route_label` value of the regressed SLI, before and after."""
    sli = next((s for s in service.slis if s.name == sli_name), None)
    if sli is None or sli.kind is not SliKind.RATIO or not service.routes:
        return ()
    queries = sli.queries(service.step)
    bad, total = (split_query(queries[k], service.route_label) for k in ("bad", "total"))
    if bad is None or total is None:
        return ()
    start, cut = deploy.finished_at - service.baseline, deploy.finished_at
    try:
        bad_series = await deps.source.query_range(bad, start, now, service.step)
        total_series = await deps.source.query_range(total, start, now, service.step)
    except MetricsError as exc:
        log.warning("route split of %s unavailable: %s", sli.name, exc)
        return ()
    label = service.route_label
    b0, b1 = _totals(bad_series, label, start, cut), _totals(bad_series, label, cut, now)
    t0, t1 = _totals(total_series, label, start, cut), _totals(total_series, label, cut, now)
    return tuple(
        RouteCounts(v, b0.get(v, 0.0), t0.get(v, 0.0), b1.get(v, 0.0), t1.get(v, 0.0))
        for v in sorted(set(t0) | set(t1))
    )


async def rank_incident(
    deps: WatchDeps,
    deploy: Deploy,
    service: ServiceSettings,
    sli: str | None,
    prs: Sequence[MergedPR],
    *,
    now: float,
) -> Ranking:
    """Gather the evidence and history of a regressed deploy and rank its PRs."""
    evidence_store = deps.store.evidence
    await fetch_files(deps, service.repo, prs)
    changes: list[PrChange] = await evidence_store.changes(list(prs))
    changes = await with_line_records(deps.forge, service.repo, changes)
    evidence = Evidence(
        errors=tuple(await evidence_store.errors_since(service.name, deploy.finished_at, now)),
        alerts=tuple(await evidence_store.alerts_since(service.name, deploy.finished_at, now)),
        routes=await route_split(deps, deploy, service, sli, now),
        route_label=service.route_label,
        route_globs=service.routes,
    )
    deployed, blames, signals = await evidence_store.learning(service.repo)
    current = {p.number for p in prs}
    past = [c for c in deployed if c.number not in current]
    return rank(
        prs,
        deps.settings.action_bar,
        changes=changes,
        evidence=evidence,
        history=history(past, blames, signals),
        sensitive=deps.settings.human_gates,
    )
