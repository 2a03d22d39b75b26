"""The emulator as a Starlette app: the five service calls, strict, plus an admin API.

Service routes live under ``/v1/projects/{appId}/rtsc/cloud-transcoder``. Each is
a small ASGI endpoint that runs, in order: Basic auth (401) and app id (403),
the per-app rate limit (429), the fault plan, then the call itself
(``Emulator`` in ``state.py``), and logs the exchange with tokens masked.
Every response, errors and admin routes included, carries ``X-Request-ID``.

Admin routes live under ``/_emulator/`` (no auth, no faults, no rate limit);
see ``ADMIN_ROUTES`` below for the list. A dropped connection is made by
sending the response head and raising ``ConnectionAbortedError``: uvicorn then
closes the socket (the client sees the body cut short), and
``httpx.ASGITransport`` re-raises the error to an in-process client.

Two faults need to know whether a real socket is there. Behind a server that
puts its transport in the scope state under ``SERVER_TRANSPORT_KEY`` (the
``layoutsync emulator`` command does), "disconnect" closes that socket before
any byte of the response, and "late" holds the answer for its delay and then
applies the call (the client has timed out by then). In-process there is no
socket and no client timeout, so the app raises what httpx raises for them:
``httpx.RemoteProtocolError`` ("Server disconnected without sending a
response") for "disconnect", and ``httpx.ReadTimeout`` at once for "late",
whose call is then applied in the background after the delay.
"""

from __future__ import annotations

import asyncio
import math
import random
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NoReturn

import httpx
import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..validate import MAX_UID, is_host_uid
from .faults import FaultAction, FaultError, rule_from_json
from .state import Emulator, EmulatorConfig, Reply

__all__ = [
    "API_PREFIX",
    "REQUEST_ID_KEY",
    "SERVER_TRANSPORT_KEY",
    "InjectedDisconnect",
    "InjectedDrop",
    "InjectedTimeout",
    "create_app",
]

API_PREFIX = "/v1/projects/{app_id}/rtsc/cloud-transcoder"

#: Where the request id of the current exchange is kept in the ASGI scope.
REQUEST_ID_KEY = "layoutsync.request_id"

_JSON = b"application/json"


#: Where a server puts its ``asyncio.Transport`` in ``scope["state"]`` (see the docstring).
SERVER_TRANSPORT_KEY = "layoutsync.server_transport"


class InjectedDrop(ConnectionAbortedError):
    """Raised inside the app to drop the connection (an injected fault), never a bug."""


class InjectedDisconnect(httpx.RemoteProtocolError):
    """No byte of a response (an injected fault): what httpx raises when the server hangs up."""


class InjectedTimeout(httpx.ReadTimeout):
    """No answer before the client's timeout (an injected fault, in-process)."""


class _Reject(Exception):
    """A request the web layer refuses before the core sees it (bad Content-Type, bad JSON)."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.body.get("message", ""))
        self.reply = reply


def _message(status: int, text: str, note: str = "") -> Reply:
    return Reply(status, {"message": text}, note)


# --- request id --------------------------------------------------------------------------------


class RequestIdMiddleware:
    """Give every HTTP exchange a uuid and put it in the ``X-Request-ID`` response header."""

    __slots__ = ("app",)

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _new_request_id()
        scope[REQUEST_ID_KEY] = request_id
        header = (b"x-request-id", request_id.encode("ascii"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", ()) if h[0].lower() != header[0]]
                headers.append(header)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_id)


#: request ids need to be unique, not unpredictable: no system call per request
_IDS = random.Random()


def _new_request_id() -> str:
    return str(uuid.UUID(int=_IDS.getrandbits(128), version=4))


def _request_id(scope: Scope) -> str:
    found = scope.get(REQUEST_ID_KEY)
    if found is None:
        found = scope[REQUEST_ID_KEY] = _new_request_id()
    return str(found)


# --- responses -----------------------------------------------------------------------------------


def _json_response(
    status: int, body: Any, scope: Scope, headers: tuple[tuple[str, str], ...] = ()
) -> Response:
    response = Response(orjson.dumps(body), status_code=status, media_type="application/json")
    response.headers["X-Request-ID"] = _request_id(scope)
    for name, value in headers:
        response.headers[name] = value
    return response


def _server_transport(scope: Scope) -> asyncio.Transport | None:
    state = scope.get("state")
    found = state.get(SERVER_TRANSPORT_KEY) if isinstance(state, Mapping) else None
    return found if isinstance(found, asyncio.Transport) else None


async def _send_reply(send: Send, reply: Reply) -> None:
    # A body of None is an empty body (a successful Update: "包体为空").
    payload = b"" if reply.body is None else orjson.dumps(reply.body)
    headers = [(b"content-length", str(len(payload)).encode())]
    if reply.body is not None:
        headers.insert(0, (b"content-type", _JSON))
    headers.extend((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers)
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


async def _drop_connection(send: Send) -> NoReturn:
    # Announce a body that never comes, then fail: servers close the socket mid-response.
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", _JSON), (b"content-length", b"4096")],
        }
    )
    raise InjectedDrop("injected fault: connection dropped")


# --- the five calls ------------------------------------------------------------------------------


async def _json_body(request: Request) -> Any:
    content_type = request.headers.get("content-type")
    media = content_type.partition(";")[0].strip().lower() if content_type else ""
    if media != "application/json":
        shown = repr(content_type) if content_type else "missing"
        raise _Reject(
            _message(400, f"Content-Type: is {shown}; it must be application/json", "invalid")
        )
    raw = await request.body()
    if not raw.strip():
        raise _Reject(_message(400, "the request body is empty; expected a JSON object", "invalid"))
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _Reject(_message(400, f"the request body is not JSON: {exc}", "invalid")) from None


Handler = Callable[[Emulator, Request, str], Awaitable[Reply]]


async def _acquire(emulator: Emulator, request: Request, app_id: str) -> Reply:
    return emulator.acquire(app_id, await _json_body(request))


async def _create(emulator: Emulator, request: Request, app_id: str) -> Reply:
    token = request.query_params.get("builderToken")
    return emulator.create(app_id, token, await _json_body(request))


async def _query(emulator: Emulator, request: Request, app_id: str) -> Reply:
    params = request.query_params
    return emulator.query(app_id, request.path_params["task_id"], params.get("builderToken"))


async def _update(emulator: Emulator, request: Request, app_id: str) -> Reply:
    params = request.query_params
    return emulator.update(
        app_id,
        request.path_params["task_id"],
        params.get("builderToken"),
        params.get("sequenceId"),
        params.get("updateMask"),
        await _json_body(request),
    )


async def _delete(emulator: Emulator, request: Request, app_id: str) -> Reply:
    params = request.query_params
    return emulator.delete(app_id, request.path_params["task_id"], params.get("builderToken"))


class _Call:
    """One service call as an ASGI endpoint: auth, rate limit, fault, handler, log."""

    __slots__ = ("emulator", "handler", "kind", "late_calls")

    def __init__(
        self, emulator: Emulator, kind: str, handler: Handler, late_calls: set[asyncio.Task[None]]
    ) -> None:
        self.emulator = emulator
        self.kind = kind
        self.handler = handler
        self.late_calls = late_calls

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        emulator = self.emulator
        request = Request(scope, receive)
        app_id: str = scope["path_params"]["app_id"]
        fault: FaultAction | None = None
        reply = emulator.authorize(app_id, request.headers.get("authorization"))
        if reply is None:
            reply = emulator.admit(app_id)
        if reply is None:
            fault = emulator.take_fault(self.kind)
            if fault is None:
                reply = await self._handle(request, app_id)
            else:
                reply = await self._faulty(request, app_id, fault, send)
        self._record(request, reply.status, reply.note, fault)
        await _send_reply(send, reply)

    async def _handle(self, request: Request, app_id: str) -> Reply:
        try:
            return await self.handler(self.emulator, request, app_id)
        except _Reject as rejected:
            return rejected.reply

    async def _faulty(self, request: Request, app_id: str, fault: FaultAction, send: Send) -> Reply:
        if fault.late:
            return await self._late(request, app_id, fault)
        if fault.delay:
            await self.emulator.sleep(fault.delay)
        if fault.drop and not fault.commit:
            await self._drop(request, fault, send)
        if not fault.commit:
            if fault.status is None:  # a pure delay: answer normally once it is over
                return await self._handle(request, app_id)
            headers = (("Retry-After", "1"),) if fault.status == 429 else ()
            text = f"injected fault: {fault.status} (nothing was applied)"
            return Reply(fault.status, {"message": text}, "fault", headers)
        reply = await self._handle(request, app_id)
        if not 200 <= reply.status < 300:
            return reply  # nothing was committed, so there is nothing to fail after
        if fault.drop:
            dropped = "disconnected" if fault.before_response else "dropped"
            await self._drop(request, fault, send, note=f"{reply.note or 'ok'}+{dropped}")
        if fault.status == 202:
            return Reply(202, reply.body, f"{reply.note or 'ok'}+202")
        text = f"injected fault: {fault.status} after the call was applied"
        return Reply(fault.status or 500, {"message": text}, f"{reply.note or 'ok'}+fault")

    async def _drop(
        self, request: Request, fault: FaultAction, send: Send, note: str = ""
    ) -> NoReturn:
        before = fault.before_response
        self._record(request, None, note or ("disconnected" if before else "dropped"), fault)
        if not before:
            await _drop_connection(send)
        transport = _server_transport(request.scope)
        if transport is None:
            raise InjectedDisconnect("Server disconnected without sending a response.")
        transport.close()  # nothing was written: the client reads EOF where the answer was
        raise InjectedDrop("injected fault: connection closed before the response")

    async def _late(self, request: Request, app_id: str, fault: FaultAction) -> Reply:
        await request.body()  # read now: the client may be gone when the call is applied
        if _server_transport(request.scope) is not None:
            # A real socket: hold the answer past the client's timeout, then apply the call.
            await self.emulator.sleep(fault.delay)
            reply = await self._handle(request, app_id)
            return Reply(reply.status, reply.body, f"{reply.note or 'ok'}+late", reply.headers)

        async def apply_later() -> None:
            await self.emulator.sleep(fault.delay)
            reply = await self._handle(request, app_id)
            self._record(request, reply.status, f"{reply.note or 'ok'}+late", fault)

        task = asyncio.get_running_loop().create_task(apply_later())
        self.late_calls.add(task)
        task.add_done_callback(self.late_calls.discard)
        raise InjectedTimeout("injected fault: no answer before the client's timeout")

    def _record(
        self, request: Request, status: int | None, note: str, fault: FaultAction | None
    ) -> None:
        scope = request.scope
        self.emulator.record(
            request_id=_request_id(scope),
            method=scope["method"],
            path=scope["path"],
            query=request.query_params,
            status=status,
            kind=self.kind,
            note=note,
            fault=None if fault is None else fault.name,
        )


def _service_routes(emulator: Emulator, late_calls: set[asyncio.Task[None]]) -> list[Route]:
    tasks = f"{API_PREFIX}/tasks"
    task = f"{tasks}/{{task_id}}"

    def call(kind: str, handler: Handler) -> _Call:
        return _Call(emulator, kind, handler, late_calls)

    return [
        Route(f"{API_PREFIX}/builderTokens", call("acquire", _acquire), methods=["POST"]),
        Route(tasks, call("create", _create), methods=["POST"]),
        Route(task, call("query", _query), methods=["GET"]),
        Route(task, call("update", _update), methods=["PATCH"]),
        Route(task, call("delete", _delete), methods=["DELETE"]),
    ]


# --- admin API -----------------------------------------------------------------------------------


class _Admin:
    """``/_emulator/...``: inspect and steer the emulator (no auth: it binds loopback)."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator

    def _ok(self, request: Request, body: Any, status: int = 200) -> Response:
        return _json_response(status, body, request.scope)

    def _bad(self, request: Request, text: str) -> Response:
        return _json_response(400, {"message": text}, request.scope)

    async def _object(self, request: Request) -> Any:
        raw = await request.body()
        if not raw.strip():
            return {}
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise _Reject(_message(400, f"the request body is not JSON: {exc}")) from None

    async def index(self, request: Request) -> Response:
        """The admin routes, so the link the banner prints answers with a map."""
        routes = [
            {"path": route.path, "methods": sorted((route.methods or set()) - {"HEAD"})}
            for route in self.routes()
        ]
        return self._ok(request, {"emulator": "layoutsync", "admin": routes})

    async def health(self, request: Request) -> Response:
        return self._ok(request, {"ok": True, "now": self.emulator.now()})

    async def tasks(self, request: Request) -> Response:
        return self._ok(request, {"tasks": self.emulator.tasks()})

    async def task(self, request: Request) -> Response:
        found = self.emulator.task(request.path_params["task_id"])
        if found is None:
            return _json_response(404, {"message": "no such live task"}, request.scope)
        return self._ok(request, found)

    async def requests(self, request: Request) -> Response:
        kind = request.query_params.get("kind")
        return self._ok(request, {"requests": self.emulator.requests(kind)})

    async def clear_requests(self, request: Request) -> Response:
        self.emulator.clear_requests()
        return self._ok(request, {"requests": []})

    async def events(self, request: Request) -> Response:
        return self._ok(request, {"events": self.emulator.events()})

    async def stats(self, request: Request) -> Response:
        return self._ok(request, {"calls": self.emulator.stats()})

    async def faults(self, request: Request) -> Response:
        return self._ok(request, self.emulator.faults.describe())

    async def add_faults(self, request: Request) -> Response:
        body = await self._object(request)
        items = body if isinstance(body, list) else [body]
        emulator = self.emulator
        try:
            parsed = []
            for item in items:
                if not isinstance(item, Mapping):
                    return self._bad(request, "expected a fault object or a list of them")
                parsed.append(rule_from_json(item, default_delay=emulator.config.fault_delay))
        except FaultError as exc:
            return self._bad(request, str(exc))
        for fault in parsed:
            emulator.install_fault(fault)
        return self._ok(request, emulator.faults.describe())

    async def clear_faults(self, request: Request) -> Response:
        self.emulator.clear_faults()
        return self._ok(request, self.emulator.faults.describe())

    async def clock(self, request: Request) -> Response:
        emulator = self.emulator
        if request.method == "POST":
            body = await self._object(request)
            if not isinstance(body, Mapping) or len(body.keys() & {"advance", "set"}) != 1:
                return self._bad(request, 'expected {"advance": seconds} or {"set": unix_time}')
            key = "advance" if "advance" in body else "set"
            value = body[key]
            if isinstance(value, bool) or not isinstance(value, int | float):
                return self._bad(request, f"{key}: expected a number, got {value!r}")
            if not math.isfinite(value):
                return self._bad(request, f"{key}: expected a finite number")
            try:
                if key == "advance":
                    emulator.advance_clock(float(value))
                else:
                    emulator.set_clock(float(value))
            except ValueError as exc:
                return self._bad(request, str(exc))
        return self._ok(request, {"now": emulator.now()})

    async def channel(self, request: Request) -> Response:
        channel = request.path_params["channel"]
        hosts = self.emulator.presence(channel)
        shown = {
            str(uid): {"present": left is None, "absentSince": left} for uid, left in hosts.items()
        }
        return self._ok(request, {"channel": channel, "hosts": shown})

    async def host(self, request: Request) -> Response:
        channel = request.path_params["channel"]
        uid = request.path_params["uid"]
        if not is_host_uid(uid):
            return self._bad(request, f"uid: {uid} is not a host uid (1..{MAX_UID})")
        self.emulator.set_present(channel, uid, request.method == "PUT")
        return await self.channel(request)

    async def hosts(self, request: Request) -> Response:
        body = await self._object(request)
        if not isinstance(body, Mapping) or set(body) - {"present", "absent"}:
            return self._bad(request, 'expected {"present": [uid, ...], "absent": [uid, ...]}')
        changes: list[tuple[int, bool]] = []
        for key in ("present", "absent"):
            uids = body.get(key, [])
            if not isinstance(uids, list) or not all(is_host_uid(u) for u in uids):
                return self._bad(request, f"{key}: expected a list of host uids (1..{MAX_UID})")
            changes.extend((uid, key == "present") for uid in uids)
        channel = request.path_params["channel"]
        for uid, present in changes:
            self.emulator.set_present(channel, uid, present)
        return await self.channel(request)

    async def config(self, request: Request) -> Response:
        emulator = self.emulator
        if request.method == "PATCH":
            body = await self._object(request)
            allowed = {"retriedCreate": "retried_create", "echoConfig": "echo_config", "qps": "qps"}
            if not isinstance(body, Mapping) or set(body) - allowed.keys():
                return self._bad(request, f"expected an object with {', '.join(allowed)}")
            try:
                emulator.configure(**{allowed[key]: value for key, value in body.items()})
            except (TypeError, ValueError) as exc:
                return self._bad(request, str(exc))
        config = emulator.config
        return self._ok(
            request,
            {
                "appIds": list(config.app_ids),
                "disabledAppIds": list(config.disabled_app_ids),
                "customerKey": config.customer_key,
                "retriedCreate": config.retried_create,
                "echoConfig": config.echo_config,
                "qps": config.qps,
                "builderTokenTtl": config.builder_token_ttl,
                "faultDelay": config.fault_delay,
            },
        )

    async def reset(self, request: Request) -> Response:
        self.emulator.reset()
        return self._ok(request, {"reset": True})

    def routes(self) -> list[Route]:
        def route(
            path: str, endpoint: Callable[[Request], Awaitable[Response]], *methods: str
        ) -> Route:
            return Route(f"/_emulator{path}", _rejecting(endpoint), methods=list(methods))

        return [
            route("/", self.index, "GET"),
            route("/health", self.health, "GET"),
            route("/tasks", self.tasks, "GET"),
            route("/tasks/{task_id}", self.task, "GET"),
            route("/requests", self.requests, "GET"),
            route("/requests", self.clear_requests, "DELETE"),
            route("/events", self.events, "GET"),
            route("/stats", self.stats, "GET"),
            route("/faults", self.faults, "GET"),
            route("/faults", self.add_faults, "POST"),
            route("/faults", self.clear_faults, "DELETE"),
            route("/clock", self.clock, "GET", "POST"),
            route("/channels/{channel}", self.channel, "GET"),
            route("/channels/{channel}/hosts", self.hosts, "POST"),
            route("/channels/{channel}/hosts/{uid:int}", self.host, "PUT", "DELETE"),
            route("/config", self.config, "GET", "PATCH"),
            route("/reset", self.reset, "POST"),
        ]


def _rejecting(
    endpoint: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    async def run(request: Request) -> Response:
        try:
            return await endpoint(request)
        except _Reject as rejected:
            return _json_response(rejected.reply.status, rejected.reply.body, request.scope)

    return run


# --- the application -----------------------------------------------------------------------------


def _http_error_handler(emulator: Emulator) -> Callable[[Request, Exception], Awaitable[Response]]:
    async def handle(request: Request, exc: Exception) -> Response:
        if isinstance(exc, InjectedDrop | InjectedDisconnect | InjectedTimeout):
            # Already logged; the head is sent, or the socket is closed, or nobody waits.
            return Response(status_code=500)
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        if status == 404:
            text = f"no route {request.url.path}"
        elif status == 405:
            text = f"method {request.method} is not allowed on {request.url.path}"
        else:
            text = "internal error" if status == 500 else str(getattr(exc, "detail", exc))
        path = request.url.path
        if not path.startswith("/_emulator/"):
            emulator.record(
                request_id=_request_id(request.scope),
                method=request.method,
                path=path,
                query=request.query_params,
                status=status,
                kind=None,
                note="no-route" if status in (404, 405) else "error",
            )
        headers = getattr(exc, "headers", None) or {}
        return _json_response(status, {"message": text}, request.scope, tuple(headers.items()))

    return handle


ADMIN_ROUTES = (
    "GET /_emulator/health",
    "GET /_emulator/tasks, GET /_emulator/tasks/{taskId}",
    "GET|DELETE /_emulator/requests[?kind=update]",
    "GET /_emulator/events, GET /_emulator/stats",
    "GET|POST|DELETE /_emulator/faults",
    "GET|POST /_emulator/clock",
    "GET /_emulator/channels/{channel}, PUT|DELETE /_emulator/channels/{channel}/hosts/{uid}, "
    "POST /_emulator/channels/{channel}/hosts",
    "GET|PATCH /_emulator/config",
    "POST /_emulator/reset",
)


def create_app(
    config: EmulatorConfig | None = None, *, emulator: Emulator | None = None
) -> Starlette:
    """The emulator app; its core is ``app.state.emulator``. Pass ``emulator`` to inject a
    clock or sleep (``Emulator(config, clock=ManualClock())``). ``app.state.late_calls`` holds
    the in-process "late" calls still waiting to be applied."""
    if emulator is None:
        emulator = Emulator(config)
    elif config is not None:
        raise ValueError("pass either config or emulator, not both")
    handler = _http_error_handler(emulator)
    late_calls: set[asyncio.Task[None]] = set()
    app = Starlette(
        routes=[*_service_routes(emulator, late_calls), *_Admin(emulator).routes()],
        middleware=[Middleware(RequestIdMiddleware)],
        exception_handlers={HTTPException: handler, Exception: handler},
    )
    app.state.emulator = emulator
    app.state.late_calls = late_calls
    return app
