"""``layoutsync plan SPEC --hosts ... [--speaker UID] [--state FILE] [--json]
[--detailed-exitcode]``.

Shows what ``apply`` would send, like ``terraform plan``: no request is made
and the state file is not written (nor created). With ``--detailed-exitcode``:
0 no changes, 2 changes, 1 error (a usage error too: 2 means changes).
"""

from __future__ import annotations

import argparse

from ._session_verbs import add_common, open_session, setup_logging, show_plan
from .preview import write_plan_preview


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "plan",
        help="show what apply would send for SPEC and the hosts (no request is made)",
        description="Compare the desired layout with the last applied one (from the state "
        "file) and print the plan: + added, - removed, ~ changed, '# forces replacement'. "
        "Tokens are always shown as ***. Exit 1 on errors; with --detailed-exitcode, "
        "0 when there are no changes and 2 when there are.",
    )
    add_common(parser)
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    parser.add_argument(
        "--detailed-exitcode",
        action="store_true",
        help="exit 0 for no changes, 2 for changes, 1 for errors and usage errors "
        "(default: off: 0 or 1)",
    )
    parser.add_argument(
        "--preview",
        metavar="FILE",
        help="also draw before -> after (live as last applied, desired) to FILE (.png or .svg)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    setup_logging(args)
    session = open_session(args, create_state=False)
    if session is None:
        return 1 if args.detailed_exitcode else 2
    plan = session.plan()
    show_plan(plan, session, as_json=args.json)
    if args.preview and write_plan_preview(args.preview, session, plan):
        return 1
    return 2 if args.detailed_exitcode and plan.changed else 0
