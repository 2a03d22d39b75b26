"""``layoutsync validate FILE...``: check request bodies (or bare ``transcoder`` objects).

``-`` reads one document from stdin. A layout spec given by mistake (it has
``layout``, ``instanceId``, ``input`` or ``output``, which no request body has)
is recognised and checked as a spec, with the command that shows its body.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from typing import Any

from ..errors import SpecError
from ..spec import load_spec, read_spec_document
from ..validate import TRANSCODER_POINTER, check_request, wrap_transcoder
from ._common import FileProblem, eprint, read_json_file

#: Keys of a layout spec that no request body or bare ``transcoder`` object has.
_SPEC_KEYS = frozenset({"layout", "instanceId", "input", "output"})


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "validate",
        help="check Create/Update bodies against the schema and semantic rules",
        description="Exit 0 when every file is valid, 1 listing every error, "
        "2 when a file is missing or not JSON. A layout spec is recognised and checked as "
        "a spec (use `layoutsync compile` to see the body it makes).",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="a JSON file, or - for stdin")
    parser.set_defaults(handler=run)


def _read(path: str) -> Any:
    if path == "-":
        try:
            return json.loads(sys.stdin.read())
        except json.JSONDecodeError as exc:
            raise FileProblem(
                f"stdin: not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
            ) from None
    if path.lower().endswith(".toml"):
        try:
            return read_spec_document(path)
        except SpecError as exc:
            raise FileProblem(str(exc)) from None
    return read_json_file(path)


def run(args: argparse.Namespace) -> int:
    worst = 0
    for path in args.files:
        try:
            document = _read(path)
        except FileProblem as exc:
            eprint(f"error: {exc}")
            worst = 2
            continue
        shown = "stdin" if path == "-" else path
        if _is_spec(document):
            worst = max(worst, _check_spec(shown, document, path))
            continue
        bare = isinstance(document, Mapping) and "services" not in document
        errors = check_request(wrap_transcoder(document) if bare else document)
        if not errors:
            print(f"{shown}: valid")
            continue
        worst = max(worst, 1)
        print(f"{shown}: {len(errors)} error(s)")
        for error in errors:
            pointer = error.pointer
            if bare and pointer.startswith(TRANSCODER_POINTER):
                pointer = pointer[len(TRANSCODER_POINTER) :] or "/"
            print(f"  {pointer}: {error.message}")
    return worst


def _is_spec(document: Any) -> bool:
    return (
        isinstance(document, Mapping)
        and "services" not in document
        and bool(_SPEC_KEYS & document.keys())
    )


def _check_spec(path: str, document: Mapping[str, Any], given: str) -> int:
    spec_file = "SPEC" if given == "-" else given
    hint = f"`layoutsync compile {spec_file} --hosts 101,102` prints the request body it makes"
    try:
        load_spec(document, source=path)
    except SpecError as exc:
        print(f"{path}: a layout spec, not a request body; {len(exc.errors)} error(s) as a spec")
        for error in exc.errors:
            print(f"  {error.pointer}: {error.message}")
        print(f"  (fix them, then {hint})")
        return 1
    print(f"{path}: a layout spec, not a request body: valid as a spec; {hint}")
    return 0
