"""The `[flagger]` table: which Flagger canary is which Rearguard service, and where its webhooks
carry the commit it deploys.

Flagger's webhook payload names the canary (`namespace`, `name`) and a checksum of its spec, never
a commit; the commit comes from the webhook's own `metadata`, under `revision_key`, which the CD
step that changes the canary's image sets beside it. Read by `loop.config` only (the one reader of
files and the environment); the token comes from `REARGUARD_FLAGGER_TOKEN`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ENV_FLAGGER_TOKEN = "REARGUARD_FLAGGER_TOKEN"  # noqa: S105 - a variable's name, not a secret
FLAGGER_KEYS = {"revision_key", "previous_revision_key", "canaries"}
_CANARY = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?/[a-z0-9]([-.a-z0-9]{0,251}[a-z0-9])?")
"""`namespace/name` as Kubernetes spells them (a DNS label, then a DNS subdomain)."""
_METADATA_KEY = re.compile(r"[A-Za-z0-9_.-]{1,63}")


class FlaggerConfigError(ValueError):
    """The `[flagger]` table is unusable; `loop.config` reports it as a `ConfigError`."""


@dataclass(frozen=True, slots=True)
class Canary:
    """One Flagger canary gated by Rearguard: the service and environment it deploys."""

    key: str  # "namespace/name"
    service: str
    environment: str


@dataclass(frozen=True, slots=True)
class FlaggerSettings:
    """The canaries Rearguard gates and the metadata keys their webhooks carry commits in."""

    canaries: Mapping[str, Canary] = field(default_factory=dict)
    revision_key: str = "revision"
    previous_revision_key: str = "previous_revision"

    def canary(self, namespace: str, name: str) -> Canary | None:
        return self.canaries.get(f"{namespace}/{name}")


def _key(table: Mapping[str, Any], key: str, default: str, where: str) -> str:
    value = table.get(key, default)
    if not isinstance(value, str) or not _METADATA_KEY.fullmatch(value):
        raise FlaggerConfigError(f"{where}.{key}: expected a metadata key, got {value!r}")
    return value


def flagger_settings(
    table: Mapping[str, Any],
    environments: Mapping[str, tuple[str, ...]],
    versioned: set[str],
    where: str,
) -> FlaggerSettings:
    """Validate `[flagger]`; `environments` maps each configured service to its environments,
    `versioned` holds the services with an SLI in canary mode (a `version_label`)."""
    canaries_table = table.get("canaries", {})
    if not isinstance(canaries_table, Mapping):
        raise FlaggerConfigError(f"{where}.canaries: must be a table")
    canaries: dict[str, Canary] = {}
    for key, entry in canaries_table.items():
        at = f'{where}.canaries."{key}"'
        if not _CANARY.fullmatch(key):
            raise FlaggerConfigError(f"{at}: expected 'namespace/name' of a Canary")
        if not isinstance(entry, Mapping) or set(entry) - {"service", "environment"}:
            raise FlaggerConfigError(f"{at}: expected a table of `service` and `environment`")
        service = entry.get("service")
        if not isinstance(service, str) or service not in environments:
            raise FlaggerConfigError(f"{at}.service: {service!r} is no [services.NAME]")
        if service not in versioned:
            # Before/after numbers dilute a canary's share of traffic into the whole service's.
            raise FlaggerConfigError(
                f"{at}: service {service!r} has no SLI with `version_label`: a canary is judged "
                "against the stable version, which needs the version label"
            )
        environment = entry.get("environment", environments[service][0])
        if environment not in environments[service]:
            raise FlaggerConfigError(
                f"{at}.environment: service {service!r} is watched in "
                f"{list(environments[service])}, not {environment!r}"
            )
        canaries[key] = Canary(key, service, environment)
    return FlaggerSettings(
        canaries=canaries,
        revision_key=_key(table, "revision_key", "revision", where),
        previous_revision_key=_key(table, "previous_revision_key", "previous_revision", where),
    )
