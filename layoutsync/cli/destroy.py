"""``layoutsync destroy SPEC [--state FILE]``: Delete SPEC's transcoder task, forget its state.

A call whose outcome was never recorded (a crash, a lost answer) is resolved
first, so no task is left behind. Exit 1 on errors.
"""

from __future__ import annotations

import argparse

from ..api.client import Client
from ..spec import load_spec
from ._common import eprint
from ._session_verbs import add_common, has_state, open_session, result_line, setup_logging


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "destroy",
        help="Delete the transcoder task of SPEC and forget its state",
        description="Delete the live task (if any) recorded in the state file for SPEC's "
        "instanceId and remove its row. Credentials as for apply.",
    )
    add_common(parser, hosts=False)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    setup_logging(args)
    spec = load_spec(args.spec)
    if not has_state(args, spec):
        print(f"destroy: nothing to destroy; {args.state} knows no session {spec.instance_id!r}")
        return 0
    with Client() as client:
        session = open_session(args, client=client)
        assert session is not None
        result = session.destroy()
    print(result_line("destroy", result))
    if result.error is not None:
        eprint(f"error: {result.error}")
        return 1
    return 0
