"""The daemon's pictures: session previews and a small read-only dashboard.

========================================================  =========================================
``GET /``                                                 the dashboard page (static, holds no data)
``GET /dashboard/app.js``, ``/dashboard/app.css``         its script and style (served here, no CDN)
``GET /v1/sessions/{name}/preview.svg`` (``.png``)        the desired layout; ``?live=1`` the last
                                                          applied one (bearer token, like the API)
========================================================  =========================================

The page holds no session data: its script asks for ``/v1/sessions`` and the
previews with the bearer token, which the user types into a login form or
passes in the URL fragment (``/#token=...``, never sent to the server, removed
from the address bar at once). The token is kept in ``sessionStorage`` (gone
when the tab closes), never in a cookie, and never reaches a log. The script
polls every second and fetches a preview again only when what it shows
changed (the previews carry an ETag, so a repeat costs a 304).
"""

from __future__ import annotations

import functools
import hashlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from importlib import resources

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..canonical import canonical_hash
from ..preview import Picture, compile_for_preview, layout_picture
from .runtime import Daemon

__all__ = ["PreviewCache", "dashboard_routes"]

Handler = Callable[[Request], Awaitable[Response]]

#: The page may talk to this daemon only, run only its own script, show only blob: previews.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
STATIC_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@functools.cache
def _static(name: str) -> bytes:
    return resources.files(__package__).joinpath("dashboard_static", name).read_bytes()


class PreviewCache:
    """Rendered previews by what they show, so polling dashboards cost one render per change."""

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._items: OrderedDict[str, bytes] = OrderedDict()

    def get(self, key: str) -> bytes | None:
        found = self._items.get(key)
        if found is not None:
            self._items.move_to_end(key)
        return found

    def put(self, key: str, value: bytes) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self._size:
            self._items.popitem(last=False)


def session_picture(daemon: Daemon, name: str, *, live: bool) -> tuple[str, Callable[[], Picture]]:
    """(a key naming what the picture shows, a function drawing it) for a session's desired
    or live layout; the key is known before anything is drawn."""
    managed = daemon.get(name)
    session = managed.session
    spec = managed.spec
    canvas = (spec.canvas.width, spec.canvas.height, spec.canvas.color)
    template = "audio only" if spec.audio_only else spec.layout.template
    if live:
        status = session.status()
        body, inputs = session.applied if status.task_id else (None, None)
        hosts = tuple(inputs.hosts) if inputs is not None else ()
        speaker = inputs.speaker if inputs is not None else None
        sequence = "" if status.sequence_id is None else f", sequenceId {status.sequence_id}"
        title = f"{name} · live{sequence}" if body is not None else f"{name} · no live task"
        digest = canonical_hash(body) if body is not None else None
        key = f"live|{name}|{digest}|{speaker}|{hosts}|{title}|{spec.fingerprint}"

        def draw() -> Picture:
            return layout_picture(
                body,
                speaker=speaker,
                overflowed=hosts,
                template=template,
                title=title,
                canvas=canvas,
                max_width=640,
                note="no live task",
            )

    else:
        compiled = compile_for_preview(
            spec, session.hosts, session.speaker, session.slot_assignment
        )
        key = (
            f"desired|{name}|{compiled.body_hash}|{compiled.speaker}|{compiled.overflowed}|"
            f"{spec.fingerprint}"
        )

        def draw() -> Picture:
            return layout_picture(
                compiled,
                template=template,
                title=f"{name} · desired",
                canvas=canvas,
                max_width=640,
            )

    return hashlib.sha256(key.encode()).hexdigest()[:32], draw


def dashboard_routes(daemon: Daemon, endpoint: Callable[..., Handler]) -> list[Route]:
    """The routes above; ``endpoint`` wraps a handler with the app's bearer check and errors."""
    cache = PreviewCache()

    async def page(_: Request) -> Response:
        return Response(_static("index.html"), media_type="text/html", headers=STATIC_HEADERS)

    async def script(_: Request) -> Response:
        return Response(_static("app.js"), media_type="text/javascript", headers=STATIC_HEADERS)

    async def style(_: Request) -> Response:
        return Response(_static("app.css"), media_type="text/css", headers=STATIC_HEADERS)

    def preview(kind: str) -> Handler:
        media = "image/svg+xml" if kind == "svg" else "image/png"

        async def handler(request: Request) -> Response:
            name: str = request.path_params["name"]
            live = request.query_params.get("live", "") not in ("", "0", "false")
            key, draw = session_picture(daemon, name, live=live)
            etag = f'"{kind}-{key}"'
            headers = {
                "ETag": etag,
                "Cache-Control": "private, no-cache",
                "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
            }
            if request.headers.get("if-none-match") == etag:
                return Response(status_code=304, headers=headers)
            cached = cache.get(etag)
            if cached is None:
                if kind == "svg":
                    cached = draw().svg().encode("utf-8")
                else:
                    cached = await anyio.to_thread.run_sync(lambda: draw().png())
                cache.put(etag, cached)
            return Response(cached, media_type=media, headers=headers)

        return handler

    sessions = "/v1/sessions/{name}"
    return [
        Route("/", endpoint(page, auth=False), methods=["GET"]),
        Route("/dashboard/app.js", endpoint(script, auth=False), methods=["GET"]),
        Route("/dashboard/app.css", endpoint(style, auth=False), methods=["GET"]),
        Route(f"{sessions}/preview.svg", endpoint(preview("svg")), methods=["GET"]),
        Route(f"{sessions}/preview.png", endpoint(preview("png")), methods=["GET"]),
    ]
