"""Keep secrets out of logs, plans, errors and printed bodies.

Secrets are customer key/secret, rtcTokens, builderTokens and webhook secrets.
Every place that shows a value to a person goes through ``redact`` (for data)
or ``redact_processor`` (for structlog events).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["MASK", "SECRET_KEYS", "is_secret_key", "mask_query", "redact", "redact_processor"]

MASK = "***"

#: Keys whose values are secrets wherever they appear (compared case-insensitively).
SECRET_KEYS = frozenset(
    {
        "rtctoken",
        "buildertoken",
        "tokenname",
        "token",
        "customer_key",
        "customer_secret",
        "customerkey",
        "customersecret",
        "secret",
        "password",
        "authorization",
        "api_token",
        "ncs_secret",
        "webhook_secret",
    }
)


def is_secret_key(key: object) -> bool:
    if not isinstance(key, str):
        return False
    lowered = key.lower()
    return lowered in SECRET_KEYS or lowered.endswith(("token", "secret"))


def redact(value: Any) -> Any:
    """A copy of ``value`` with every secret-keyed value replaced by ``***``."""
    if isinstance(value, Mapping):
        return {
            key: (MASK if is_secret_key(key) and item is not None else redact(item))
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(redact(item) for item in value)
    return value


def mask_query(query: Mapping[str, str]) -> dict[str, str]:
    """Query parameters with secret values masked (for request logs)."""
    return {key: (MASK if is_secret_key(key) else val) for key, val in query.items()}


def redact_processor(_logger: object, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: runs before the renderer so no secret reaches a log line."""
    return redact(event_dict)
