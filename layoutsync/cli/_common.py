"""Helpers shared by the verbs: reading JSON files, printing errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["FileProblem", "eprint", "read_json_file"]


class FileProblem(Exception):
    """A file is missing or not JSON: the CLI exits 2 (usage), not 1 (invalid content)."""


def read_json_file(path: str) -> Any:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileProblem(f"{path}: no such file") from None
    except IsADirectoryError:
        raise FileProblem(f"{path}: is a directory, not a JSON file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FileProblem(f"{path}: cannot read: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise FileProblem(
            f"{path}: not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None


def eprint(*parts: object) -> None:
    print(*parts, file=sys.stderr)
