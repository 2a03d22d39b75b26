"""``layoutsync adopt SPEC --task-id ID [--state FILE]``: take over a live task.

For a task that no state row controls (a lost or corrupted state file, a task
made by another tool): the builderToken that made it is read from
``$LAYOUTSYNC_BUILDER_TOKEN`` or, without it, from stdin (never from a flag,
which would land in shell history and ``ps``). The task is Queried with that
token, which proves the token belongs to it and that it is still running; the
row is then written for SPEC's session (the file's stem), and the next
``layoutsync apply`` sends the full desired config as an Update. Exit 1 when
the task cannot be adopted, 2 on a usage problem.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import time

from ..api.client import Client
from ..api.models import Task
from ..errors import LayoutsyncError, TaskNotFound
from ..spec import load_spec, session_name
from ..store import SessionState, SqliteStore
from ._common import eprint
from ._progress import Progress
from ._session_verbs import add_common, setup_logging

ENV_BUILDER_TOKEN = "LAYOUTSYNC_BUILDER_TOKEN"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "adopt",
        help="take over a live task of SPEC's instanceId with its builderToken",
        description="Record a live task in the state file so that apply and destroy control "
        f"it. The builderToken comes from ${ENV_BUILDER_TOKEN} or stdin, never a flag. "
        "Credentials as for apply.",
    )
    add_common(parser, hosts=False)
    parser.add_argument("--task-id", required=True, metavar="ID", help="the live task's taskId")
    parser.set_defaults(handler=run)


def _read_token() -> str | None:
    token = os.environ.get(ENV_BUILDER_TOKEN, "").strip()
    if token:
        return token
    if sys.stdin.isatty():
        return getpass.getpass("builderToken of the task (not echoed): ").strip() or None
    return sys.stdin.readline().strip() or None


def run(args: argparse.Namespace) -> int:
    setup_logging(args)
    spec = load_spec(args.spec)
    name = session_name(args.spec)
    token = _read_token()
    if not token:
        eprint(
            f"error: no builderToken: set {ENV_BUILDER_TOKEN} or pipe the token on stdin "
            f'(echo "$TOKEN" | layoutsync adopt {args.spec} --task-id {args.task_id})'
        )
        return 2
    progress = Progress("adopt")
    with Client(on_wait=progress.on_wait, sleep=progress.sleep) as client:
        try:
            with progress.working(f"asking for task {args.task_id}"):
                task = client.query(args.task_id, token, confirm_missing=False)
        except TaskNotFound:
            eprint(
                f"error: task {args.task_id} was not found with that builderToken: it has "
                "ended, or the token is not the one that made it"
            )
            return 1
        except LayoutsyncError as exc:
            eprint(f"error: cannot Query task {args.task_id}: {exc}")
            return 1
    if not isinstance(task, Task):
        eprint(f"error: task {args.task_id}: Query answered 202 (not settled); try again shortly")
        return 1
    if task.ended:
        eprint(f"error: task {args.task_id} has ended; `layoutsync apply` creates a new one")
        return 1
    store = SqliteStore(args.state)
    with store:
        current = store.load(name)
        if current is not None and current.task_id:
            eprint(
                f"error: session {name!r} of {args.state} already drives task {current.task_id}; "
                f"`layoutsync destroy {args.spec}` or `layoutsync state forget {name}` first"
            )
            return 1
        # The last sequenceId the task saw, else one above any counter that started at 0
        # (seconds since 1970): an Update below it would be ignored by the service.
        sequence = task.sequence_id if task.sequence_id is not None else int(time.time())
        store.save(
            SessionState(
                name=name,
                instance_id=spec.instance_id,
                builder_token=token,
                token_acquired_at=0.0,  # its age is unknown: never used for a Create
                task_id=task.task_id,
                sequence_id=sequence,
                updated_at=time.time(),
            )
        )
    print(
        f"adopt: session {name!r} now drives task {task.task_id} (status {task.status}); "
        f"the next `layoutsync apply {args.spec} --hosts ...` sends the full config as an "
        f"Update with sequenceId {sequence + 1}"
    )
    return 0
