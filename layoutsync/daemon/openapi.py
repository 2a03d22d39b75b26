"""The daemon's HTTP API as an OpenAPI 3.1 document, served at ``/openapi.json``.

Written by hand next to the routes (``app.py``) rather than generated, so every
answer and error is described as the handlers produce it; a test checks that
the document and the app's routes name the same (path, method) pairs, so a
route cannot be added without being documented.
"""

from __future__ import annotations

from typing import Any, Final

from ..validate import MAX_UID

__all__ = ["OPENAPI_PATH", "openapi_document"]

OPENAPI_PATH: Final = "/openapi.json"

_UID: Final = {"type": "integer", "minimum": 1, "maximum": MAX_UID}
_ERROR: Final = {
    "type": "object",
    "required": ["error", "status"],
    "properties": {
        "error": {"type": "string", "description": "what is wrong and what is allowed"},
        "status": {"type": "integer"},
    },
}


def _json(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    content = {"application/json": {"schema": schema or {"type": "object"}}}
    return {"description": description, "content": content}


def _errors(*statuses: int) -> dict[str, Any]:
    reasons = {
        400: "the body or a path parameter is invalid (nothing changed)",
        401: "missing or wrong bearer token, or a webhook signature that does not verify",
        404: "no session of that name (names are spec file stems)",
        413: "body larger than 1 MiB",
        500: "the daemon failed; see its log",
    }
    ref = {"$ref": "#/components/schemas/Error"}
    return {str(status): _json(reasons[status], ref) for status in statuses}


_NAME_PARAM: Final = {
    "name": "name",
    "in": "path",
    "required": True,
    "description": "session name: the stem of its spec file (specs/lobby.json -> lobby), "
    "the same name the CLI gives it",
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"},
}
_UID_PARAM: Final = {
    "name": "uid",
    "in": "path",
    "required": True,
    "description": "the host's RTC uid",
    "schema": _UID,
}
_ACCEPTED: Final = _json(
    "desired state changed and the session queued for a reconcile (after the debounce)",
    {
        "type": "object",
        "properties": {
            "session": {"type": "string"},
            "accepted": {"const": True},
            "uid": _UID,
            "change": {"enum": ["join", "leave"]},
            "hosts": {"type": "array", "items": _UID},
            "speaker": {"oneOf": [_UID, {"type": "null"}]},
        },
    },
)


def _op(
    summary: str,
    responses: dict[str, Any],
    *,
    auth: bool = True,
    params: tuple[dict[str, Any], ...] = (),
    body: dict[str, Any] | None = None,
    tag: str = "sessions",
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "tags": [tag], "responses": responses}
    if params:
        op["parameters"] = list(params)
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    op["security"] = [{"bearer": []}] if auth else []
    return op


def _desired(summary: str, key: str, schema: dict[str, Any]) -> dict[str, Any]:
    """A desired-state route whose body is one required key."""
    body = {
        "type": "object",
        "required": [key],
        "additionalProperties": False,
        "properties": {key: schema},
    }
    return _op(
        summary, {"202": _ACCEPTED, **_errors(400, 401, 404, 413)}, params=(_NAME_PARAM,), body=body
    )


def _static(summary: str, media: str) -> dict[str, Any]:
    return _op(
        summary,
        {"200": {"description": summary, "content": {media: {}}}},
        auth=False,
        tag="dashboard",
    )


def _count(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": {"type": "integer", "minimum": 0},
    }


def _preview(media: str) -> dict[str, Any]:
    live = {
        "name": "live",
        "in": "query",
        "required": False,
        "description": "1: the layout last applied to the live task instead of the desired one",
        "schema": {"type": "string", "enum": ["0", "1", "true", "false"]},
    }
    picture = {"description": "the picture (with an ETag)", "content": {media: {}}}
    unchanged = {"description": "If-None-Match named the picture's ETag: it has not changed"}
    return _op(
        "a picture of the session's layout: canvas, regions with uid, size and zOrder",
        {"200": picture, "304": unchanged, **_errors(401, 404)},
        params=(_NAME_PARAM, live),
        tag="dashboard",
    )


def openapi_document(version: str | None = None) -> dict[str, Any]:
    """The OpenAPI document of ``create_app``'s routes."""
    if version is None:
        from .. import __version__ as version
    session = (_NAME_PARAM,)
    host = (_NAME_PARAM, _UID_PARAM)
    result = {
        "type": "object",
        "properties": {
            "session": {"type": "string"},
            "action": {"enum": ["noop", "create", "update", "replace", "delete"]},
            "taskId": {"type": ["string", "null"]},
            "sequenceId": {"type": ["integer", "null"]},
            "calls": {"type": "array", "items": {"type": "string"}},
            "plan": {"type": ["string", "null"]},
            "error": {"type": ["string", "null"]},
            "requeueAfter": {"type": ["number", "null"]},
            "lastError": {"type": ["string", "null"]},
        },
    }
    paths: dict[str, Any] = {
        "/healthz": {
            "get": _op("liveness: the process serves", {"200": _json("ok")}, auth=False, tag="ops")
        },
        "/readyz": {
            "get": _op(
                "readiness: state store and spec catalog checked",
                {
                    "200": _json("ready, with each check"),
                    "503": _json("not ready, with each check"),
                },
                auth=False,
                tag="ops",
            )
        },
        "/metrics": {
            "get": _op(
                "Prometheus metrics (text exposition format)",
                {"200": {"description": "metrics", "content": {"text/plain": {}}}},
                auth=False,
                tag="ops",
            )
        },
        OPENAPI_PATH: {
            "get": _op("this document", {"200": _json("OpenAPI 3.1")}, auth=False, tag="ops")
        },
        "/v1/sessions": {
            "get": _op(
                "every session's status (in name order; a page with offset and limit), "
                "their total, and spec files that failed to load",
                {"200": _json("sessions, total and configErrors"), **_errors(400, 401)},
                params=(
                    _count("offset", "sessions to skip (default 0)"),
                    _count("limit", "sessions to list at most (default: all)"),
                ),
            )
        },
        "/v1/sessions/{name}": {
            "get": _op(
                "one session: desired hosts and speaker, visible/overflowed hosts, task, "
                "sequenceId, last plan and result, pending work (secrets redacted)",
                {"200": _json("the session"), **_errors(401, 404)},
                params=session,
            )
        },
        "/v1/sessions/{name}/hosts/{uid}": {
            "put": _op(
                "a host joined",
                {"202": _ACCEPTED, **_errors(400, 401, 404)},
                params=host,
            ),
            "delete": _op("a host left", {"202": _ACCEPTED, **_errors(400, 401, 404)}, params=host),
        },
        "/v1/sessions/{name}/hosts": {
            "put": _desired(
                "the full set of hosts present (known hosts keep their join order)",
                "hosts",
                {"type": "array", "items": _UID, "uniqueItems": True},
            )
        },
        "/v1/sessions/{name}/speaker": {
            "put": _desired(
                "the active speaker, or null for none", "uid", {"oneOf": [_UID, {"type": "null"}]}
            )
        },
        "/v1/sessions/{name}/reconcile": {
            "post": _op(
                "reconcile now and answer with the result",
                {"200": _json("the reconcile's result", result), **_errors(401, 404, 500)},
                params=session,
            )
        },
        "/": {"get": _static("the dashboard page (static: it holds no session data)", "text/html")},
        "/dashboard/app.js": {"get": _static("the dashboard's script", "text/javascript")},
        "/dashboard/app.css": {"get": _static("the dashboard's style", "text/css")},
        "/v1/sessions/{name}/preview.svg": {"get": _preview("image/svg+xml")},
        "/v1/sessions/{name}/preview.png": {"get": _preview("image/png")},
        "/v1/webhooks/agora": {
            "post": _op(
                "Agora NCS events, signed with Agora-Signature-V2 (HMAC-SHA256) or "
                "Agora-Signature (HMAC-SHA1) of the raw body. Handled (productId 1): 103/104 "
                "broadcaster joined/left, 107/108 user joined/left, 111/112 role changed to "
                "broadcaster/audience; ordered by clientSeq per (channel, uid). Other events "
                "are answered 200 with 'ignored'.",
                {
                    "200": _json(
                        "received",
                        {
                            "type": "object",
                            "properties": {
                                "ok": {"const": True},
                                "eventType": {"type": "integer"},
                                "sessions": {"type": "array", "items": {"type": "string"}},
                                "ignored": {"type": "string"},
                            },
                        },
                    ),
                    **_errors(400, 401, 413),
                },
                auth=False,
                body={"type": "object", "description": "an NCS notification"},
                tag="webhooks",
            )
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "layoutsync daemon",
            "version": version,
            "description": "Desired hosts and speaker per session in; the daemon keeps each "
            "session's Cloud Transcoder task equal to them. /v1 routes but the webhook need "
            "Authorization: Bearer $LAYOUTSYNC_API_TOKEN. Every request gets an "
            "X-Request-ID (the caller's, or a new one) echoed in the answer.",
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "paths": paths,
        "components": {
            "schemas": {"Error": _ERROR},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
