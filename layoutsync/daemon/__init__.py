"""The long-running sync daemon: HTTP API, signed Agora webhooks, a coalescing work queue.

- ``webhooks``: NCS signature check, event parsing, clientSeq ordering (sans-IO);
- ``queue``: the level-triggered work queue and its backoff limiter;
- ``ratelimit``: the rate limiter interface and the token bucket every outgoing request passes;
- ``metrics``: Prometheus metrics in the daemon's own registry;
- ``config``: spec files, reloads;
- ``heap``: the garbage-collector policy that keeps pauses short with many sessions;
- ``runtime``: ``Daemon``, sessions + queue + workers + resync;
- ``app``: the Starlette app (``create_app``); ``layoutsync daemon`` serves it.
"""

from __future__ import annotations

from .app import create_app
from .config import ConfigChanges, ConfigError, ConfigProblem, LoadedSpec, SpecCatalog
from .heap import HeapPolicy
from .metrics import DaemonMetrics
from .queue import BackoffLimiter, QueueCore, QueueShutDown, WorkQueue
from .ratelimit import RateLimitedTransport, RateLimiter, TokenBucket
from .runtime import (
    Daemon,
    DaemonSettings,
    ManagedSession,
    UnknownSession,
    WebhookOutcome,
    build_client,
)
from .webhooks import (
    ClientSeqTracker,
    HostEvent,
    Notification,
    SignatureCheck,
    WebhookError,
    parse_notification,
    sign,
    verify_signature,
)

__all__ = [
    "BackoffLimiter",
    "ClientSeqTracker",
    "ConfigChanges",
    "ConfigError",
    "ConfigProblem",
    "Daemon",
    "DaemonMetrics",
    "DaemonSettings",
    "HeapPolicy",
    "HostEvent",
    "LoadedSpec",
    "ManagedSession",
    "Notification",
    "QueueCore",
    "QueueShutDown",
    "RateLimitedTransport",
    "RateLimiter",
    "SignatureCheck",
    "SpecCatalog",
    "TokenBucket",
    "UnknownSession",
    "WebhookError",
    "WebhookOutcome",
    "WorkQueue",
    "build_client",
    "create_app",
    "parse_notification",
    "sign",
    "verify_signature",
]
