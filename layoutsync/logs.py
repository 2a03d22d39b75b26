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
    """A logger with ``bound`` context that follows structlog's configuration at each call.

    Where the application configured structlog (or a test captures logs), that
    configuration is used, even for loggers made before it. Where nobody did, a
    library must not print into someone else's program: events go, redacted, as
    key=value, to the standard ``logging`` logger ``"layoutsync"``, which has a
    ``NullHandler`` (Python's convention for libraries). They appear once the
    application configures ``logging`` (``logging.basicConfig(level="INFO")``).
    """
    return _LibraryLogger(bound)


class _LibraryLogger:
    """Resolved on every call, so a Client made before ``configure()`` still obeys it."""

    __slots__ = ("_bound",)

    def __init__(self, bound: dict[str, Any]) -> None:
        self._bound = bound

    def bind(self, **more: Any) -> _LibraryLogger:
        return _LibraryLogger({**self._bound, **more})

    def new(self, **values: Any) -> _LibraryLogger:
        return _LibraryLogger(values)

    def unbind(self, *keys: str) -> _LibraryLogger:
        return _LibraryLogger({k: v for k, v in self._bound.items() if k not in keys})

    def is_enabled_for(self, level: int) -> bool:
        """Whether an event at ``level`` would be kept (skip building dropped debug events)."""
        if not structlog.is_configured():
            return _STDLIB.isEnabledFor(level)
        enabled = getattr(self._resolve(), "is_enabled_for", None)
        return bool(enabled(level)) if callable(enabled) else True

    def __getattr__(self, method: str) -> Any:
        return getattr(self._resolve(), method)

    def _resolve(self) -> Any:
        return _base_logger().bind(**self._bound)


#: Where the library's events go while structlog is not configured: silent by default.
_STDLIB = logging.getLogger("layoutsync")
_STDLIB.addHandler(logging.NullHandler())


#: (the configuration it was built for, the logger): building one takes a logger factory
#: call and a wrapper per event, a tenth of a daemon's reconcile; binding one is cheap.
_BASE: tuple[tuple[Any, ...], Any] | None = None


def _base_logger() -> Any:
    """The unbound logger for the current structlog configuration, rebuilt when it changes."""
    global _BASE
    config = structlog.get_config()
    key = (
        structlog.is_configured(),
        config["processors"],
        config["wrapper_class"],
        config["logger_factory"],
        config["context_class"],
    )
    cached = _BASE
    if cached is not None and cached[0] == key:  # the same objects: == stops at identity
        return cached[1]
    # bind() resolves structlog's lazy proxy into the configured wrapper
    logger = structlog.get_logger("layoutsync").bind() if key[0] else _fallback()
    _BASE = (key, logger)
    return logger


def _fallback() -> Any:
    return structlog.wrap_logger(
        _STDLIB,
        processors=[structlog.stdlib.filter_by_level, *_processors(_key_value())],
        wrapper_class=structlog.stdlib.BoundLogger,
    )


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
