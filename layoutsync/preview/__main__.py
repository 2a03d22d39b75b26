"""``python -m layoutsync.preview --write-docs docs/``: draw the README's pictures again."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .docs import write_docs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m layoutsync.preview", description=__doc__)
    parser.add_argument(
        "--write-docs", required=True, metavar="DIR", help="where to write (docs/ in the repo)"
    )
    parser.add_argument(
        "--root", default=".", metavar="DIR", help="the repository root (holds examples/)"
    )
    args = parser.parse_args(argv)
    for path in write_docs(Path(args.write_docs), Path(args.root)):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
