"""The Cloud Transcoder API without I/O: build requests, interpret responses.

Like h11, this module never touches a socket. ``build_*`` return a frozen
``Request`` (method, path, query, headers, body bytes) that any HTTP library
can send; ``interpret`` turns what came back (status, headers, body bytes) into
a result value or raises the ``ApiError`` subclass for the status. The retry
policy that sits on top (``layoutsync.api._retry``) is sans-IO as well, so
``Client`` and ``AsyncClient`` only send, sleep and loop.

Branching is on the status code only, never on the server's ``message``
(vendor's rule); the message is kept on the exception for logs. No secret
(builderToken, rtcToken) is ever part of a ``repr`` or of ``str(exc)``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, TypeGuard
from urllib.parse import quote, urlencode

import orjson

from ..errors import ApiError, FieldError, TransportError, ValidationError, api_error_for_status
from ..redact import MASK, is_secret_key, mask_query, redact
from .models import Accepted, BuilderToken, Call, Result, Task, Updated

__all__ = [
    "UPDATE_MASK",
    "MalformedResponse",
    "Request",
    "build_acquire",
    "build_create",
    "build_delete",
    "build_query",
    "build_update",
    "conflicting_task_id",
    "interpret",
    "parse",
    "request_id_of",
]

#: The one ``updateMask`` the vendor documents for Update.
UPDATE_MASK: Final = "services.cloudTranscoder.config"

_INSTANCE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_HEADERS: Final = (("Content-Type", "application/json"),)
_MESSAGE_LIMIT = 500


class MalformedResponse(TransportError):
    """A 2xx whose body is not what the call returns (e.g. a task object without ``taskId``).

    A ``TransportError``, as httpx files ``RemoteProtocolError``: the exchange
    did not produce a usable answer, and the call may or may not have taken effect.
    """


@dataclass(frozen=True, slots=True, repr=False)
class Request:
    """One HTTP request to send: ``path`` is relative to the base URL.

    ``content`` is the JSON body already serialised, so a retry re-sends the
    very same bytes. ``app_id``, ``task_id`` and ``builder_token`` repeat what
    is in the path and query so the retry policy can build the Query that
    confirms a call. ``repr`` masks the builderToken and omits the body.
    """

    call: Call
    method: str
    path: str
    query: tuple[tuple[str, str], ...] = ()
    headers: tuple[tuple[str, str], ...] = _HEADERS
    content: bytes = b""
    app_id: str = ""
    task_id: str | None = None
    builder_token: str | None = None

    def masked_query(self) -> dict[str, str]:
        """The query with secret values (builderToken) replaced by ``***``, for logs."""
        return mask_query(dict(self.query))

    def json(self) -> Any:
        """The body decoded (None when there is none). It holds secrets: not for logs."""
        return orjson.loads(self.content) if self.content else None

    @property
    def target(self) -> str:
        """Path and query string as sent (contains the builderToken: not for logs)."""
        return f"{self.path}?{urlencode(self.query)}" if self.query else self.path

    def __repr__(self) -> str:
        query = urlencode(tuple(self.masked_query().items()), safe="*")
        target = f"{self.path}?{query}" if query else self.path
        return f"Request({self.call.value}, {self.method} {target}, {len(self.content)} bytes)"


# --- building ---------------------------------------------------------------


def _base(app_id: str) -> str:
    return _base_path(_require("appId", app_id))


@functools.lru_cache(maxsize=64)
def _base_path(app_id: str) -> str:
    return f"/v1/projects/{quote(app_id, safe='')}/rtsc/cloud-transcoder"


@functools.lru_cache(maxsize=1024)
def _segment(value: str) -> str:
    """One path segment, percent-encoded (task ids are hex: the cache makes it a lookup)."""
    return quote(value, safe="")


def _require(name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValidationError([FieldError(name, "must be a non-empty string")])
    return value


def _task_path(app_id: str, task_id: str) -> str:
    return f"{_base(app_id)}/tasks/{_segment(_require('taskId', task_id))}"


def _json(body: object) -> bytes:
    if not isinstance(body, Mapping):
        raise ValidationError(
            [FieldError("", f"the body must be a JSON object, not {type(body).__name__}")]
        )
    try:
        return orjson.dumps(body)
    except TypeError as exc:  # orjson.JSONEncodeError; its text names the type, never a value
        raise ValidationError(
            [FieldError("", f"the body is not JSON-serialisable: {exc}")]
        ) from None


def build_acquire(app_id: str, instance_id: str) -> Request:
    """Acquire: ``POST .../builderTokens`` with ``{"instanceId": ...}``.

    The instanceId is checked here (at most 64 of ``[A-Za-z0-9_-]``) so a bad
    one fails before any request is sent.
    """
    if not isinstance(instance_id, str) or not _INSTANCE_ID.fullmatch(instance_id):
        raise ValidationError(
            [
                FieldError(
                    "/instanceId",
                    f"{instance_id!r} is not allowed: use 1 to 64 characters of A-Z, a-z, 0-9, "
                    "'-' and '_'",
                )
            ]
        )
    return Request(
        Call.ACQUIRE,
        "POST",
        f"{_base(app_id)}/builderTokens",
        content=orjson.dumps({"instanceId": instance_id}),
        app_id=app_id,
    )


def build_create(app_id: str, builder_token: str, body: Mapping[str, Any]) -> Request:
    """Create: ``POST .../tasks?builderToken=`` with the full request body."""
    token = _require("builderToken", builder_token)
    return Request(
        Call.CREATE,
        "POST",
        f"{_base(app_id)}/tasks",
        query=(("builderToken", token),),
        content=_json(body),
        app_id=app_id,
        builder_token=token,
    )


def build_query(app_id: str, task_id: str, builder_token: str) -> Request:
    """Query: ``GET .../tasks/{taskId}?builderToken=``."""
    token = _require("builderToken", builder_token)
    return Request(
        Call.QUERY,
        "GET",
        _task_path(app_id, task_id),
        query=(("builderToken", token),),
        app_id=app_id,
        task_id=task_id,
        builder_token=token,
    )


def build_update(
    app_id: str, task_id: str, builder_token: str, sequence_id: int, body: Mapping[str, Any]
) -> Request:
    """Update: ``PATCH .../tasks/{taskId}?builderToken=&sequenceId=&updateMask=`` (full config).

    ``sequence_id`` must be an int >= 0, strictly above the task's previous
    Update (the caller keeps the count; the service ignores one not above the last).
    """
    token = _require("builderToken", builder_token)
    if type(sequence_id) is not int or sequence_id < 0:
        raise ValidationError(
            [FieldError("sequenceId", f"{sequence_id!r} is not allowed: use an integer >= 0")]
        )
    return Request(
        Call.UPDATE,
        "PATCH",
        _task_path(app_id, task_id),
        query=(
            ("builderToken", token),
            ("sequenceId", str(sequence_id)),
            ("updateMask", UPDATE_MASK),
        ),
        content=_json(body),
        app_id=app_id,
        task_id=task_id,
        builder_token=token,
    )


def build_delete(app_id: str, task_id: str, builder_token: str) -> Request:
    """Delete: ``DELETE .../tasks/{taskId}?builderToken=``."""
    token = _require("builderToken", builder_token)
    return Request(
        Call.DELETE,
        "DELETE",
        _task_path(app_id, task_id),
        query=(("builderToken", token),),
        app_id=app_id,
        task_id=task_id,
        builder_token=token,
    )


# --- interpreting -------------------------------------------------------------


def request_id_of(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> str | None:
    """The ``X-Request-ID`` header (any case), or None: it may be absent on non-2xx."""
    if isinstance(headers, Mapping):
        value = headers.get("X-Request-ID") or headers.get("x-request-id")
        if value is not None:
            return value or None
        items: Iterable[tuple[str, str]] = headers.items()
    else:
        items = headers
    for key, val in items:
        if key.lower() == "x-request-id":
            return val or None
    return None


def interpret(
    call: Call,
    status_code: int,
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
    content: bytes,
    *,
    request: Request | None = None,
) -> Result:
    """The result of ``call`` given the response, or raise the error it means.

    - 202 → ``Accepted`` (received, not finished: poll Query), except an Acquire 202
      that carries a builderToken, which is that token;
    - other 2xx → ``BuilderToken`` (Acquire), ``Task`` (Create, Query, Delete;
      201 on Create, "task already running", is the task too), ``Updated``;
    - anything else → the ``ApiError`` subclass for the status
      (``api_error_for_status``) with call, status, request id and message;
    - a 2xx body that is not what the call returns → ``MalformedResponse``.

    Pass the ``request`` to have its secrets scrubbed from an echoed message.
    """
    value = parse(call, status_code, headers, content, request=request)
    if isinstance(value, Exception):
        raise value
    return value


def parse(
    call: Call,
    status_code: int,
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
    content: bytes,
    *,
    request: Request | None = None,
) -> Result | ApiError | MalformedResponse:
    """Like ``interpret`` but returns the exception instead of raising it (for the retry core)."""
    request_id = request_id_of(headers)
    if 200 <= status_code < 300:
        if status_code == 202:
            body = _loads(content)
            if call is Call.ACQUIRE:
                # Nothing to poll for a token: one that came with the 202 is the result.
                token = _builder_token(body, request_id)
                if isinstance(token, BuilderToken):
                    return token
            task_id = body.get("taskId") if isinstance(body, dict) else None
            return Accepted(call, request_id, task_id if isinstance(task_id, str) else None)
        if call is Call.UPDATE:
            return Updated(request_id)
        body = _loads(content)
        if call is Call.ACQUIRE:
            return _builder_token(body, request_id)
        return _task(call, body, request_id)
    return _error(call, status_code, request_id, content, request)


def _loads(content: bytes) -> Any:
    if not content:
        return None
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return None


def _builder_token(body: Any, request_id: str | None) -> BuilderToken | MalformedResponse:
    if isinstance(body, dict):
        token = body.get("tokenName")
        created = body.get("createTs")
        instance = body.get("instanceId")
        if (
            isinstance(token, str)
            and token
            and _is_number(created)
            and isinstance(instance, str | int)
            and not isinstance(instance, bool)
        ):
            return BuilderToken(token, float(created), str(instance), request_id)
    return MalformedResponse(
        "the response is not a builderToken (tokenName, createTs, instanceId)",
        call=Call.ACQUIRE,
    )


def _task(call: Call, body: Any, request_id: str | None) -> Task | MalformedResponse:
    if isinstance(body, dict):
        task_id = body.get("taskId")
        status = body.get("status")
        if isinstance(task_id, str) and task_id and isinstance(status, str):
            services = body.get("services")
            service = services.get("cloudTranscoder") if isinstance(services, dict) else None
            service_status = service.get("status") if isinstance(service, dict) else None
            created = body.get("createTs")
            return Task(
                task_id=task_id,
                status=status,
                sequence_id=_sequence_id(body.get("sequenceId")),
                created_at=float(created) if _is_number(created) else None,
                service_status=service_status if isinstance(service_status, str) else None,
                request_id=request_id,
                raw=MappingProxyType(body),
            )
    return MalformedResponse("the response is not a task object (taskId, status)", call=call)


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _sequence_id(value: object) -> int | None:
    """``sequenceId`` is documented as a string ("0"); accept an int too."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _error(
    call: Call, status_code: int, request_id: str | None, content: bytes, request: Request | None
) -> ApiError:
    body = _loads(content)
    if isinstance(body, dict):
        message = body.get("message")
        message = message if isinstance(message, str) else ""
        shown: object = redact(body)
    else:
        # Not the documented {"message": ...}: e.g. a gateway's HTML page.
        message = content[:_MESSAGE_LIMIT].decode("utf-8", "replace").strip()
        shown = None
    message = _scrub(message[:_MESSAGE_LIMIT], request)
    return api_error_for_status(status_code)(
        call=call, status_code=status_code, request_id=request_id, message=message, body=shown
    )


def _scrub(message: str, request: Request | None) -> str:
    """Mask secrets the request carried if the server echoed them in its message."""
    if not message or request is None:
        return message
    secrets = [value for key, value in request.query if is_secret_key(key) and value]
    if request.content and b"oken" in request.content:
        secrets.extend(_secret_values(_loads(request.content)))
    for secret in sorted(set(secrets), key=len, reverse=True):
        if len(secret) >= 4:
            message = message.replace(secret, MASK)
    return message


def _secret_values(value: Any) -> Iterable[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if is_secret_key(key) and isinstance(item, str):
                yield item
            else:
                yield from _secret_values(item)
    elif isinstance(value, list):
        for item in value:
            yield from _secret_values(item)


def conflicting_task_id(error: ApiError) -> str | None:
    """The ``taskId`` a 409 body names, when the service sends one."""
    body = error.body
    if isinstance(body, Mapping):
        task_id = body.get("taskId")
        if isinstance(task_id, str) and task_id and task_id != MASK:
            return task_id
    return None
