"""``layoutsync apply SPEC --hosts ... [--speaker UID] [--state FILE] [--json] [--quiet]``.

Prints the plan, applies it (the fewest calls that make the live transcoder
equal the desired layout), then a one-line summary. Running it again with the
same hosts sends no request that changes anything. Every wait (a back-off, a
202 poll, a Query confirming a 404) prints one line on stderr as it begins,
with a spinner on a terminal. Ctrl-C says what the next run resumes. Exit 1 on
errors, 2 when a file is missing or unreadable, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import json

from ..api.client import Client
from ..spec import load_spec, session_name
from ._common import eprint
from ._progress import Progress, add_quiet, resume_note
from ._session_verbs import (
    add_common,
    command_line,
    load_row,
    open_session,
    result_json,
    result_line,
    setup_logging,
    show_plan,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "apply",
        help="make the live transcoder match SPEC and the hosts (plan, then send)",
        description="Plan, apply and summarise. Credentials and base URL come from "
        "LAYOUTSYNC_BASE_URL, LAYOUTSYNC_APP_ID, LAYOUTSYNC_CUSTOMER_KEY and "
        "LAYOUTSYNC_CUSTOMER_SECRET.",
    )
    add_common(parser)
    parser.add_argument(
        "--json", action="store_true", help="print the plan and result as JSON (default: off)"
    )
    add_quiet(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    setup_logging(args)
    spec = load_spec(args.spec)  # a missing spec is reported before missing credentials
    progress = Progress("apply", quiet=args.quiet, spinner=not args.json)
    again = command_line("apply", args)
    try:
        with Client(on_wait=progress.on_wait, sleep=progress.sleep) as client:
            session = open_session(args, client=client, progress=progress, spec=spec)
            if session is None:
                return 2
            plan = session.plan()
            if not args.json and not args.quiet:
                show_plan(plan, session, as_json=False)
            with progress.working("talking to the Cloud Transcoder"):
                result = session.reconcile()
    except KeyboardInterrupt:
        row = load_row(args.state, session_name(args.spec))
        eprint(f"apply: interrupted; {resume_note(row, again)}")
        return 130
    if args.json:
        print(json.dumps({"plan": plan.as_dict(), "result": result_json(result)}, indent=2))
    else:
        print(result_line("apply", result, again))
    if result.error is not None:
        eprint(f"error: {result.error}")
        return 1
    return 0
