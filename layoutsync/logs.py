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
    """A lazy structlog logger (reads ``configure`` on first use), with ``bound`` context."""
    return structlog.get_logger("layoutsync").bind(**bound)


def configure(*, json: bool = False, level: str = "info", stream: TextIO | None = None) -> None:
    """Render as JSON lines (``json=True``, for the daemon) or key=value (terminals)."""
    out = stream or sys.stderr
    renderer: Any
    if json:
        renderer = structlog.processors.JSONRenderer(sort_keys=True)
    else:
        renderer = structlog.processors.KeyValueRenderer(
            key_order=["timestamp", "level", "event"], drop_missing=True
        )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
