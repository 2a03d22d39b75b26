"""``layoutsync destroy SPEC [--state FILE] [--quiet]``: Delete SPEC's task, forget its state.

A call whose outcome was never recorded (a crash, a lost answer) is resolved
first, so no task is left behind. A task that was already gone (idleTimeout,
or deleted elsewhere) is reported as such. Exit 1 on errors, 2 when a file is
missing or unreadable, 130 when interrupted.
"""

from __future__ import annotations

import argparse

from ..api.client import Client
from ..spec import load_spec, session_name
from ._common import eprint
from ._progress import Progress, add_quiet, resume_note
from ._session_verbs import (
    add_common,
    command_line,
    has_state,
    load_row,
    open_session,
    result_line,
    setup_logging,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "destroy",
        help="Delete the transcoder task of SPEC and forget its state",
        description="Delete the live task (if any) recorded in the state file for SPEC's "
        "session (the file's stem) and remove its row. Credentials as for apply.",
    )
    add_common(parser, hosts=False)
    add_quiet(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    setup_logging(args)
    spec = load_spec(args.spec)
    name = session_name(args.spec)
    if not has_state(args, spec):
        print(f"destroy: nothing to destroy; {args.state} knows no session {name!r}")
        return 0
    progress = Progress("destroy", quiet=args.quiet)
    again = command_line("destroy", args)
    try:
        with Client(on_wait=progress.on_wait, sleep=progress.sleep) as client:
            session = open_session(args, client=client, progress=progress, spec=spec)
            assert session is not None
            with progress.working("deleting the task"):
                result = session.destroy()
    except KeyboardInterrupt:
        eprint(f"destroy: interrupted; {resume_note(load_row(args.state, name), again)}")
        return 130
    if result.error is None and result.action == "noop" and result.plan and result.plan.task_id:
        print(
            f"destroy: task {result.plan.task_id} was already gone (ended by idleTimeout or "
            f"deleted elsewhere); forgot session {name!r}; calls sent: {', '.join(result.calls)}"
        )
        return 0
    print(result_line("destroy", result, again))
    if result.error is not None:
        eprint(f"error: {result.error}")
        return 1
    return 0
