"""Serve a sync ``httpx.Client`` from an ASGI app in the same process.

``httpx.ASGITransport`` is async-only. ``SyncASGITransport`` runs the app on an
event loop in one background (daemon) thread behind an anyio blocking portal
and hands each request to ``httpx.ASGITransport`` there, as
``starlette.testclient`` does. Several threads may send at once; an exception
raised by the app reaches the caller as-is (e.g. the emulator's
``ConnectionAbortedError`` for a dropped connection). ``close()`` (or leaving
the ``with`` block) stops the loop; a later request starts a new one.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from types import TracebackType
from typing import Any

import anyio
import anyio.from_thread
import httpx

__all__ = ["SyncASGITransport"]


class SyncASGITransport(httpx.BaseTransport):
    """An ``httpx.BaseTransport`` that calls an ASGI app in-process (for sync clients)."""

    def __init__(
        self,
        app: Any,
        *,
        raise_app_exceptions: bool = True,
        root_path: str = "",
        client: tuple[str, int] = ("127.0.0.1", 123),
        backend: str = "asyncio",
    ) -> None:
        self.app = app
        self._inner = httpx.ASGITransport(
            app=app, raise_app_exceptions=raise_app_exceptions, root_path=root_path, client=client
        )
        self._backend = backend
        self._lock = threading.Lock()
        self._portal: anyio.from_thread.BlockingPortal | None = None
        self._stopper: weakref.finalize | None = None

    def __enter__(self) -> SyncASGITransport:
        self._running_portal()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> None:
        self.close()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()  # a sync stream cannot be read on the loop's thread
        portal = self._running_portal()
        status, headers, content, extensions = portal.call(
            self._send, request.method, request.url, request.headers.raw, body
        )
        return httpx.Response(status, headers=headers, content=content, extensions=extensions)

    async def _send(
        self, method: str, url: httpx.URL, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes, dict[str, Any]]:
        request = httpx.Request(method, url, headers=headers, content=body)
        response = await self._inner.handle_async_request(request)
        content = await response.aread()
        return response.status_code, response.headers.raw, content, dict(response.extensions)

    def close(self) -> None:
        """Stop the background loop (idempotent)."""
        with self._lock:
            stopper, self._stopper, self._portal = self._stopper, None, None
        if stopper is not None:
            stopper()

    def _running_portal(self) -> anyio.from_thread.BlockingPortal:
        with self._lock:
            if self._portal is None:
                portal, thread = _start_portal(self._backend)
                self._portal = portal
                # Stops the loop if the transport is dropped without close().
                self._stopper = weakref.finalize(self, _stop_portal, portal, thread)
            return self._portal


def _start_portal(backend: str) -> tuple[anyio.from_thread.BlockingPortal, threading.Thread]:
    started = threading.Event()
    found: dict[str, Any] = {}

    async def serve() -> None:
        async with anyio.from_thread.BlockingPortal() as portal:
            found["portal"] = portal
            started.set()
            await portal.sleep_until_stopped()

    def run() -> None:
        try:
            anyio.run(serve, backend=backend)
        except BaseException as exc:  # pragma: no cover - only if the loop cannot start
            found["error"] = exc
            started.set()

    # A daemon thread: a transport nobody closed must not keep the interpreter alive.
    thread = threading.Thread(target=run, name="SyncASGITransport", daemon=True)
    thread.start()
    started.wait()
    if "error" in found:  # pragma: no cover
        raise RuntimeError("SyncASGITransport: the event loop did not start") from found["error"]
    return found["portal"], thread


def _stop_portal(portal: anyio.from_thread.BlockingPortal, thread: threading.Thread) -> None:
    if thread.is_alive():
        with contextlib.suppress(RuntimeError):  # the loop already ended (interpreter exit)
            portal.call(portal.stop, False)
        if thread is not threading.current_thread():
            thread.join(timeout=5)
