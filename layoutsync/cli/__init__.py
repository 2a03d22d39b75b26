"""The ``layoutsync`` command. Each verb lives in its own module of this package.

A verb module defines ``register(subparsers)``, which adds its parser and
sets ``handler`` to a function ``(args) -> int`` (the exit code). Errors of
the ``LayoutsyncError`` tree become a message, never a traceback.

Exit codes, the same for every verb:

- 0: done (``plan --detailed-exitcode``: no changes);
- 1: an error: invalid content, the service refused, a state conflict;
- 2: a usage error: a bad flag, or a file that is missing, unreadable or not
  JSON/TOML (``plan --detailed-exitcode`` uses 2 for "changes", so there a
  usage error is 1);
- 130: interrupted (Ctrl-C); 141: the reader of stdout went away (``| head``).
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence
from typing import Any

from ..errors import LayoutsyncError
from ..spec import SpecFileError
from ._common import HelpFormatter

#: Exit codes (see the module docstring).
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141


class _Parser(argparse.ArgumentParser):
    """argparse with ``HelpFormatter`` for the command and each verb."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def _usage_code(argv: Sequence[str]) -> int:
    return EXIT_ERROR if "--detailed-exitcode" in argv else EXIT_USAGE


__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = _Parser(
        prog="layoutsync",
        description="Declarative multi-host layouts for Agora's Cloud Transcoder.",
    )
    parser.add_argument("--version", action="version", version=f"layoutsync {__version__}")
    subparsers = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    subparsers.required = True
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if module.name.startswith("_"):
            continue
        importlib.import_module(f"{__name__}.{module.name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        code = exc.code if isinstance(exc.code, int) else EXIT_USAGE
        return _usage_code(argv) if code == EXIT_USAGE else code
    try:
        code = args.handler(args)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
    except SpecFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return _usage_code(argv)
    except LayoutsyncError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader (``| head``) has what it wanted: stop quietly, and point stdout at
        # /dev/null so the interpreter's last flush cannot fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_BROKEN_PIPE
    return int(code)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
