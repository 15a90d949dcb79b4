"""The one place a `PrometheusSource` is built from the settings (serve, backtest, check), so
every command speaks to Prometheus with the same URL, timeout, credentials and CA bundle."""

from __future__ import annotations

from loop.config import Settings
from observer.prometheus import PrometheusSource


def prometheus_source(settings: Settings) -> PrometheusSource:
    """A source for `[prometheus]`, with its headers, credentials and CA bundle."""
    auth = settings.prometheus_auth
    return PrometheusSource(
        settings.prometheus_url,
        timeout=settings.prometheus_timeout,
        headers=auth.all_headers(),
        ca_file=str(auth.ca_file) if auth.ca_file is not None else None,
    )
