"""JSON views of deploys and incidents, shared by the HTTP API and the demo's `--json`."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from attribution.identity import describe
from attribution.records import ActionKind, Deploy, Incident, MergedPR
from attribution.store import Store


def pr_view(pr: MergedPR) -> dict[str, Any]:
    ident = pr.identity
    return {
        "repo": pr.repo,
        "number": pr.number,
        "title": pr.title,
        "url": pr.url,
        "author": pr.author,
        "merge_sha": pr.merge_sha,
        "head_ref": pr.head_ref,
        "files": list(pr.files),
        "agent": {
            "kind": ident.kind,
            "authorship": ident.authorship,
            "source": ident.source,
            "grain": ident.grain,
            "provenance": describe(ident, pr.head_ref),
            "name": ident.name,
            "session": ident.session,
            "model": ident.model,
            "role": ident.role,
            "spec": ident.spec,
            "tokens": ident.tokens,
            "cost_usd": ident.cost_usd,
        },
    }


async def deploy_view(store: Store, deploy: Deploy) -> dict[str, Any]:
    """A deploy with its Watch phase, verdict, PRs, timeline and incident id (one store call)."""
    watch, verdict, prs, timeline, incident_id = await store.deploy_summary(deploy.id)
    return {
        **asdict(deploy),
        "phase": watch.phase if watch else None,
        "reason": watch.reason if watch else None,
        "verdict": verdict,
        "prs": [pr_view(p) for p in prs],
        "timeline": timeline,
        "incident_id": incident_id,
        "warnings": await warnings_view(store, deploy.id),
        **({"flagger": await flagger_view(store, deploy.id)} if deploy.source == "flagger" else {}),
    }


async def flagger_view(store: Store, deploy_id: str) -> list[dict[str, Any]]:
    """A Flagger canary's webhooks as journalled (`loop.api.flagger`): each gate's first call
    and every event, with the canary's phase, oldest first."""
    out = []
    for hook, at, body in await store.journal.bodies("flagger", f"{deploy_id}:"):
        metadata = (body or {}).get("metadata") or {}
        out.append({
            "hook": hook, "at": at, "phase": (body or {}).get("phase"),
            "event_type": metadata.get("eventType"), "message": metadata.get("eventMessage"),
        })  # fmt: skip
    return out


async def warnings_view(store: Store, deploy_id: str) -> list[dict[str, Any]]:
    """The deploy's early warnings as journalled actions (`loop.watch.warnings`)."""
    return [
        {"key": a.id, "status": str(a.status), "detail": a.detail, "error": a.error}
        for a in await store.incidents.actions(deploy_id)
        if a.kind is ActionKind.WARN
    ]


async def incident_view(store: Store, incident: Incident) -> dict[str, Any]:
    """An incident: verdict and evidence, suspects with their PRs and agents, actions, timeline."""
    deploy = await store.watches.deploy(incident.deploy_id)
    prs = {p.number: p for p in await store.prs.deploy_prs(incident.deploy_id)}
    suspects = []
    for rank, s in enumerate(incident.suspects, start=1):
        pr = prs.get(s.number)
        suspects.append({
            "rank": rank, "repo": s.repo, "number": s.number, "probability": s.probability,
            "reason": s.reason, "pr": pr_view(pr) if pr else None,
        })  # fmt: skip
    watch = await store.watches.watch(incident.deploy_id)
    return {
        "id": incident.id,
        "deploy_id": incident.deploy_id,
        "service": incident.service,
        "environment": incident.environment,
        "deploy_sha": deploy.sha if deploy else None,
        "phase": watch.phase if watch else None,
        "sli": incident.sli,
        "opened_at": incident.opened_at,
        "verdict": incident.verdict,
        # What the deciding evaluation queried and computed, per SLI, from the observations table.
        "evidence": await store.watches.observations(incident.deploy_id),
        "ambiguous": incident.ambiguous,
        "confidence": incident.confidence,
        "revert_unit": list(incident.revert_unit),
        "reason": incident.reason,
        "suspects": suspects,
        "actions": [asdict(a) for a in await store.incidents.actions(incident.id)],
        "timeline": await store.watches.timeline(incident.deploy_id),
        **await recovery_view(store, incident.id),
    }


async def recovery_view(store: Store, incident_id: str) -> dict[str, Any]:
    """Time to revert and to restore (seconds), and each revert round with its outcome."""
    times = await store.rounds.incident_times(incident_id)
    return {
        "time_to_revert_seconds": times.time_to_revert if times else None,
        "time_to_restore_seconds": times.time_to_restore if times else None,
        "recovery": {
            "onset_at": times.onset_at if times else None,
            "detected_at": times.detected_at if times else None,
            "revert_opened_at": times.revert_opened_at if times else None,
            "recovered_at": times.recovered_at if times else None,
            "rounds": [asdict(r) for r in await store.rounds.of_incident(incident_id)],
        },
    }
