"""The Cloud Transcoder API: a sans-IO core and two thin clients over httpx.

- ``protocol``: build requests and interpret responses, no I/O (like h11).
- ``_retry``: the vendor's retry rules as a table and a state machine, no I/O.
- ``client``: ``Client`` (httpx.Client) and ``AsyncClient`` (httpx.AsyncClient)
  that only send, sleep and loop.
"""

from ._retry import RetryPolicy
from .client import AsyncClient, Client
from .models import (
    BUILDER_TOKEN_TTL,
    ENDED_STATUSES,
    Accepted,
    BuilderToken,
    Call,
    ResponseEvent,
    Task,
    Updated,
    WaitEvent,
)
from .protocol import (
    MalformedResponse,
    Request,
    build_acquire,
    build_create,
    build_delete,
    build_query,
    build_update,
    interpret,
)

__all__ = [
    "BUILDER_TOKEN_TTL",
    "ENDED_STATUSES",
    "Accepted",
    "AsyncClient",
    "BuilderToken",
    "Call",
    "Client",
    "MalformedResponse",
    "Request",
    "ResponseEvent",
    "RetryPolicy",
    "Task",
    "Updated",
    "WaitEvent",
    "build_acquire",
    "build_create",
    "build_delete",
    "build_query",
    "build_update",
    "interpret",
]
