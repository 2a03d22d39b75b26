"""``layoutsync state list|show|forget|mv``: look at and repair the state file.

As ``terraform state`` does, these verbs work on the state file alone (over the
``StateStore`` API) and send no request: ``forget`` drops a row and leaves any
live task running (it ends by itself idleTimeout seconds after its hosts leave,
or ``layoutsync adopt`` takes it back); ``mv`` renames a row, e.g. to hand a
task made under one session name to the spec file that now drives it. Secrets
(builderTokens, rtcTokens) are never shown. Exit 1 when the named session does
not exist, 2 when the state file does not.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
from pathlib import Path
from typing import Any

from ..store import SessionState, SqliteStore
from ._common import FileProblem, eprint
from ._session_verbs import add_state


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "state",
        help="list, show, forget or rename sessions in the state file (no request is made)",
        description="Inspect and repair the state file. Nothing here calls the service.",
    )
    verbs = parser.add_subparsers(dest="state_verb", metavar="ACTION", required=True)

    def add(name: str, help_text: str, *, session: bool = True) -> argparse.ArgumentParser:
        sub = verbs.add_parser(name, help=help_text, description=help_text)
        if session:
            sub.add_argument("name", metavar="NAME", help="session name (a spec file's stem)")
        add_state(sub)
        return sub

    listing = add(
        "list", "one line per session: name, instanceId, task, what is pending", session=False
    )
    listing.add_argument("--json", action="store_true", help="one JSON array of sessions")
    listing.set_defaults(handler=run_list)
    show = add("show", "every field of one session's row (secrets as ***)")
    show.add_argument("--json", action="store_true", help="the row as JSON")
    show.set_defaults(handler=run_show)
    add(
        "forget",
        "drop one session's row without calling the service (a live task keeps running)",
    ).set_defaults(handler=run_forget)
    move = add("mv", "rename a session's row (e.g. to the stem of the spec file that drives it)")
    move.add_argument("new_name", metavar="NEW_NAME", help="the new session name")
    move.set_defaults(handler=run_mv)


def _open(path: str) -> SqliteStore:
    if not Path(path).is_file():
        raise FileProblem(f"{path}: no such state file")
    return SqliteStore(path)


def _summary(state: SessionState) -> dict[str, Any]:
    intent = state.intent
    return {
        "name": state.name,
        "instanceId": state.instance_id,
        "taskId": state.task_id,
        "sequenceId": state.sequence_id,
        "hosts": list(state.hosts),
        "speaker": state.speaker,
        "pending": intent.call if intent is not None else None,
        "idleSince": _when(state.idle_since),
        "updatedAt": _when(state.updated_at),
    }


def _when(stamp: float | None) -> str | None:
    if not stamp:
        return None
    return datetime.datetime.fromtimestamp(stamp, datetime.UTC).isoformat(timespec="seconds")


def run_list(args: argparse.Namespace) -> int:
    try:
        store = _open(args.state)
    except FileProblem as exc:
        eprint(f"error: {exc}")
        return 2
    with store:
        rows = [row for name in store.names() if (row := store.load(name)) is not None]
    if args.json:
        print(json.dumps([_summary(row) for row in rows], indent=2))
        return 0
    if not rows:
        print(f"{args.state}: no sessions")
        return 0
    print(f"{'NAME':<24} {'INSTANCE ID':<24} {'TASK':<36} {'SEQ':>5}  PENDING")
    for row in rows:
        seq = "-" if row.sequence_id is None else str(row.sequence_id)
        pending = row.intent.call if row.intent else "-"
        print(f"{row.name:<24} {row.instance_id:<24} {row.task_id or '-':<36} {seq:>5}  {pending}")
    return 0


def _load(args: argparse.Namespace) -> tuple[SqliteStore, SessionState] | int:
    try:
        store = _open(args.state)
    except FileProblem as exc:
        eprint(f"error: {exc}")
        return 2
    row = store.load(args.name)
    if row is None:
        known = ", ".join(store.names()) or "none"
        store.close()
        eprint(f"error: {args.state} has no session {args.name!r} (sessions: {known})")
        return 1
    return store, row


def run_show(args: argparse.Namespace) -> int:
    loaded = _load(args)
    if isinstance(loaded, int):
        return loaded
    store, row = loaded
    desired = store.load_desired(row.name)
    store.close()
    data = _summary(row)
    data.update(
        desiredHosts=list(desired.hosts) if desired is not None else None,
        desiredSpeaker=desired.speaker if desired is not None else None,
        builderToken="***" if row.builder_token else None,
        tokenAcquiredAt=_when(row.token_acquired_at),
        appliedHash=row.applied_hash,
        intent=_intent(row),
        orphan="a Create whose token is kept to adopt its task" if row.orphan else None,
    )
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        width = max(map(len, data))
        for key, value in data.items():
            shown = "-" if value is None or value == [] else value
            if isinstance(shown, list):
                shown = ",".join(map(str, shown))
            print(f"{key:<{width}}  {shown}")
    return 0


def _intent(row: SessionState) -> str | None:
    intent = row.intent
    if intent is None:
        return None
    seq = f" sequenceId {intent.sequence_id}" if intent.sequence_id is not None else ""
    return f"{intent.call}{seq} sent, outcome not recorded (resumed by the next apply)"


def run_forget(args: argparse.Namespace) -> int:
    loaded = _load(args)
    if isinstance(loaded, int):
        return loaded
    store, row = loaded
    with store:
        store.delete(row.name)
    print(f"state: forgot session {row.name!r} (instanceId {row.instance_id!r})")
    if row.task_id:
        print(
            f"  its task {row.task_id} is still running: it ends by itself idleTimeout seconds "
            "after its hosts leave, or take it back with `layoutsync adopt SPEC --task-id "
            f"{row.task_id}` and its builderToken"
        )
    return 0


def run_mv(args: argparse.Namespace) -> int:
    loaded = _load(args)
    if isinstance(loaded, int):
        return loaded
    store, row = loaded
    with store:
        if store.load(args.new_name) is not None:
            eprint(
                f"error: {args.state} already has a session {args.new_name!r}; "
                f"`layoutsync state forget {args.new_name}` first if it is stale"
            )
            return 1
        desired = store.load_desired(row.name)
        store.save(dataclasses.replace(row, name=args.new_name))
        if desired is not None:  # what callers asked for moves with the row
            store.save_desired(args.new_name, desired)
        store.delete(row.name)  # the row and its desired inputs
    print(f"state: session {row.name!r} is now {args.new_name!r}")
    return 0
