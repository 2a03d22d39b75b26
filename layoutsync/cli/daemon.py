"""``layoutsync daemon --config PATH [--listen HOST:PORT] [--state FILE]``: keep layouts in sync.

Secrets come from the environment only: ``LAYOUTSYNC_API_TOKEN`` (the
bearer token of the HTTP API), ``LAYOUTSYNC_NCS_SECRET`` (the key NCS signs
webhooks with) and the API client's ``LAYOUTSYNC_APP_ID``,
``LAYOUTSYNC_CUSTOMER_KEY``, ``LAYOUTSYNC_CUSTOMER_SECRET`` (and optionally
``LAYOUTSYNC_BASE_URL``). Everything is checked before the port is opened:
a missing secret or a bad flag exits 2, a spec that does not load or a state
file that cannot be opened exits 1, each with one clear message.
SIGTERM drains (in-flight and queued reconciles finish, for at most
``--drain-timeout`` seconds), logs what it did and what it left, and exits 0.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import socket
from pathlib import Path
from types import FrameType
from typing import Any

from ..errors import LayoutsyncError
from ._common import eprint, number

__all__ = ["ENV_API_TOKEN", "ENV_NCS_SECRET", "parse_listen", "register", "run"]

ENV_API_TOKEN = "LAYOUTSYNC_API_TOKEN"
ENV_NCS_SECRET = "LAYOUTSYNC_NCS_SECRET"
DEFAULT_LISTEN = "127.0.0.1:8080"
DEFAULT_DRAIN_TIMEOUT = 20.0
# The same as layoutsync.daemon.ratelimit's (a test holds them equal); not imported from
# there, since importing the daemon package costs every CLI command its web stack.
DEFAULT_QPS = 10.0
DEFAULT_MARGIN = 0.05
DEFAULT_BURST = 1


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "daemon",
        help="run the sync daemon (HTTP API + Agora NCS webhooks)",
        description="Keep every session's transcoder in sync as hosts come and go. "
        f"Secrets from the environment: {ENV_API_TOKEN}, {ENV_NCS_SECRET}, "
        "LAYOUTSYNC_APP_ID, LAYOUTSYNC_CUSTOMER_KEY, LAYOUTSYNC_CUSTOMER_SECRET.",
    )
    parser.add_argument(
        "--config", required=True, metavar="PATH", help="a spec file or a directory of them"
    )
    parser.add_argument(
        "--listen",
        default=DEFAULT_LISTEN,
        metavar="HOST:PORT",
        help=f"address to serve on (default {DEFAULT_LISTEN}; loopback unless told otherwise)",
    )
    parser.add_argument(
        "--state",
        default="layoutsync.db",
        metavar="FILE",
        help="SQLite state file (default layoutsync.db)",
    )
    parser.add_argument(
        "--state-sync",
        choices=["full", "normal"],
        default="full",
        help="SQLite synchronous mode: full (default) fsyncs every write and survives a power "
        "cut; normal (WAL) survives a process crash and costs no fsync per reconcile",
    )
    parser.add_argument(
        "--debounce",
        type=number(minimum=0),
        default=0.2,
        metavar="SECONDS",
        help="gather a burst of events for this long into one reconcile (default 0.2)",
    )
    parser.add_argument(
        "--concurrency",
        type=number(minimum=1, whole=True),
        default=16,
        metavar="N",
        help="reconciles running at once (default 16)",
    )
    parser.add_argument(
        "--qps",
        type=number(minimum=0, above=True),
        default=DEFAULT_QPS,
        metavar="N",
        help=f"the vendor's quota: outgoing API requests per second, retries included "
        f"(default {DEFAULT_QPS:g}); requests are paced --qps-margin below it",
    )
    parser.add_argument(
        "--qps-margin",
        type=number(minimum=0, maximum=0.5),
        default=DEFAULT_MARGIN,
        metavar="FRACTION",
        help=f"pace this fraction below --qps, so a request that arrives early is not a 429 "
        f"(default {DEFAULT_MARGIN:g}: 9.5 requests/s at --qps 10)",
    )
    parser.add_argument(
        "--burst",
        type=number(minimum=1, whole=True),
        default=DEFAULT_BURST,
        metavar="N",
        help=f"requests allowed at once after an idle spell (default {DEFAULT_BURST}); lowered "
        "so that no 1-second window holds more than --qps requests (1 at --qps 10)",
    )
    parser.add_argument(
        "--drain-timeout",
        type=number(minimum=0),
        default=DEFAULT_DRAIN_TIMEOUT,
        metavar="SECONDS",
        help=f"on SIGTERM, finish queued reconciles for at most this long "
        f"(default {DEFAULT_DRAIN_TIMEOUT:g}); what is left is reconciled at the next start",
    )
    parser.add_argument(
        "--resync",
        type=number(minimum=0, above=True),
        default=300.0,
        metavar="SECONDS",
        help="period of the Query of every live task, to notice drift (default 300; "
        "stretched so resyncs use at most half of --qps)",
    )
    parser.add_argument(
        "--full-gc-interval",
        type=number(minimum=0),
        default=600.0,
        metavar="SECONDS",
        help="seconds between full garbage collections (default 600); in between, "
        "long-lived objects are frozen so the collector's pauses stay short with thousands "
        "of sessions; 0 leaves Python's collector as it is",
    )
    parser.add_argument(
        "--no-watch",
        dest="watch",
        action="store_false",
        help="do not reload spec files when they change",
    )
    parser.add_argument(
        "--redis",
        default=None,
        metavar="URL",
        help="share sessions and the --qps quota with other replicas through Redis "
        "(redis://HOST:PORT/DB); without it, state stays in the SQLite --state file",
    )
    parser.add_argument(
        "--replica-id",
        default=None,
        metavar="ID",
        help="this replica's name among the others (default: host name and pid; with --redis)",
    )
    parser.add_argument(
        "--lease-ttl",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long a replica owns its sessions without renewing (default 10; with --redis): "
        "the others take over a dead replica's sessions after about this long",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="default info",
    )
    parser.set_defaults(handler=run)


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) -> (host, port); ValueError naming the problem."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host:
        raise ValueError(f"--listen {value!r}: expected HOST:PORT, e.g. {DEFAULT_LISTEN}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"--listen {value!r}: port must be a number 0..65535")
    return host, int(port_text)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    from ..logs import configure, get_logger

    configure(json=True, level=args.log_level)
    log = get_logger(component="cli")

    missing = [name for name in (ENV_API_TOKEN, ENV_NCS_SECRET) if not os.environ.get(name)]
    if missing:
        eprint(
            f"error: {' and '.join(missing)} not set: the daemon needs the API bearer token "
            f"({ENV_API_TOKEN}) and the NCS webhook secret ({ENV_NCS_SECRET}) in its environment"
        )
        return 2
    try:
        host, port = parse_listen(args.listen)
    except ValueError as exc:
        eprint(f"error: {exc}")
        return 2

    from ..daemon.app import create_app
    from ..daemon.config import ConfigProblem, SpecCatalog
    from ..daemon.metrics import DaemonMetrics
    from ..daemon.runtime import DaemonSettings

    try:
        settings = DaemonSettings(
            config=Path(args.config),
            state=Path(args.state),
            debounce=args.debounce,
            concurrency=args.concurrency,
            qps=args.qps,
            burst=args.burst,
            qps_margin=args.qps_margin,
            drain_timeout=args.drain_timeout,
            resync=args.resync,
            watch=args.watch,
            full_gc_interval=args.full_gc_interval,
        )
    except ValueError as exc:
        eprint(f"error: {exc}")
        return 2

    catalog = SpecCatalog(settings.config)
    try:
        changes = catalog.scan()
    except ConfigProblem as exc:
        eprint(f"error: --config {exc}")
        return 2
    if changes.failed:
        eprint(f"error: {len(changes.failed)} spec file(s) did not load; not starting:")
        for error in changes.failed:
            eprint(f"  {error}")
        return 1

    metrics = DaemonMetrics()
    replica = _replica(args, settings, catalog, changes, metrics)
    if isinstance(replica, int):
        return replica
    daemon = replica if replica is not None else _single(args, settings, catalog, metrics)
    if isinstance(daemon, int):
        return daemon
    store = daemon.store
    try:
        daemon.load(changes)
    except LayoutsyncError as exc:
        store.close()  # type: ignore[attr-defined]
        eprint(f"error: {exc}")
        return 1

    try:
        sock = _bind(host, port)
    except OSError as exc:
        store.close()
        eprint(f"error: --listen {args.listen}: {exc}")
        return 1
    app = create_app(
        daemon, api_token=os.environ[ENV_API_TOKEN], ncs_secret=os.environ[ENV_NCS_SECRET]
    )
    if not _is_loopback(host):
        log.warning("listening beyond loopback", host=host)
    if not daemon.names():
        log.warning(
            "no sessions: no spec file (.json, .toml) under --config",
            config=str(settings.config),
            hint="add spec files there; they are loaded as they appear"
            if settings.watch
            else "add spec files there and restart (--no-watch)",
        )
    log.info(
        "listening",
        url=f"http://{'[' + host + ']' if ':' in host else host}:{sock.getsockname()[1]}",
        config=str(settings.config),
        state=str(settings.state),
        sessions=len(daemon.names()),
    )
    return _serve(app, sock)


def _single(args: argparse.Namespace, settings: Any, catalog: Any, metrics: Any) -> Any:
    """The one-process daemon over the SQLite ``--state`` file (or the exit code of why not)."""
    from ..daemon.runtime import Daemon, build_client
    from ..store import SqliteStore

    try:
        client = build_client(settings, metrics)
    except LayoutsyncError as exc:
        eprint(f"error: {exc}")
        return 2
    try:
        store = SqliteStore(settings.state, synchronous=args.state_sync.upper())
    except LayoutsyncError as exc:
        eprint(f"error: {exc}")
        return 1
    return Daemon(settings, client=client, store=store, catalog=catalog, metrics=metrics)


def _replica(
    args: argparse.Namespace,
    settings: Any,
    catalog: Any,
    changes: Any,
    metrics: Any,
) -> Any:
    """With ``--redis``: a ``ClusterDaemon`` (or the exit code of why not); else None."""
    if args.redis is None:
        if args.replica_id is not None:
            eprint("error: --replica-id needs --redis")
            return 2
        return None
    from ..daemon.cluster import ClusterSettings, build_cluster_daemon, default_replica_id

    try:
        cluster = ClusterSettings(
            redis_url=args.redis,
            replica_id=args.replica_id or default_replica_id(),
            lease_ttl=args.lease_ttl,
        )
    except ValueError as exc:
        eprint(f"error: --lease-ttl/--replica-id: {exc}")
        return 2
    try:
        return build_cluster_daemon(settings, cluster, metrics=metrics, catalog=catalog)
    except ValueError as exc:
        eprint(f"error: --redis {args.redis!r}: {exc}")
        return 2
    except LayoutsyncError as exc:
        eprint(f"error: --redis {args.redis}: {exc}")
        return 1


def _bind(host: str, port: int) -> socket.socket:
    """Bind before serving, so an address in use is a clear error before anything starts."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise OSError(f"cannot resolve {host!r}: {exc.strerror}") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


def _serve(app: object, sock: socket.socket) -> int:
    """Run uvicorn on ``sock``; SIGTERM and SIGINT drain and exit 0.

    uvicorn re-raises the signal it caught once it has shut down, restoring
    the handler that was there before it. A handler installed here first
    makes that re-raise a no-op, so a graceful stop exits 0 and not 143.
    """
    import uvicorn

    caught: list[int] = []

    def remember(signum: int, _frame: FrameType | None) -> None:
        caught.append(signum)

    previous = {sig: signal.signal(sig, remember) for sig in (signal.SIGTERM, signal.SIGINT)}
    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
        server_header=False,
    )
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    except SystemExit as exc:  # uvicorn exits non-zero when the lifespan fails to start
        return 1 if exc.code else 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
    if not server.started:
        eprint("error: the daemon did not start; see the log above")
        return 1
    return 0
