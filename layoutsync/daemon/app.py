"""The daemon's HTTP face: a Starlette app over a ``Daemon``.

Routes (JSON in and out):

========================================  ==================================================
``GET  /healthz``, ``/readyz``, ``/metrics``  open (probes and Prometheus)
``PUT|DELETE /v1/sessions/{name}/hosts/{uid}`` join / leave -> 202
``PUT  /v1/sessions/{name}/hosts``            ``{"hosts": [uid, ...]}`` -> 202
``PUT  /v1/sessions/{name}/speaker``          ``{"uid": uid | null}`` -> 202
``GET  /v1/sessions``, ``/v1/sessions/{name}`` status
``POST /v1/sessions/{name}/reconcile``        reconcile now, answer with the result
``POST /v1/webhooks/agora``                   NCS events, signed (no bearer token)
``GET  /``, ``.../{name}/preview.svg``        dashboard and pictures (``dashboard.py``)
``GET  /openapi.json``                        this API as OpenAPI 3.1 (``openapi.py``), open
========================================  ==================================================

Every ``/v1`` route but the webhook needs ``Authorization: Bearer <token>``
(compared in constant time). Desired-state routes only change desired
state and queue the session, so they answer at once; the webhook verifies
the signature over the raw body before parsing it, and answers 200 with a
JSON body well within NCS's 10 s. A request that is rejected (400, 401,
404, 413) changes nothing.
"""

from __future__ import annotations

import contextlib
import hmac
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import orjson
import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..apply import ReconcileResult
from ..errors import LayoutsyncError, StateError
from ..logs import get_logger
from ..redact import redact
from ..validate import MAX_UID
from .dashboard import dashboard_routes
from .metrics import CONTENT_TYPE
from .openapi import OPENAPI_PATH, openapi_document
from .runtime import Daemon, UnknownSession, check_uid
from .webhooks import SignatureCheck, WebhookError, parse_notification, verify_signature

__all__ = ["MAX_BODY_BYTES", "create_app"]

#: Larger bodies are refused (413) before they are read in full: an NCS event
#: is a few hundred bytes and a host list of thousands of uids is a few dozen KiB.
MAX_BODY_BYTES = 1 << 20

Handler = Callable[[Request], Awaitable[Response]]


class ApiProblem(Exception):
    """A request the API refuses; rendered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


def _log() -> Any:
    # Looked up per use, so a ``configure`` after ``create_app`` still applies.
    return get_logger(component="http")


def _json(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS),
        status_code=status,
        media_type="application/json",
        headers=dict(headers or {}),
    )


def _problem(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    return _json({"error": message, "status": status}, status, headers)


#: request ids need to be unique, not unpredictable: no system call per request
_IDS = random.Random()


class RequestContext:
    """Pure ASGI middleware: a request id per request, bound to every log line it causes.

    The id is the caller's ``X-Request-ID`` when it sends a sane one, else a
    new one; it is echoed in the response either way.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = ""
        for key, value in scope.get("headers", ()):
            if key == b"x-request-id":
                candidate = value.decode("latin-1")
                if 0 < len(candidate) <= 128 and candidate.isprintable():
                    request_id = candidate
                break
        request_id = request_id or f"{_IDS.getrandbits(128):032x}"

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            await self.app(scope, receive, send_with_id)


async def _body(request: Request) -> bytes:
    """The raw body, refused with 413 past ``MAX_BODY_BYTES`` (read in chunks, never more)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise ApiProblem(413, f"body larger than {MAX_BODY_BYTES} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ApiProblem(413, f"body larger than {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _json_object(request: Request) -> dict[str, Any]:
    raw = await _body(request)
    if not raw.strip():
        raise ApiProblem(400, "body: expected a JSON object, got an empty body")
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiProblem(400, f"body: malformed JSON ({exc})") from None
    if not isinstance(document, dict):
        raise ApiProblem(400, f"body: expected a JSON object, got {type(document).__name__}")
    return document


def _uid(value: object, where: str, *, text: bool = False) -> int:
    try:
        return check_uid(value, where, text=text)
    except ValueError as exc:
        raise ApiProblem(400, str(exc)) from None


def _count_param(request: Request, name: str, default: int) -> int:
    """A non-negative integer query parameter, or a 400 that names it."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 9:
        raise ApiProblem(400, f"{name}: {raw!r} is not a count; give an integer from 0")
    return int(raw)


def _session_json(daemon: Daemon, name: str, *, detailed: bool) -> dict[str, Any]:
    """A session's status: desired state, what is live, what is owed. Secrets redacted."""
    managed = daemon.get(name)
    status = managed.session.status()
    config_error = daemon.config_error(name)
    out: dict[str, Any] = {
        "name": name,
        "instanceId": status.instance_id,
        "inputChannel": managed.spec.input_channel,
        "onEmpty": managed.spec.on_empty,
        "specFile": str(managed.path),
        "hosts": list(status.hosts),
        "speaker": status.speaker,
        "visible": list(status.visible),
        "overflowed": list(status.overflowed),
        "taskId": status.task_id,
        "sequenceId": status.sequence_id,
        "lastAction": status.last_action,
        "lastPlan": status.last_plan,
        "lastError": managed.last_error or status.last_error,
        "configError": str(config_error) if config_error is not None else None,
        "pending": {"changes": status.pending, **daemon.pending(name)},
    }
    if status.token_expiry is not None:
        out["tokensExpireAt"] = dict(status.token_expiry)  # minted tokens (spec ``tokens``)
    if detailed:
        out["reconciles"] = managed.reconciles
        out["lastResult"] = _result_json(managed.last_result, status.last_plan)
    return redact(out)


def _result_json(result: ReconcileResult | None, plan: str | None) -> dict[str, Any] | None:
    """A reconcile's result; ``plan`` is its summary (results are kept without their plan)."""
    if result is None:
        return None
    return redact(
        {
            "action": result.action,
            "taskId": result.task_id,
            "sequenceId": result.sequence_id,
            "calls": list(result.calls),
            "plan": plan,
            "error": str(result.error) if result.error is not None else None,
            "requeueAfter": result.requeue_after,
        }
    )


def create_app(
    daemon: Daemon,
    *,
    api_token: str,
    ncs_secret: str,
    manage_lifecycle: bool = True,
) -> Starlette:
    """The daemon's ASGI app. With ``manage_lifecycle`` the lifespan starts and drains it."""
    if not api_token:
        raise ValueError("api_token is empty")
    if not ncs_secret:
        raise ValueError("ncs_secret is empty")
    expected_auth = f"Bearer {api_token}".encode()
    secret = ncs_secret.encode("utf-8")

    def endpoint(handler: Handler, *, auth: bool = True) -> Handler:
        """Bearer check (unless ``auth`` is off), and every failure as a JSON error."""

        async def guarded(request: Request) -> Response:
            try:
                if auth:
                    given = request.headers.get("authorization", "").encode("latin-1", "replace")
                    if not hmac.compare_digest(given, expected_auth):
                        reason = "missing" if not given else "wrong"
                        _log().info("unauthorized", path=request.url.path, reason=reason)
                        raise ApiProblem(
                            401,
                            f"{reason} bearer token (Authorization: Bearer <LAYOUTSYNC_API_TOKEN>)",
                            {"WWW-Authenticate": 'Bearer realm="layoutsync"'},
                        )
                return await handler(request)
            except ApiProblem as exc:
                return _problem(exc.status, exc.message, exc.headers)
            except UnknownSession as exc:
                return _problem(404, str(exc))
            except LayoutsyncError as exc:
                _log().warning("request failed", path=request.url.path, error=str(exc))
                return _problem(500, str(exc))
            except Exception:
                _log().exception("request crashed", path=request.url.path)
                return _problem(500, "internal error; see the daemon log")

        return guarded

    def session_name(request: Request) -> str:
        name: str = request.path_params["name"]
        try:
            daemon.get(name)
        except UnknownSession as exc:
            raise ApiProblem(404, str(exc)) from None
        return name

    async def healthz(_: Request) -> Response:
        return _json({"status": "ok"})

    async def readyz(_: Request) -> Response:
        ok, checks = await daemon.aready()
        return _json({"ready": ok, "checks": dict(checks)}, 200 if ok else 503)

    async def openapi(_: Request) -> Response:
        return _json(openapi_document())

    async def metrics(_: Request) -> Response:
        return Response(daemon.metrics.render(), media_type=CONTENT_TYPE)

    async def list_sessions(request: Request) -> Response:
        # Each entry costs tens of microseconds on the loop: with thousands of sessions a
        # page (the dashboard asks for one) keeps a poll from stalling every reconcile.
        names = daemon.names()
        offset = _count_param(request, "offset", 0)
        limit = _count_param(request, "limit", len(names))
        return _json(
            {
                "sessions": [
                    _session_json(daemon, name, detailed=False)
                    for name in names[offset : offset + limit]
                ],
                "total": len(names),
                "configErrors": {
                    name: str(error) for name, error in sorted(daemon.catalog.errors.items())
                },
            }
        )

    async def show_session(request: Request) -> Response:
        name = session_name(request)
        return _json(_session_json(daemon, name, detailed=True))

    async def durable() -> None:
        """Acknowledge nothing the store does not hold (group commit; 503 when it cannot)."""
        try:
            await daemon.commit_inputs()
        except LayoutsyncError as exc:
            raise not_saved(exc) from None

    def not_saved(exc: LayoutsyncError) -> ApiProblem:
        _log().error("desired inputs not saved; not acknowledged", error=str(exc))
        return ApiProblem(
            503,
            f"the change is not saved, so it is not acknowledged ({exc}); send it again",
            {"Retry-After": "1"},
        )

    def accepted(name: str, **fields: Any) -> Response:
        return _json({"session": name, "accepted": True, **fields}, 202)

    async def put_host(request: Request) -> Response:
        name = session_name(request)
        uid = _uid(request.path_params["uid"], "uid", text=True)
        _not_own_output(daemon, name, uid)
        daemon.host_joined(name, uid)
        await durable()
        return accepted(name, uid=uid, change="join")

    async def delete_host(request: Request) -> Response:
        name = session_name(request)
        uid = _uid(request.path_params["uid"], "uid", text=True)
        daemon.host_left(name, uid)
        await durable()
        return accepted(name, uid=uid, change="leave")

    async def put_hosts(request: Request) -> Response:
        name = session_name(request)
        document = await _json_object(request)
        hosts = document.get("hosts")
        if not isinstance(hosts, list):
            raise ApiProblem(400, f"hosts: required, a JSON array of uids (1..{MAX_UID})")
        uids = [_uid(value, f"hosts[{index}]") for index, value in enumerate(hosts)]
        seen: set[int] = set()
        for index, uid in enumerate(uids):
            if uid in seen:
                raise ApiProblem(400, f"hosts[{index}]: uid {uid} is listed twice")
            seen.add(uid)
            _not_own_output(daemon, name, uid, f"hosts[{index}]")
        _no_other_keys(document, {"hosts"})
        daemon.set_hosts(name, uids)
        await durable()
        return accepted(name, hosts=uids)

    async def put_speaker(request: Request) -> Response:
        name = session_name(request)
        document = await _json_object(request)
        if "uid" not in document:
            raise ApiProblem(400, 'uid: required (a uid, or null to clear), e.g. {"uid": 101}')
        _no_other_keys(document, {"uid"})
        raw = document["uid"]
        uid = None if raw is None else _uid(raw, "uid")
        daemon.set_speaker(name, uid)
        await durable()
        return accepted(name, speaker=uid)

    async def reconcile(request: Request) -> Response:
        name = session_name(request)
        managed = daemon.get(name)
        result = await daemon.reconcile_now(name)
        summary = managed.session.status().last_plan
        body = {
            "session": name,
            **(_result_json(result, summary) or {}),
            "lastError": managed.last_error,
        }
        return _json(body, 200)

    async def webhook(request: Request) -> Response:
        raw = await _body(request)
        check = verify_signature(secret, raw, request.headers)
        if check is not SignatureCheck.VALID:
            daemon.metrics.events_ignored.labels(f"signature {check.value}").inc()
            _log().warning("webhook signature rejected", reason=check.value)
            raise ApiProblem(
                401,
                f"signature {check.value}: Agora-Signature-V2 (HMAC-SHA256) or Agora-Signature "
                "(HMAC-SHA1) of the raw body with the NCS secret is required",
            )
        try:
            notification = parse_notification(raw)
        except WebhookError as exc:
            raise ApiProblem(400, str(exc)) from None
        try:
            outcome = await daemon.notify(notification)
        except StateError as exc:
            raise not_saved(exc) from None
        await durable()  # also for an ignored one: an earlier batch may still be on its way
        _log().debug(
            "webhook",
            eventType=notification.event_type,
            noticeId=notification.notice_id,
            channel=notification.channel,
            sessions=list(outcome.applied),
            ignored=outcome.ignored,
        )
        return _json(outcome.as_dict())

    async def http_problem(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return _problem(exc.status_code, str(exc.detail), exc.headers)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        if manage_lifecycle:
            await daemon.start()
        try:
            yield
        finally:
            if manage_lifecycle:
                await daemon.aclose()

    sessions = "/v1/sessions/{name}"
    routes = [
        Route("/healthz", endpoint(healthz, auth=False), methods=["GET"]),
        Route("/readyz", endpoint(readyz, auth=False), methods=["GET"]),
        Route("/metrics", endpoint(metrics, auth=False), methods=["GET"]),
        Route("/v1/sessions", endpoint(list_sessions), methods=["GET"]),
        Route(sessions, endpoint(show_session), methods=["GET"]),
        Route(f"{sessions}/hosts/{{uid}}", endpoint(put_host), methods=["PUT"]),
        Route(f"{sessions}/hosts/{{uid}}", endpoint(delete_host), methods=["DELETE"]),
        Route(f"{sessions}/hosts", endpoint(put_hosts), methods=["PUT"]),
        Route(f"{sessions}/speaker", endpoint(put_speaker), methods=["PUT"]),
        Route(f"{sessions}/reconcile", endpoint(reconcile), methods=["POST"]),
        Route("/v1/webhooks/agora", endpoint(webhook, auth=False), methods=["POST"]),
        Route(OPENAPI_PATH, endpoint(openapi, auth=False), methods=["GET"]),
    ]
    routes += dashboard_routes(daemon, endpoint)
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(RequestContext)],
        exception_handlers={HTTPException: http_problem},
    )
    app.state.daemon = daemon
    return app


def _not_own_output(daemon: Daemon, name: str, uid: int, where: str = "uid") -> None:
    managed = daemon.get(name)
    if managed.is_own_output(managed.input_channel, uid):
        raise ApiProblem(
            400,
            f"{where}: {uid} is the transcoder's own output uid in channel "
            f"{managed.input_channel!r}, not a host",
        )


def _no_other_keys(document: Mapping[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(document) - allowed)
    if extra:
        raise ApiProblem(
            400, f"body: unknown key(s) {', '.join(map(repr, extra))}; allowed: {sorted(allowed)}"
        )
