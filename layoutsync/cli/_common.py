"""Helpers shared by the verbs: reading JSON files, printing errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from ..validate import MAX_UID

__all__ = [
    "FileProblem",
    "UsageProblem",
    "eprint",
    "parse_hosts",
    "parse_uid",
    "read_json_file",
]


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


class UsageProblem(Exception):
    """A flag's value is malformed: the CLI exits 2 with the message."""


def parse_uid(text: str, option: str) -> int:
    value = text.strip()
    if not value.isdigit() or not 1 <= int(value) <= MAX_UID:
        raise UsageProblem(f"{option}: {text!r} is not a host uid (an integer 1..{MAX_UID})")
    return int(value)


def parse_hosts(text: str) -> list[int]:
    """``"101, 102,103"`` -> [101, 102, 103]; an empty string is no hosts."""
    if not text.strip():
        return []
    return [parse_uid(part, "--hosts") for part in text.split(",")]
