"""One exception tree for everything layoutsync raises.

    LayoutsyncError
    ├── SpecError              the user's layout spec is wrong (field + reason)
    ├── ValidationError        a request body breaks the schema or a semantic rule
    ├── StateError             the state store cannot be read or written
    ├── InternalCompilerError  the compiler made a body the schema rejects (a layoutsync bug)
    ├── TransportError         the exchange with the service failed (no status)
    │   └── RequestTimeout     ... because it took longer than the timeout
    └── ApiError               the service answered with an error status
        ├── BadRequest             400
        ├── Unauthorized           401
        ├── Forbidden              403
        ├── TaskNotFound           404
        ├── InstanceConflict       409
        ├── RateLimited            429
        └── ServerError            5xx

Local errors (our input: Spec/Validation) are kept apart from remote ones
(ApiError), as h11 splits LocalProtocolError from RemoteProtocolError.
The server's ``message`` is kept for logs only: code branches on the class
(the status code), never on the text, as the vendor asks. No secret is ever
part of ``str(exc)``: callers build messages from redacted values only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "ApiError",
    "BadRequest",
    "FieldError",
    "Forbidden",
    "InstanceConflict",
    "InternalCompilerError",
    "LayoutsyncError",
    "RateLimited",
    "RequestTimeout",
    "ServerError",
    "SpecError",
    "StateError",
    "TaskNotFound",
    "TransportError",
    "Unauthorized",
    "ValidationError",
    "api_error_for_status",
]


class LayoutsyncError(Exception):
    """Base of every error layoutsync raises on purpose."""


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem at one place: ``pointer`` is a JSON pointer (or a spec field path)."""

    pointer: str
    message: str

    def __str__(self) -> str:
        return f"{self.pointer or '/'}: {self.message}"


class _FieldErrors(LayoutsyncError):
    """An error that lists every problem found, not just the first."""

    def __init__(self, errors: Iterable[FieldError], *, source: str | None = None) -> None:
        self.errors: tuple[FieldError, ...] = tuple(errors)
        self.source = source
        super().__init__(self._render())

    def _render(self) -> str:
        head = f"{self.source}: " if self.source else ""
        if len(self.errors) == 1:
            return f"{head}{self.errors[0]}"
        lines = "\n".join(f"  - {error}" for error in self.errors)
        return f"{head}{len(self.errors)} errors:\n{lines}"


class SpecError(_FieldErrors):
    """The layout spec (or the hosts given with it) cannot be compiled.

    ``SpecError("layout.gap", "must be >= 0")`` for one problem, or
    ``SpecError.from_errors([...])`` for several.
    """

    def __init__(
        self,
        field: str | Iterable[FieldError],
        reason: str | None = None,
        *,
        source: str | None = None,
    ) -> None:
        if isinstance(field, str):
            errors: Iterable[FieldError] = [FieldError(field, reason or "is invalid")]
        else:
            errors = field
        super().__init__(errors, source=source)

    @property
    def field(self) -> str:
        return self.errors[0].pointer if self.errors else ""


class ValidationError(_FieldErrors):
    """A request body the service would reject (schema or semantic rule)."""


class StateError(LayoutsyncError):
    """The state store failed; the previous state is left as it was."""


class InternalCompilerError(LayoutsyncError):
    """The compiler produced a body the schema rejects: a bug in layoutsync, not in the spec.

    Raised instead of sending the body, so such a bug never reaches the service.
    """


class TransportError(LayoutsyncError):
    """The request did not get a response (connection refused, reset, protocol error)."""

    def __init__(self, message: str, *, call: str) -> None:
        self.call = call
        super().__init__(f"{call}: {message}")


class RequestTimeout(TransportError):
    """No response within the client's timeout; the call may or may not have taken effect."""


class ApiError(LayoutsyncError):
    """The service answered with an error status.

    ``message`` is the server's text, for logs only. ``request_id`` is the
    ``X-Request-ID`` header when the server sent one (it may be absent on non-2xx).
    """

    status_code: int = 0

    def __init__(
        self,
        *,
        call: str,
        status_code: int,
        request_id: str | None = None,
        message: str = "",
        body: object = None,
    ) -> None:
        self.call = call
        self.status_code = status_code
        self.request_id = request_id
        self.message = message
        self.body = body
        rid = f" request_id={request_id}" if request_id else ""
        text = f": {message}" if message else ""
        super().__init__(f"{call} failed with {status_code} {type(self).__name__}{rid}{text}")


class BadRequest(ApiError):
    status_code = 400


class Unauthorized(ApiError):
    status_code = 401


class Forbidden(ApiError):
    status_code = 403


class TaskNotFound(ApiError):
    status_code = 404


class InstanceConflict(ApiError):
    status_code = 409


class RateLimited(ApiError):
    status_code = 429


class ServerError(ApiError):
    status_code = 500


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: TaskNotFound,
    409: InstanceConflict,
    429: RateLimited,
}


def api_error_for_status(status_code: int) -> type[ApiError]:
    """The exception class for a non-success status (the table is the policy)."""
    if status_code >= 500:
        return ServerError
    return _BY_STATUS.get(status_code, ApiError)
