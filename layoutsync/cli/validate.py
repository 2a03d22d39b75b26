"""``layoutsync validate FILE...``: check request bodies (or bare ``transcoder`` objects)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping

from ..validate import TRANSCODER_POINTER, check_request, wrap_transcoder
from ._common import FileProblem, eprint, read_json_file


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "validate",
        help="check Create/Update bodies against the schema and semantic rules",
        description="Exit 0 when every file is valid, 1 listing every error, "
        "2 when a file is missing or not JSON.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    worst = 0
    for path in args.files:
        try:
            document = read_json_file(path)
        except FileProblem as exc:
            eprint(f"error: {exc}")
            worst = 2
            continue
        bare = isinstance(document, Mapping) and "services" not in document
        errors = check_request(wrap_transcoder(document) if bare else document)
        if not errors:
            print(f"{path}: valid")
            continue
        worst = max(worst, 1)
        print(f"{path}: {len(errors)} error(s)")
        for error in errors:
            pointer = error.pointer
            if bare and pointer.startswith(TRANSCODER_POINTER):
                pointer = pointer[len(TRANSCODER_POINTER) :] or "/"
            print(f"  {pointer}: {error.message}")
    return worst
