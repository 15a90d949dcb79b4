"""What a Watch step needs from the outside, wired once by the composition root (app or demo)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from attribution.store import Store
from loop.clock import Clock
from loop.config import Settings
from loop.watch.memory import WatchMemory
from loop.watch.pace import NoPace, PaceRecorder
from loop.watch.query_health import QueryHealth
from loop.watch.report_lane import ReportLane
from observer.detect import DEFAULT_SETTINGS, DetectorSettings
from observer.scrape_interval import ScrapeIntervals
from observer.sources import MetricsSource
from rollback.anthropic_fixer import AnthropicFixer
from rollback.checks import Checks, NoChecks
from rollback.fixer import Fixer, TemplateFixer
from rollback.forge import Forge
from rollback.notify import Notifier


@dataclass(frozen=True, slots=True)
class WatchDeps:
    """The store, the three boundaries, the clock and the retry budget of actions."""

    settings: Settings
    store: Store
    source: MetricsSource
    forge: Forge
    notifier: Notifier
    clock: Clock
    detector: DetectorSettings = DEFAULT_SETTINGS
    max_action_attempts: int = 5
    fixer: Fixer = TemplateFixer()  # noqa: RUF009 - stateless: one shared instance is safe
    action_retry_seconds: float = 30.0
    action_retry_cap: float = 600.0
    intervals: ScrapeIntervals = field(default_factory=ScrapeIntervals)
    """Scrape intervals learnt from the SLIs' samples, kept across evaluations."""
    query_health: QueryHealth = field(default_factory=QueryHealth)
    """The SLIs whose queries fail now (`/readyz`, `/metrics`); one per app, shared by Watches."""
    lessons_locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    """One lessons proposal per repository at a time: the sweep's and `POST /v1/lessons`."""
    checks: Checks = field(default_factory=NoChecks)
    """Where verdicts are shown on commits: the GitHub forge itself, else nowhere."""
    memory: WatchMemory = field(default_factory=WatchMemory)
    """What the observing Watches keep between evaluations (baselines, points, test state)."""
    pace: PaceRecorder = field(default_factory=NoPace)
    """Told each observing evaluation's lag and queries (`loop.watch.pace`): the app's metrics."""
    reports: ReportLane = field(default_factory=ReportLane)
    """The new Watches' observing checks, run beside the Watches (`loop.watch.report_lane`)."""

    def incident_url(self, incident_id: str) -> str | None:
        base = self.settings.public_url
        return f"{base.rstrip('/')}/v1/incidents/{incident_id}" if base else None


def build_fixer(settings: Settings) -> Fixer:
    """The Anthropic Fixer when a key is configured, else the keyless template."""
    key, config = settings.anthropic_api_key, settings.anthropic
    if key is None:
        return TemplateFixer()
    return AnthropicFixer(
        key.reveal(), config.model, base_url=config.base_url, timeout=config.timeout,
        max_tokens=config.max_tokens,
        prices=(config.input_usd_per_mtok, config.output_usd_per_mtok),
    )  # fmt: skip
