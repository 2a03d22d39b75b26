"""``layoutsync compile SPEC --hosts 101,102 [--speaker UID] [--out FILE] [--show-secrets]``.

Prints the full Create/Update request body (tokens as ``***`` unless
``--show-secrets``, in the file written by ``--out`` too) and a one-line summary
on stderr. Exit 0 on success, 1 with the SpecError text on a bad spec, 2 when the
spec file is missing or unparseable or ``--hosts``/``--speaker`` is not a uid list.
"""

from __future__ import annotations

import argparse
import json
import os

from ..compile import Compiled, compile_layout
from ..redact import MASK
from ..spec import SpecFileError, load_spec
from ._common import UsageProblem, eprint, parse_hosts, parse_uid
from ._session_verbs import note_hosts, note_spec


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compile",
        help="compile a layout spec and a host list into a request body",
        description="Print the Create/Update body for SPEC with the given hosts. Exit 1 on a bad "
        "spec, 2 when the file is missing or not JSON/TOML or --hosts is not a uid list.",
    )
    parser.add_argument("spec", metavar="SPEC", help="layout spec file (.json or .toml)")
    parser.add_argument(
        "--hosts",
        required=True,
        metavar="UIDS",
        help="comma-separated host uids in join order, e.g. 101,102,103 ('' for none)",
    )
    parser.add_argument("--speaker", metavar="UID", help="the active speaker's uid")
    parser.add_argument("--out", metavar="FILE", help="write the body to FILE instead of stdout")
    parser.add_argument(
        "--show-secrets",
        action="store_true",
        help="print tokens as they are (default: ***)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        hosts = parse_hosts(args.hosts)
        speaker = None if args.speaker is None else parse_uid(args.speaker, "--speaker")
    except UsageProblem as exc:
        eprint(f"error: {exc}")
        return 2
    try:
        spec = load_spec(args.spec)
    except SpecFileError as exc:
        eprint(f"error: {exc}")
        return 2
    note_hosts(hosts, speaker, args.hosts)
    note_spec(spec)
    # Minted tokens (spec ``tokens``) are minted only to be shown: the certificate is not
    # needed to print a body whose tokens are masked anyway.
    masked = (MASK, MASK) if spec.token_settings is not None and not args.show_secrets else None
    compiled = compile_layout(spec, hosts, speaker=speaker, tokens=masked)
    body = compiled.body if args.show_secrets else compiled.redacted_body()
    text = json.dumps(body, indent=2) + "\n"
    if args.out:
        try:
            _write(args.out, text, private=args.show_secrets)
        except OSError as exc:
            eprint(f"error: cannot write {args.out}: {exc}")
            return 2
    else:
        print(text, end="")
    eprint(_summary(compiled, args.out))
    return 0


def _write(path: str, text: str, *, private: bool) -> None:
    """Write ``path``; with the tokens in it, readable by the owner only (0600), as the
    state file is, even when the file existed with a wider mode."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    fd = os.open(path, flags, 0o600 if private else 0o666)
    if private:
        os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)


def _summary(compiled: Compiled, out: str | None) -> str:
    if compiled.empty:
        return "no task needed: no visible host and nothing to hear (body is null)"
    parts = [f"visible {_uids(compiled.visible)}"]
    if compiled.overflowed:
        parts.append(f"overflowed {_uids(compiled.overflowed)}")
    parts.append(f"audio {_uids(compiled.audio)}")
    if out:
        parts.append(f"written to {out}")
    return "; ".join(parts)


def _uids(uids: tuple[int, ...]) -> str:
    return ",".join(map(str, uids)) or "none"
