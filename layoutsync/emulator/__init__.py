"""A strict, in-process emulator of Agora's Cloud Transcoder REST service.

``create_app()`` gives a Starlette app (use it with ``httpx.ASGITransport`` or
``SyncASGITransport``, or run it with ``layoutsync emulator``); its state and
rules are ``app.state.emulator``, an ``Emulator``. Inject a clock and a sleep
with ``create_app(emulator=Emulator(config, clock=ManualClock(), sleep=...))``.

Service calls, under ``/v1/projects/{appId}/rtsc/cloud-transcoder`` (Basic auth):

    POST   /builderTokens                      Acquire  -> {tokenName, createTs, instanceId}
    POST   /tasks?builderToken=                Create   -> task object
    GET    /tasks/{taskId}?builderToken=       Query    -> task object
    PATCH  /tasks/{taskId}?builderToken=&sequenceId=&updateMask=services.cloudTranscoder.config
                                               Update   -> {}
    DELETE /tasks/{taskId}?builderToken=       Delete   -> task object (then 404)

Errors are ``{"message": ...}``; every response has ``X-Request-ID``. Checks run
in this order: 401 (credentials), 403 (app id disabled *or unknown*), 429 (QPS
per app id, token bucket with burst = QPS, off unless configured), the fault
plan, then the call (400 for a bad Content-Type, JSON, parameter or body).

Decisions where the vendor page is silent:

* a Create with an unknown, expired (> 5 min) or spent builderToken is 400; a Create
  retried with the token that made a live task gets ``retried_create``: 200 (default)
  or 201 with the task object, or 409 whose body carries ``taskId`` (a genuine
  instanceId conflict, with another token, is 409 *without* ``taskId``);
* Query/Update/Delete with a token other than the task's is 400; unknown task 404;
* Update answers 200 with an empty body (the vendor page: 包体为空). A sequenceId not
  above the last applied one is checked against the schema, answered the same way,
  counted as stale and not applied. Otherwise
  a change outside the updatable set (see ``rules.update_violations``) is 400 naming
  its pointer; a key present in one body and absent in the other counts as a change;
* the task object's ``sequenceId`` is "0" after Create, then the last applied one;
  ``status`` is STARTED after Create, IN_PROGRESS once queried or updated, STOPPED
  in Delete's answer; ``config`` is ``{}`` unless ``echo_config`` (then it carries the
  applied ``transcoder`` as sent, tokens included: it is the caller's own data);
* builder tokens are standard base64, so "+", "/" and "=" occur; a "+" sent
  unencoded arrives as a space and is still found;
* idleTimeout: a uid never reported is present; a task is destroyed once every host
  it handles (for an audio uid 0, every reported host of the channel; a channel with
  no reports counts as occupied) has been absent for longer than idleTimeout, counted
  from the latest departure but never from before Create or the last Update that
  changed the handled hosts. Checked lazily on each call and clock or presence change;
* rtcTokens are not checked unless an App Certificate is configured
  (``EmulatorConfig(app_certificate=...)``, ``--app-certificate``); then every token
  of a Create/Update is checked as the service would (``emulator.tokens``: AccessToken2
  signed with it for the call's App ID, right channel, uid 0 for inputs and the output
  uid for the output, join/publish privileges, not expired by the emulator's clock).
  The vendor page does not say what the service answers to a bad token; the
  emulator's choice: the call goes through and the problem is recorded on the task
  (``tokens.problems`` in the admin view, a ``token_problem`` event), also when an
  applied token expires on the emulator's clock; with ``strict_tokens``
  (``--strict-tokens``) the call is 400 naming the field;
* faults fire after auth and rate limit, never on admin routes. "202" and "commit-*"
  apply the call first (202 returns the usual body, so a 202 Create still names its
  taskId); a commit fault on a call that fails anyway returns that failure;
  "drop"/"commit-drop" send the response head and raise ``ConnectionAbortedError``
  (uvicorn closes the socket; ``httpx.ASGITransport`` re-raises it in-process);
  "disconnect"/"commit-disconnect" close the socket before any byte of the response
  (in-process: ``httpx.RemoteProtocolError``); "late" answers nothing before the
  client's timeout and applies the call after its delay (in-process: ``httpx.ReadTimeout``
  at once, the call applied in the background; see ``app.py``);
* an admin task object carries ``configSha256``, the SHA-256 of the applied config as
  sorted JSON with its tokens, so a test can check the tokens without seeing them;

Admin API (no auth; bind loopback), all JSON:

    GET    /_emulator/health                      {"ok": true, "now": t}
    GET    /_emulator/tasks[/{taskId}]            live tasks, config with tokens masked
    GET    /_emulator/requests[?kind=update]      request log (bounded), DELETE clears it
    GET    /_emulator/events                      created/updated/stale_update/deleted/...
    GET    /_emulator/stats                       calls by kind and status
    GET|POST|DELETE /_emulator/faults             {"kind", "action", "count", "delay"},
                                                  {"random": {"rate", "seed", "actions",
                                                  "kinds", "delay"}}, or a list of them
    GET|POST /_emulator/clock                     {"advance": s} or {"set": unix_time}
    GET    /_emulator/channels/{channel}          reported hosts
    PUT|DELETE /_emulator/channels/{channel}/hosts/{uid}    host present / absent
    POST   /_emulator/channels/{channel}/hosts    {"present": [...], "absent": [...]}
    GET|PATCH /_emulator/config                   {"retriedCreate", "echoConfig", "qps"}
    POST   /_emulator/reset                       forget tasks, tokens, faults, logs, clock
"""

from __future__ import annotations

from .app import API_PREFIX, create_app
from .faults import FaultAction, FaultError, FaultRule, RandomFaults
from .state import (
    BUILDER_TOKEN_TTL,
    DEFAULT_APP_ID,
    DEFAULT_CUSTOMER_KEY,
    DEFAULT_CUSTOMER_SECRET,
    UPDATE_MASK,
    Emulator,
    EmulatorConfig,
    ManualClock,
    Reply,
    config_digest,
)
from .transport import SyncASGITransport

__all__ = [
    "API_PREFIX",
    "BUILDER_TOKEN_TTL",
    "DEFAULT_APP_ID",
    "DEFAULT_CUSTOMER_KEY",
    "DEFAULT_CUSTOMER_SECRET",
    "UPDATE_MASK",
    "Emulator",
    "EmulatorConfig",
    "FaultAction",
    "FaultError",
    "FaultRule",
    "ManualClock",
    "RandomFaults",
    "Reply",
    "SyncASGITransport",
    "config_digest",
    "create_app",
]
