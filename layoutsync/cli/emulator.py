"""``layoutsync emulator``: run the Cloud Transcoder emulator on a loopback port (uvicorn).

Prints the base URL, app id and customer key to use (never the secret) once it
accepts connections; ``--port 0`` picks a free port and prints it.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
from types import FrameType
from typing import Any

from ..emulator.faults import (
    ACTION_HELP,
    CALL_KINDS,
    DEFAULT_DELAY,
    DEFAULT_RANDOM_ACTIONS,
    FaultError,
    RandomFaults,
    parse_rule,
)
from ..emulator.state import (
    DEFAULT_APP_ID,
    DEFAULT_CUSTOMER_KEY,
    DEFAULT_CUSTOMER_SECRET,
    EmulatorConfig,
)
from ._common import eprint, number, port_number

ENV_BASE_URL = "LAYOUTSYNC_BASE_URL"
ENV_APP_ID = "LAYOUTSYNC_APP_ID"
ENV_KEY = "LAYOUTSYNC_CUSTOMER_KEY"
ENV_SECRET = "LAYOUTSYNC_CUSTOMER_SECRET"  # the variable's name, not a secret


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "emulator",
        help="run a strict local emulator of the Cloud Transcoder REST service",
        description="Serve the five Cloud Transcoder calls under "
        "/v1/projects/{appId}/rtsc/cloud-transcoder and an admin API under /_emulator/. "
        f"Credentials default to ${ENV_KEY} / ${ENV_SECRET} (else {DEFAULT_CUSTOMER_KEY!r} / "
        "the built-in default secret), the app id to "
        f"${ENV_APP_ID} (else {DEFAULT_APP_ID!r}).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=port_number, default=8089, help="port; 0 picks a free one (default 8089)"
    )
    parser.add_argument(
        "--app-id",
        action="append",
        metavar="ID",
        help="an enabled app id (repeatable; default $LAYOUTSYNC_APP_ID or emulator-app)",
    )
    parser.add_argument(
        "--disabled-app-id",
        action="append",
        default=[],
        metavar="ID",
        help="an app id without the service: its calls get 403 (repeatable)",
    )
    parser.add_argument("--customer-key", metavar="K", help=f"Basic auth key (default ${ENV_KEY})")
    parser.add_argument(
        "--customer-secret", metavar="S", help=f"Basic auth secret (default ${ENV_SECRET})"
    )
    parser.add_argument(
        "--qps",
        type=number(minimum=0, above=True),
        help="rate limit per app id in requests/s (token bucket, burst = QPS); 429 beyond "
        "(default: no limit)",
    )
    parser.add_argument(
        "--retried-create",
        type=int,
        choices=(200, 201, 409),
        default=200,
        help="answer to a Create retried with the token that made a live task "
        "(200/201: the task; 409: error with taskId). Default 200",
    )
    parser.add_argument(
        "--echo-config",
        action="store_true",
        help="return the applied config in task objects (the vendor returns {})",
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="KIND:ACTION[:COUNT]",
        help=f"fail the next COUNT (default 1) calls of KIND (any, {', '.join(CALL_KINDS)}) "
        f"with ACTION: {ACTION_HELP}. Repeatable",
    )
    parser.add_argument(
        "--fault-rate",
        type=number(minimum=0, maximum=1),
        help="random faults: the share of calls that fail, from 0 to 1, e.g. 0.1 for one "
        "call in ten (default: no random faults)",
    )
    parser.add_argument("--fault-seed", type=int, default=0, help="random faults: RNG seed")
    parser.add_argument(
        "--fault-actions",
        default=",".join(DEFAULT_RANDOM_ACTIONS),
        help="random faults: comma-separated actions (default %(default)s)",
    )
    parser.add_argument(
        "--fault-kinds", default="any", help="random faults: comma-separated call kinds"
    )
    parser.add_argument(
        "--fault-delay",
        type=number(minimum=0),
        default=DEFAULT_DELAY,
        help="seconds the 'delay' action sleeps (default %(default)s)",
    )
    parser.add_argument("--seed", type=int, help="make builder tokens and task ids reproducible")
    parser.add_argument(
        "--app-certificate",
        metavar="CERT",
        help="check every rtcToken of Create/Update against this App Certificate (32 hex "
        "digits, or env:NAME): AccessToken2, right App ID, channel, uid, privileges, not expired "
        "by the emulator's clock; problems show in /_emulator/tasks",
    )
    parser.add_argument(
        "--strict-tokens",
        action="store_true",
        help="with --app-certificate: answer a bad rtcToken with 400 naming the field "
        "(the emulator's choice; the vendor page does not say)",
    )
    parser.add_argument("--access-log", action="store_true", help="log every request (uvicorn)")
    parser.set_defaults(handler=run)


def build_config(args: argparse.Namespace) -> EmulatorConfig:
    """The emulator's configuration from the flags and environment (FaultError/ValueError when
    a flag is wrong)."""
    app_ids = tuple(args.app_id or [os.environ.get(ENV_APP_ID) or DEFAULT_APP_ID])
    random_faults = None
    if args.fault_rate is not None:
        random_faults = RandomFaults.make(
            args.fault_rate,
            seed=args.fault_seed,
            actions=[a for a in args.fault_actions.split(",") if a],
            kinds=[k for k in args.fault_kinds.split(",") if k],
            delay=args.fault_delay,
        )
    return EmulatorConfig(
        app_ids=app_ids,
        disabled_app_ids=tuple(args.disabled_app_id),
        customer_key=args.customer_key or os.environ.get(ENV_KEY) or DEFAULT_CUSTOMER_KEY,
        customer_secret=(
            args.customer_secret or os.environ.get(ENV_SECRET) or DEFAULT_CUSTOMER_SECRET
        ),
        qps=args.qps,
        retried_create=args.retried_create,
        echo_config=args.echo_config,
        fault_delay=args.fault_delay,
        faults=tuple(parse_rule(text, delay=args.fault_delay) for text in args.fault),
        random_faults=random_faults,
        seed=args.seed,
        app_certificate=_certificate(args.app_certificate),
        strict_tokens=args.strict_tokens,
    )


def _certificate(value: str | None) -> str | None:
    """``--app-certificate``: the value, or ``env:NAME`` read from the environment."""
    if value is None or not value.startswith("env:"):
        return value
    name = value[len("env:") :]
    found = os.environ.get(name)
    if not found:
        raise ValueError(f"--app-certificate: environment variable {name} is not set")
    return found.strip()


def run(args: argparse.Namespace) -> int:
    try:
        config = build_config(args)
    except (FaultError, ValueError) as exc:
        eprint(f"error: {exc}")
        return 2
    try:
        sock = _bind(args.host, args.port)
    except OSError as exc:
        eprint(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}")
        return 1

    import uvicorn

    from ..emulator.app import create_app

    host, port = sock.getsockname()[:2]
    shown_host = f"[{host}]" if ":" in host else host
    base_url = f"http://{shown_host}:{port}"
    secret_source = (
        "--customer-secret"
        if args.customer_secret
        else f"${ENV_SECRET}"
        if os.environ.get(ENV_SECRET)
        else "the built-in default (see layoutsync.emulator.DEFAULT_CUSTOMER_SECRET)"
    )
    if args.customer_secret:
        secret_env = f"{ENV_SECRET}='<the --customer-secret you gave>'"
    elif os.environ.get(ENV_SECRET):
        secret_env = f'{ENV_SECRET}="${ENV_SECRET}"'  # already set where the emulator runs
    else:  # the built-in default is public: a local fake's password, printed to be pasted
        secret_env = f"{ENV_SECRET}={config.customer_secret}"
    banner = [
        f"layoutsync emulator listening on {base_url}",
        f"  base URL:      {base_url}",
        f"  app id:        {', '.join(config.app_ids)}",
        f"  customer key:  {config.customer_key}",
        f"  secret:        from {secret_source}; set it with --customer-secret or ${ENV_SECRET}",
        f"  rate limit:    {f'{config.qps:g}/s per app id' if config.qps else 'off'}",
        f"  admin API:     {base_url}/_emulator/ (an index of tasks, requests, faults, clock, "
        "reset)",
        "  client environment, ready to paste:",
        f"    export {ENV_BASE_URL}={base_url} {ENV_APP_ID}={config.app_ids[0]} "
        f"{ENV_KEY}={config.customer_key} {secret_env}",
    ]

    class _Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.started:
                print("\n".join(banner), flush=True)

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            super().handle_exit(sig, frame)
            # SIGTERM/SIGINT is the normal way to stop: shut down cleanly and exit 0
            # instead of re-raising the signal afterwards.
            captured = getattr(self, "_captured_signals", None)
            if captured is not None:
                captured.clear()

    uv_config = uvicorn.Config(
        create_app(config),
        http=_transport_exposing_protocol(),
        log_level="warning",
        access_log=args.access_log,
        lifespan="off",
        timeout_graceful_shutdown=5,
    )
    server = _Server(uv_config)
    logging.getLogger("uvicorn.error").addFilter(_quiet_injected_drops)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0


def _transport_exposing_protocol() -> type:
    """uvicorn's h11 protocol with the socket's transport in each request's scope state, so
    the "disconnect" fault can close it before any byte of the response (see emulator.app)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    from ..emulator.app import SERVER_TRANSPORT_KEY

    class _Protocol(H11Protocol):
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self.app_state = {**self.app_state, SERVER_TRANSPORT_KEY: transport}

    return _Protocol


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _quiet_injected_drops(record: logging.LogRecord) -> bool:
    """Turn uvicorn's traceback for an injected dropped connection into one line."""
    from ..emulator.app import InjectedDrop

    info: Any = record.exc_info
    if info and isinstance(info[1], InjectedDrop):
        record.msg, record.args, record.exc_info, record.exc_text = (
            "injected fault: connection dropped",
            (),
            None,
            None,
        )
    return True
