"""What ``layoutsync plan``, ``apply`` and ``destroy`` share: arguments, the session, output.

The command line is the whole desired state: ``--hosts`` is the set of hosts
present (hosts already known keep their join order) and ``--speaker`` the
speaker, or none. State (task id, builderToken, last applied body) lives in
``--state`` (default ``layoutsync.db`` in the working directory, mode 0600).
Credentials and the base URL come from the environment as the client reads
them (``LAYOUTSYNC_BASE_URL``, ``LAYOUTSYNC_APP_ID``, ``LAYOUTSYNC_CUSTOMER_KEY``,
``LAYOUTSYNC_CUSTOMER_SECRET``), never from a flag. Exit 1 on any error.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..apply import ReconcileResult, Session
from ..logs import configure
from ..plan import Plan
from ..spec import LayoutSpec, load_spec
from ..store import MemoryStore, SqliteStore, StateStore
from ._common import UsageProblem, eprint, parse_hosts, parse_uid

__all__ = [
    "DEFAULT_STATE",
    "add_common",
    "has_state",
    "open_session",
    "result_json",
    "result_line",
    "setup_logging",
    "show_plan",
]

#: The state file used when ``--state`` is not given (in the working directory).
DEFAULT_STATE = "layoutsync.db"


def add_common(parser: argparse.ArgumentParser, *, hosts: bool = True) -> None:
    parser.add_argument("spec", metavar="SPEC", help="layout spec file (.json or .toml)")
    if hosts:
        parser.add_argument(
            "--hosts",
            required=True,
            metavar="UIDS",
            help="comma-separated uids of the hosts present, e.g. 101,102,103 ('' for none)",
        )
        parser.add_argument("--speaker", metavar="UID", help="the active speaker's uid")
    parser.add_argument(
        "--state",
        metavar="FILE",
        default=DEFAULT_STATE,
        help=f"state file (default {DEFAULT_STATE} in the working directory)",
    )
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=("debug", "info", "warning", "error"),
        help="log level on stderr (default warning); tokens are never logged",
    )


def setup_logging(args: argparse.Namespace) -> None:
    """Logs on stderr at ``--log-level``; first thing a verb does, before any logger is made."""
    configure(level=args.log_level)


def open_session(
    args: argparse.Namespace, *, client: Any = None, create_state: bool = True
) -> Session | None:
    """The session for SPEC with the desired state of the command line.

    ``create_state=False`` (plan) reads an existing state file and never writes or
    creates one; None when ``--hosts`` or ``--speaker`` is not a uid (reported).
    """
    spec = load_spec(args.spec)
    store = _store(args.state, create=create_state)
    session = Session(spec, client=client, store=store)
    if hasattr(args, "hosts"):
        try:
            hosts = parse_hosts(args.hosts)
            speaker = None if args.speaker is None else parse_uid(args.speaker, "--speaker")
        except UsageProblem as exc:
            eprint(f"error: {exc}")
            return None
        session.set_hosts(hosts)
        session.set_speaker(speaker)
    return session


def _store(path: str, *, create: bool) -> StateStore:
    if not create and not Path(path).exists():
        return MemoryStore()  # no state yet: nothing is live
    return SqliteStore(path)


def has_state(args: argparse.Namespace, spec: LayoutSpec) -> bool:
    """Whether the state file knows this spec's session (without creating the file)."""
    if not Path(args.state).exists():
        return False
    store = SqliteStore(args.state)
    try:
        return store.load(spec.instance_id) is not None
    finally:
        store.close()


def show_plan(plan: Plan, session: Session, *, as_json: bool) -> None:
    if as_json:
        data = plan.as_dict()
        data["visible"] = list(session.compiled.visible) if session.compiled else []
        data["overflowed"] = list(session.compiled.overflowed) if session.compiled else []
        print(json.dumps(data, indent=2))
    else:
        print(plan.render())
        compiled = session.compiled
        if compiled is not None and compiled.overflowed:
            shown = ",".join(map(str, compiled.overflowed))
            print(f"Overflowed (not shown; audio as the spec says): {shown}")


def result_line(verb: str, result: ReconcileResult) -> str:
    """One line: what was done, to which task, with which calls."""
    if result.error is not None:
        done = f"failed during {result.action}"
    elif result.action == "noop":
        done = "no changes"
    else:
        done = result.plan.summary() if result.plan else result.action
    gone = result.plan.task_id if result.plan and result.action == "delete" else None
    if result.task_id:
        task = f"task {result.task_id}"
    elif gone and result.error is None:
        task = f"task {gone} deleted"
    else:
        task = "no task"
    sequence = f", sequenceId {result.sequence_id}" if result.sequence_id is not None else ""
    calls = ", ".join(result.calls) if result.calls else "none"
    pending = f"; reconcile again in {result.requeue_after:g} s" if result.requeue_after else ""
    return f"{verb}: {done}; {task}{sequence}; calls sent: {calls}{pending}"


def result_json(result: ReconcileResult) -> dict[str, Any]:
    return {
        "action": result.action,
        "task_id": result.task_id,
        "sequence_id": result.sequence_id,
        "calls": list(result.calls),
        "error": str(result.error) if result.error else None,
        "requeue_after": result.requeue_after,
    }
