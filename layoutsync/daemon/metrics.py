"""Prometheus metrics of one daemon, in a registry of its own.

A private ``CollectorRegistry`` (not the process-global one) lets tests and
benchmarks run several daemons in one process, and process-wide state out
of the numbers. API calls are counted through the client's ``on_response``
hook, which sees every exchange, retries and confirming Queries included.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from ..api.models import ResponseEvent

__all__ = ["CONTENT_TYPE", "LATENCY_BUCKETS", "DaemonMetrics"]

CONTENT_TYPE = CONTENT_TYPE_LATEST

#: Reconcile latency buckets (seconds): a no-op is microseconds, a Create with
#: a 202 poll can take seconds, a backed-off retry tens of seconds.
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)


class DaemonMetrics:
    """Every metric the daemon exposes on ``GET /metrics``."""

    def __init__(self, *, process: bool = True) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        if process:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)
        r = self.registry
        self.events = Counter(
            "layoutsync_events",
            "Events received, by source (api, webhook) and type.",
            ["source", "type"],
            registry=r,
        )
        self.events_ignored = Counter(
            "layoutsync_events_ignored",
            "Webhook events acknowledged without effect, by reason.",
            ["reason"],
            registry=r,
        )
        self.reconciles = Counter(
            "layoutsync_reconciles",
            "Reconciles finished, by action (noop, create, update, replace, delete, error).",
            ["action"],
            registry=r,
        )
        self.api_calls = Counter(
            "layoutsync_api_calls",
            "Requests sent to the Cloud Transcoder API, by call and HTTP status "
            "('error' when no response came back).",
            ["call", "status"],
            registry=r,
        )
        self.reconcile_seconds = Histogram(
            "layoutsync_reconcile_duration_seconds",
            "Time one reconcile took, requests included.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "layoutsync_queue_depth",
            "Sessions waiting to be reconciled, by kind: change (an event or a spec edit not "
            "applied yet: real work) or resync (only the periodic drift check, or its retry).",
            ["kind"],
            registry=r,
        )
        self.oldest_change = Gauge(
            "layoutsync_queue_oldest_change_seconds",
            "Age of the oldest change not applied yet, waiting or being applied (0: none). "
            "Alert on this: it grows when the quota cannot keep up.",
            registry=r,
        )
        self.in_flight = Gauge(
            "layoutsync_reconciles_in_flight", "Reconciles running now.", registry=r
        )
        self.sessions = Gauge("layoutsync_sessions", "Sessions managed.", registry=r)
        self.config_errors = Gauge(
            "layoutsync_config_errors", "Spec files that failed to load.", registry=r
        )

    def bind(
        self,
        *,
        queue_changes: Callable[[], float],
        queue_resyncs: Callable[[], float],
        oldest_change_age: Callable[[], float],
        in_flight: Callable[[], float],
        sessions: Callable[[], float],
        config_errors: Callable[[], float],
    ) -> None:
        """Read the gauges from the live objects at scrape time, not on every change."""
        self.queue_depth.labels("change").set_function(queue_changes)
        self.queue_depth.labels("resync").set_function(queue_resyncs)
        self.oldest_change.set_function(oldest_change_age)
        self.in_flight.set_function(in_flight)
        self.sessions.set_function(sessions)
        self.config_errors.set_function(config_errors)

    def observe_response(self, event: ResponseEvent) -> None:
        """The API client's ``on_response`` hook: every exchange, retries and Queries included."""
        status = str(event.status_code) if event.status_code is not None else "error"
        self.api_calls.labels(event.call.value, status).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
