"""``layoutsync apply SPEC --hosts ... [--speaker UID] [--state FILE] [--json]``.

Prints the plan, applies it (the fewest calls that make the live transcoder
equal the desired layout), then a one-line summary. Running it again with the
same hosts sends no request that changes anything. Exit 1 on errors.
"""

from __future__ import annotations

import argparse
import json

from ..api.client import Client
from ._common import eprint
from ._session_verbs import (
    add_common,
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
    parser.add_argument("--json", action="store_true", help="print the plan and result as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    setup_logging(args)
    with Client() as client:
        session = open_session(args, client=client)
        if session is None:
            return 1
        plan = session.plan()
        if not args.json:
            show_plan(plan, session, as_json=False)
        result = session.reconcile()
    if args.json:
        print(json.dumps({"plan": plan.as_dict(), "result": result_json(result)}, indent=2))
    else:
        print(result_line("apply", result))
    if result.error is not None:
        eprint(f"error: {result.error}")
        return 1
    return 0
