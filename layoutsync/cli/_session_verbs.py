"""What ``layoutsync plan``, ``apply`` and ``destroy`` share: arguments, the session, output.

Sessions are named as the daemon names them: after the spec file's stem
(``specs/grid.json`` -> ``grid``), so ``apply specs/grid.json`` and ``daemon
--config specs/`` on one state file drive the same row and the same task.

The command line is the whole desired state: ``--hosts`` is the set of hosts
present (hosts already known keep their join order) and ``--speaker`` the
speaker, or none. State (task id, builderToken, last applied body) lives in
``--state`` (default ``layoutsync.db`` in the working directory, mode 0600).
Credentials and the base URL come from the environment as the client reads
them (``LAYOUTSYNC_BASE_URL``, ``LAYOUTSYNC_APP_ID``, ``LAYOUTSYNC_CUSTOMER_KEY``,
``LAYOUTSYNC_CUSTOMER_SECRET``), never from a flag. Exit 1 on any error, 2 when
a file is missing or unreadable, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..apply import ReconcileResult, Session
from ..errors import LayoutsyncError
from ..logs import configure
from ..plan import Plan
from ..spec import LayoutSpec, load_spec, session_name
from ..store import MemoryStore, SessionState, SqliteStore, StateStore
from ._common import UsageProblem, eprint, parse_hosts, parse_uid
from ._progress import Progress

__all__ = [
    "DEFAULT_STATE",
    "StrayRow",
    "add_common",
    "add_state",
    "command_line",
    "has_state",
    "load_row",
    "note_hosts",
    "note_spec",
    "open_session",
    "result_json",
    "result_line",
    "setup_logging",
    "show_plan",
]

#: The state file used when ``--state`` is not given (in the working directory).
DEFAULT_STATE = "layoutsync.db"


def add_common(parser: argparse.ArgumentParser, *, hosts: bool = True) -> None:
    """SPEC, ``--hosts``/``--speaker`` (unless ``hosts=False``), ``--state``, ``--log-level``."""
    parser.add_argument("spec", metavar="SPEC", help="layout spec file (.json or .toml)")
    if hosts:
        parser.add_argument(
            "--hosts",
            required=True,
            metavar="UIDS",
            help="comma-separated uids of the hosts present, e.g. 101,102,103 ('' for none); "
            "required",
        )
        parser.add_argument(
            "--speaker", metavar="UID", help="the active speaker's uid (default: none)"
        )
    add_state(parser)
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=("debug", "info", "warning", "error"),
        help="log level on stderr (default warning); tokens are never logged",
    )


def add_state(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state",
        metavar="FILE",
        default=DEFAULT_STATE,
        help=f"state file (default {DEFAULT_STATE} in the working directory)",
    )


def setup_logging(args: argparse.Namespace) -> None:
    """Logs on stderr at ``--log-level``; first thing a verb does, before any logger is made."""
    configure(level=args.log_level)


class StrayRow(LayoutsyncError):
    """The state file holds this spec's instanceId under another session name."""


def open_session(
    args: argparse.Namespace,
    *,
    client: Any = None,
    create_state: bool = True,
    progress: Progress | None = None,
    spec: LayoutSpec | None = None,
) -> Session | None:
    """The session for SPEC with the desired state of the command line.

    ``create_state=False`` (plan) reads an existing state file and never writes or
    creates one; None when ``--hosts`` or ``--speaker`` is not a uid (reported).
    Raises ``StrayRow`` (with the exact fix) when another session name of the state
    file holds SPEC's instanceId and this name has no row.
    """
    spec = spec if spec is not None else load_spec(args.spec)
    name = session_name(args.spec)
    store = _store(args.state, create=create_state)
    _check_stray(store, name, spec, args)
    waits: dict[str, Any] = {}
    if progress is not None:
        waits = {"on_wait": progress.on_wait, "sleep": progress.sleep}
    # plan writes nothing: not even the desired inputs a durable session saves per change
    session = Session(
        spec, client=client, store=store, name=name, durable_inputs=create_state, **waits
    )
    if hasattr(args, "hosts"):
        try:
            hosts = parse_hosts(args.hosts)
            speaker = None if args.speaker is None else parse_uid(args.speaker, "--speaker")
        except UsageProblem as exc:
            eprint(f"error: {exc}")
            return None
        session.set_hosts(hosts)
        session.set_speaker(speaker)
        note_hosts(hosts, speaker, args.hosts)
        note_spec(spec)
    return session


def note_spec(spec: LayoutSpec) -> None:
    """Say when the spec asks for more than its canvas gives."""
    wanted = spec.layout.max_tiles
    if wanted is not None and not spec.audio_only and wanted > spec.capacity:
        eprint(
            f"note: layout.maxTiles is {wanted} but the canvas holds at most {spec.capacity} "
            "tiles of at least 120 px: no more than that are shown"
        )


def note_hosts(hosts: list[int], speaker: int | None, given: str) -> None:
    """Say what the command line asks that will not show as the user may expect."""
    twice = sorted({uid for uid in hosts if hosts.count(uid) > 1})
    if twice:
        eprint(f"note: --hosts lists {', '.join(map(str, twice))} more than once; counted once")
    if speaker is not None and speaker not in hosts:
        eprint(
            f"note: --speaker {speaker} is not among --hosts {given!r}: no host is featured "
            "as the speaker until that uid is present"
        )


def _check_stray(store: StateStore, name: str, spec: LayoutSpec, args: argparse.Namespace) -> None:
    if store.load(name) is not None:
        return
    for other in store.names():
        row = store.load(other)
        if row is not None and row.instance_id == spec.instance_id and row.task_id:
            state = "" if args.state == DEFAULT_STATE else f" --state {args.state}"
            raise StrayRow(
                f"{args.state} holds instanceId {spec.instance_id!r} (task {row.task_id}) as "
                f"session {other!r}, and sessions are named after the spec file ({name!r} for "
                f"{args.spec}). Run `layoutsync state mv {other} {name}{state}` to drive that "
                f"task from {args.spec}, or `layoutsync state forget {other}{state}` if it is "
                "no longer yours."
            )


def load_row(path: str, name: str) -> SessionState | None:
    """The state row ``name`` of the file at ``path`` (None when either is missing)."""
    if not Path(path).exists():
        return None
    store = SqliteStore(path)
    try:
        return store.load(name)
    finally:
        store.close()


def command_line(verb: str, args: argparse.Namespace) -> str:
    """The command that picks up where this one stopped, for messages."""
    parts = ["layoutsync", verb, args.spec]
    if getattr(args, "hosts", None) is not None:
        parts += ["--hosts", args.hosts or "''"]
    if getattr(args, "speaker", None) is not None:
        parts += ["--speaker", args.speaker]
    if args.state != DEFAULT_STATE:
        parts += ["--state", args.state]
    return " ".join(parts)


def _store(path: str, *, create: bool) -> StateStore:
    if not create and not Path(path).exists():
        return MemoryStore()  # no state yet: nothing is live
    return SqliteStore(path)


def has_state(args: argparse.Namespace, spec: LayoutSpec) -> bool:
    """Whether the state file knows this spec's session (without creating the file)."""
    return load_row(args.state, session_name(args.spec)) is not None


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


def result_line(verb: str, result: ReconcileResult, again: str | None = None) -> str:
    """One line: what was done, to which task, with which calls.

    An outcome still unknown (``requeue_after``) ends the line with the command that
    finishes it (``again``), never a promise of a retry the CLI will not make.
    """
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
        task = f"task {gone} deleted" if "delete" in result.calls else f"task {gone} was gone"
    else:
        task = "no task"
    sequence = f", sequenceId {result.sequence_id}" if result.sequence_id is not None else ""
    calls = ", ".join(result.calls) if result.calls else "none"
    pending = ""
    if result.requeue_after:
        again = f"`{again}`" if again else "the same command"
        pending = f"; not finished (an outcome is not known yet): run {again} again to finish"
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
