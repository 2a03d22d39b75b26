"""Logging set-up. The library only calls ``get_logger``; the CLI and daemon call ``configure``.

Every event passes ``redact_processor`` before it is rendered, so secrets
never reach a log line: JSON for the daemon, key=value on a terminal.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

from .redact import redact_processor

__all__ = ["configure", "get_logger"]


def get_logger(**bound: Any) -> Any:
    """A structlog logger with ``bound`` context.

    Where the application configured structlog, its configuration is used. Where
    nobody did, a library must not print debug lines into someone else's program:
    the fallback logs info and above to stderr, redacted, as key=value.
    """
    if structlog.is_configured():
        return structlog.get_logger("layoutsync").bind(**bound)
    return structlog.wrap_logger(
        structlog.PrintLogger(sys.stderr),
        processors=_processors(_key_value()),
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
    ).bind(**bound)


def _key_value() -> Any:
    return structlog.processors.KeyValueRenderer(
        key_order=["timestamp", "level", "event"], drop_missing=True
    )


def _processors(renderer: Any) -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact_processor,
        renderer,
    ]


def configure(*, json: bool = False, level: str = "info", stream: TextIO | None = None) -> None:
    """Render as JSON lines (``json=True``, for the daemon) or key=value (terminals)."""
    out = stream or sys.stderr
    renderer = structlog.processors.JSONRenderer(sort_keys=True) if json else _key_value()
    structlog.configure(
        processors=_processors(renderer),
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
