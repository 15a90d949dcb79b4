"""Tracing: an OpenTelemetry SDK provider with Rearguard's resource attributes.

Spans are made through the OpenTelemetry API wherever the loop works (`watch.advance`); this module
only installs the SDK. Without an exporter configured, spans are recorded and dropped.
"""

from __future__ import annotations

from importlib.metadata import version

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider


def install_tracing(
    service_name: str, environment: str | None = None, processor: SpanProcessor | None = None
) -> TracerProvider:
    """Install (once per process) and return the global tracer provider."""
    attributes = {"service.name": service_name, "service.version": version("rearguard")}
    if environment:
        attributes["deployment.environment.name"] = environment
    provider = TracerProvider(resource=Resource.create(attributes))
    if processor is not None:
        provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    return provider
