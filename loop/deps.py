"""What a Watch step needs from the outside, wired once by the composition root (app or demo)."""

from __future__ import annotations

from dataclasses import dataclass

from attribution.store import Store
from loop.clock import Clock
from loop.config import Settings
from observer.detect import DEFAULT_SETTINGS, DetectorSettings
from observer.sources import MetricsSource
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
    action_retry_seconds: float = 30.0
    action_retry_cap: float = 600.0

    def incident_url(self, incident_id: str) -> str | None:
        base = self.settings.public_url
        return f"{base.rstrip('/')}/v1/incidents/{incident_id}" if base else None
