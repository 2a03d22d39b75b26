"""``Client`` and ``AsyncClient``: the sans-IO core, sent over httpx.

As httpx's own ``Client``/``AsyncClient`` share ``BaseClient``, these twins
share ``_BaseClient`` (configuration, request building, logging) and differ
only in how they send and sleep. Requests, results and the retry rules all
come from the sans-IO core (``protocol`` and ``_retry``); a client only loops:
wait ``Send.delay``, send, feed the answer back, until ``Done`` or an error.

Configuration comes from the constructor, else the environment
(``LAYOUTSYNC_BASE_URL``, ``LAYOUTSYNC_APP_ID``, ``LAYOUTSYNC_CUSTOMER_KEY``,
``LAYOUTSYNC_CUSTOMER_SECRET``); it is checked when the client is made, so
a missing credential fails before any request. Each client owns one httpx
connection pool: make one per process (or per event loop) and close it.
"""

from __future__ import annotations

import base64
import functools
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, cast

import anyio
import httpx

from ..errors import LayoutsyncError, RequestTimeout, TransportError
from ..logs import get_logger
from ..redact import MASK
from ._retry import DEFAULT_POLICY, Done, RetryMachine, RetryPolicy, Send
from .models import Accepted, BuilderToken, ResponseEvent, Result, Task, Updated, WaitEvent
from .protocol import (
    Request,
    build_acquire,
    build_create,
    build_delete,
    build_query,
    build_update,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "ENV_APP_ID",
    "ENV_BASE_URL",
    "ENV_CUSTOMER_KEY",
    "ENV_CUSTOMER_SECRET",
    "AsyncClient",
    "Client",
    "RetryPolicy",
]

DEFAULT_BASE_URL: Final = "https://api.sd-rtn.com"
ENV_BASE_URL: Final = "LAYOUTSYNC_BASE_URL"
ENV_APP_ID: Final = "LAYOUTSYNC_APP_ID"
ENV_CUSTOMER_KEY: Final = "LAYOUTSYNC_CUSTOMER_KEY"
ENV_CUSTOMER_SECRET: Final = "LAYOUTSYNC_CUSTOMER_SECRET"

_USER_AGENT: Final = "layoutsync"

#: Called with every HTTP exchange (checks and retries included), e.g. to count calls by status.
ResponseHook = Callable[[ResponseEvent], None]

#: Called as each back-off begins (before the sleep), e.g. to tell a user why nothing happens.
WaitHook = Callable[[WaitEvent], None]


def _setting(value: str | None, env: str, what: str, argument: str) -> str:
    if value is None:
        value = os.environ.get(env)
    if not value:
        # Named in the CLI's terms (the variable); a library caller passes ``argument`` instead.
        raise LayoutsyncError(f"no {what}: set {env} in the environment")
    return value


def _base_url(value: str | None) -> httpx.URL:
    raw = value if value is not None else os.environ.get(ENV_BASE_URL) or DEFAULT_BASE_URL
    try:
        url = httpx.URL(raw)
    except httpx.InvalidURL:
        url = None
    if url is None or url.scheme not in ("http", "https") or not url.host:
        raise LayoutsyncError(
            f"base URL {raw!r} (from base_url= or {ENV_BASE_URL}) is not an http:// or "
            "https:// URL with a host"
        )
    return url


class _IgnoredCookies(httpx.Cookies):
    """A jar that keeps nothing: the API sets no cookies."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class _Cookieless:
    """Mixin for the httpx clients below: no cookie jar.

    httpx looks for cookies in every response by wrapping it, and its
    request, in urllib objects (a URL parse each); the API sets none.
    """

    @property
    def cookies(self) -> httpx.Cookies:
        return _NO_COOKIES


_NO_COOKIES = _IgnoredCookies()


class _HttpClient(_Cookieless, httpx.Client):  # type: ignore[override]
    pass


class _AsyncHttpClient(_Cookieless, httpx.AsyncClient):  # type: ignore[override]
    pass


def _token(builder_token: str | BuilderToken) -> str:
    return builder_token.token if isinstance(builder_token, BuilderToken) else builder_token


class _BaseClient:
    """What both clients share: configuration, building requests, observing answers."""

    def __init__(
        self,
        *,
        base_url: str | None,
        app_id: str | None,
        customer_key: str | None,
        customer_secret: str | None,
        timeout: float | httpx.Timeout,
        retry: RetryPolicy | None,
        on_response: ResponseHook | None,
        on_wait: WaitHook | None = None,
    ) -> None:
        self.base_url = _base_url(base_url)
        self.app_id = _setting(app_id, ENV_APP_ID, "app id", "app_id")
        key = _setting(customer_key, ENV_CUSTOMER_KEY, "customer key", "customer_key")
        secret = _setting(
            customer_secret, ENV_CUSTOMER_SECRET, "customer secret", "customer_secret"
        )
        self.retry = retry if retry is not None else DEFAULT_POLICY
        self.timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self._on_response = on_response
        self._on_wait = on_wait
        self._log = get_logger(component="api", app_id=self.app_id)
        self._closed = False
        # The base URL and the Request's encoded target make an absolute URL: httpx then
        # neither merges it with its base_url nor encodes params (a third of a call's cost).
        self._url_prefix = str(self.base_url).rstrip("/")
        # Parsing a URL is most of httpx's cost per request; Query/Delete URLs repeat.
        self._url = functools.lru_cache(maxsize=256)(self._absolute_url)
        credentials = base64.b64encode(f"{key}:{secret}".encode()).decode("ascii")
        # httpx masks the Authorization header in its reprs; it is never logged here.
        self._default_headers = {"Authorization": f"Basic {credentials}", "User-Agent": _USER_AGENT}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={str(self.base_url)!r}, app_id={self.app_id!r})"

    # -- requests (sans-IO) -----------------------------------------------------

    def _update_request(
        self,
        task_id: str,
        builder_token: str | BuilderToken,
        sequence_id: int,
        body: Mapping[str, Any],
    ) -> Request:
        return build_update(self.app_id, task_id, _token(builder_token), sequence_id, body)

    def _absolute_url(self, target: str) -> httpx.URL:
        return httpx.URL(self._url_prefix + target)

    def _check_open(self) -> None:
        if self._closed:
            raise LayoutsyncError(f"this {type(self).__name__} is closed; make a new one")

    # -- observing ----------------------------------------------------------------

    def _observe(
        self,
        step: Send,
        status_code: int | None,
        request_id: str | None,
        elapsed: float,
        error: TransportError | None = None,
    ) -> None:
        """Log one exchange at debug level (query masked) and pass it to ``on_response``."""
        request = step.request
        error_name = type(error).__name__ if error is not None else None
        if self._log.is_enabled_for(logging.DEBUG):
            self._log.debug(
                "api.response",
                call=request.call.value,
                method=request.method,
                path=request.path,
                query=request.masked_query(),
                status=status_code,
                request_id=request_id,
                phase=step.phase.value,
                attempt=step.attempt,
                elapsed_ms=round(elapsed * 1000.0, 3),
                error=error_name,
            )
        if self._on_response is not None:
            self._on_response(
                ResponseEvent(
                    call=request.call,
                    method=request.method,
                    path=request.path,
                    status_code=status_code,
                    request_id=request_id,
                    elapsed=elapsed,
                    attempt=step.attempt,
                    phase=step.phase.value,
                    error=error_name,
                )
            )

    def _log_backoff(self, step: Send) -> None:
        self._log.info(
            "api.backoff",
            call=step.request.call.value,
            phase=step.phase.value,
            attempt=step.attempt,
            delay_s=round(step.delay, 3),
        )
        if self._on_wait is not None and step.wait is not None:
            self._on_wait(step.wait)

    @staticmethod
    def _transport_error(exc: BaseException, request: Request) -> TransportError:
        """Map an httpx/OS error to ours, without any secret the request carried."""
        text = str(exc) or type(exc).__name__
        if request.builder_token:
            text = text.replace(request.builder_token, MASK)
        message = f"no response ({type(exc).__name__}: {text})"
        if isinstance(exc, httpx.TimeoutException):
            error: TransportError = RequestTimeout(message, call=request.call.value)
        else:
            error = TransportError(message, call=request.call.value)
        error.__cause__ = exc
        return error


_TRANSPORT_ERRORS = (httpx.TransportError, OSError)


class Client(_BaseClient):
    """Blocking client over ``httpx.Client`` (one connection pool).

    Every method retries as ``RetryPolicy`` and the vendor ask (see
    ``layoutsync.api._retry``), waits with ``sleep``, and raises the
    ``ApiError`` subclass of the final answer, ``RequestTimeout`` or
    ``TransportError``.
    """

    def __init__(
        self,
        *,
        base_url: str | None = None,
        app_id: str | None = None,
        customer_key: str | None = None,
        customer_secret: str | None = None,
        timeout: float | httpx.Timeout = 10.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], object] = time.sleep,
        on_response: ResponseHook | None = None,
        on_wait: WaitHook | None = None,
    ) -> None:
        super().__init__(
            base_url=base_url,
            app_id=app_id,
            customer_key=customer_key,
            customer_secret=customer_secret,
            timeout=timeout,
            retry=retry,
            on_response=on_response,
            on_wait=on_wait,
        )
        self._sleep = sleep
        self._http = _HttpClient(
            base_url=self.base_url,
            headers=self._default_headers,
            timeout=self.timeout,
            transport=transport,
        )

    # -- the five calls -----------------------------------------------------------

    def acquire(self, instance_id: str) -> BuilderToken:
        """Acquire a builderToken for ``instance_id`` (use it for a Create within 5 minutes)."""
        return cast(BuilderToken, self._call(build_acquire(self.app_id, instance_id)))

    def create(self, builder_token: str | BuilderToken, body: Mapping[str, Any]) -> Task | Accepted:
        """Create the task; a retry reuses the token, so one token never makes two tasks."""
        request = build_create(self.app_id, _token(builder_token), body)
        return cast(Task | Accepted, self._call(request))

    def query(
        self, task_id: str, builder_token: str | BuilderToken, *, confirm_missing: bool = True
    ) -> Task | Accepted:
        """Query the task; a 404 raises ``TaskNotFound`` once confirmed (``confirm_missing``)."""
        request = build_query(self.app_id, task_id, _token(builder_token))
        return cast(Task | Accepted, self._call(request, confirm_missing))

    def update(
        self,
        task_id: str,
        builder_token: str | BuilderToken,
        sequence_id: int,
        body: Mapping[str, Any],
        *,
        confirm_missing: bool = True,
    ) -> Updated | Accepted:
        """Update with the full body; a retry re-sends the same sequenceId and body."""
        request = self._update_request(task_id, builder_token, sequence_id, body)
        return cast(Updated | Accepted, self._call(request, confirm_missing))

    def delete(
        self, task_id: str, builder_token: str | BuilderToken, *, confirm_missing: bool = True
    ) -> Task | Accepted:
        """Delete the task. ``TaskNotFound`` means it is gone (perhaps by this very call)."""
        request = build_delete(self.app_id, task_id, _token(builder_token))
        return cast(Task | Accepted, self._call(request, confirm_missing))

    # -- plumbing -------------------------------------------------------------------

    def _call(self, request: Request, confirm_missing: bool = True) -> Result:
        self._check_open()
        machine = RetryMachine(request, self.retry, confirm_missing=confirm_missing)
        step = machine.start()
        http = self._http
        while True:
            if step.delay:
                self._log_backoff(step)
                self._sleep(step.delay)
            sent = step.request
            started = time.perf_counter()
            try:
                response = http.request(
                    sent.method,
                    self._url(sent.target),
                    content=sent.content or None,
                    headers=sent.headers,
                )
            except _TRANSPORT_ERRORS as exc:
                error = self._transport_error(exc, sent)
                self._observe(step, None, None, time.perf_counter() - started, error)
                following = machine.receive_error(error)
            else:
                headers = response.headers
                self._observe(
                    step,
                    response.status_code,
                    headers.get("x-request-id"),
                    time.perf_counter() - started,
                )
                following = machine.receive_response(
                    response.status_code, headers, response.content
                )
            if type(following) is Done:
                return following.result
            step = cast(Send, following)

    def close(self) -> None:
        """Close the connection pool (idempotent)."""
        self._closed = True
        self._url.cache_clear()
        self._http.close()

    def __enter__(self) -> Client:
        self._check_open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncClient(_BaseClient):
    """``Client`` for asyncio/trio over ``httpx.AsyncClient``: the same methods, awaited."""

    def __init__(
        self,
        *,
        base_url: str | None = None,
        app_id: str | None = None,
        customer_key: str | None = None,
        customer_secret: str | None = None,
        timeout: float | httpx.Timeout = 10.0,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[object]] = anyio.sleep,
        on_response: ResponseHook | None = None,
        on_wait: WaitHook | None = None,
    ) -> None:
        super().__init__(
            base_url=base_url,
            app_id=app_id,
            customer_key=customer_key,
            customer_secret=customer_secret,
            timeout=timeout,
            retry=retry,
            on_response=on_response,
            on_wait=on_wait,
        )
        self._sleep = sleep
        self._http = _AsyncHttpClient(
            base_url=self.base_url,
            headers=self._default_headers,
            timeout=self.timeout,
            transport=transport,
        )

    # -- the five calls -----------------------------------------------------------

    async def acquire(self, instance_id: str) -> BuilderToken:
        """Acquire a builderToken for ``instance_id`` (use it for a Create within 5 minutes)."""
        return cast(BuilderToken, await self._call(build_acquire(self.app_id, instance_id)))

    async def create(
        self, builder_token: str | BuilderToken, body: Mapping[str, Any]
    ) -> Task | Accepted:
        """Create the task; a retry reuses the token, so one token never makes two tasks."""
        request = build_create(self.app_id, _token(builder_token), body)
        return cast(Task | Accepted, await self._call(request))

    async def query(
        self, task_id: str, builder_token: str | BuilderToken, *, confirm_missing: bool = True
    ) -> Task | Accepted:
        """Query the task; a 404 raises ``TaskNotFound`` once confirmed (``confirm_missing``)."""
        request = build_query(self.app_id, task_id, _token(builder_token))
        return cast(Task | Accepted, await self._call(request, confirm_missing))

    async def update(
        self,
        task_id: str,
        builder_token: str | BuilderToken,
        sequence_id: int,
        body: Mapping[str, Any],
        *,
        confirm_missing: bool = True,
    ) -> Updated | Accepted:
        """Update with the full body; a retry re-sends the same sequenceId and body."""
        request = self._update_request(task_id, builder_token, sequence_id, body)
        return cast(Updated | Accepted, await self._call(request, confirm_missing))

    async def delete(
        self, task_id: str, builder_token: str | BuilderToken, *, confirm_missing: bool = True
    ) -> Task | Accepted:
        """Delete the task. ``TaskNotFound`` means it is gone (perhaps by this very call)."""
        request = build_delete(self.app_id, task_id, _token(builder_token))
        return cast(Task | Accepted, await self._call(request, confirm_missing))

    # -- plumbing -------------------------------------------------------------------

    async def _call(self, request: Request, confirm_missing: bool = True) -> Result:
        self._check_open()
        machine = RetryMachine(request, self.retry, confirm_missing=confirm_missing)
        step = machine.start()
        http = self._http
        while True:
            if step.delay:
                self._log_backoff(step)
                await self._sleep(step.delay)
            sent = step.request
            started = time.perf_counter()
            try:
                response = await http.request(
                    sent.method,
                    self._url(sent.target),
                    content=sent.content or None,
                    headers=sent.headers,
                )
            except _TRANSPORT_ERRORS as exc:
                error = self._transport_error(exc, sent)
                self._observe(step, None, None, time.perf_counter() - started, error)
                following = machine.receive_error(error)
            else:
                headers = response.headers
                self._observe(
                    step,
                    response.status_code,
                    headers.get("x-request-id"),
                    time.perf_counter() - started,
                )
                following = machine.receive_response(
                    response.status_code, headers, response.content
                )
            if type(following) is Done:
                return following.result
            step = cast(Send, following)

    async def aclose(self) -> None:
        """Close the connection pool (idempotent)."""
        self._closed = True
        self._url.cache_clear()
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        self._check_open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
