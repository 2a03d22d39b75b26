"""Helpers shared by the verbs: reading JSON files, printing errors."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..validate import MAX_UID

__all__ = [
    "FileProblem",
    "HelpFormatter",
    "UsageProblem",
    "eprint",
    "number",
    "parse_hosts",
    "parse_uid",
    "port_number",
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


def number(
    *, minimum: float, above: bool = False, maximum: float | None = None, whole: bool = False
) -> Callable[[str], float]:
    """An argparse ``type`` for a number in range, whose message says what is allowed."""

    def convert(text: str) -> float:
        try:
            value: float = int(text) if whole else float(text)
        except ValueError:
            value = math.nan
        low_ok = value > minimum if above else value >= minimum
        high_ok = maximum is None or value <= maximum
        if not (math.isfinite(value) and low_ok and high_ok):
            kind = "a whole number" if whole else "a number"
            low = f"above {minimum:g}" if above else f"{minimum:g} or more"
            wanted = f"{kind} {low}"
            if maximum is not None:
                wanted = f"{kind} from {minimum:g} to {maximum:g}"
            raise argparse.ArgumentTypeError(f"{text!r} is not allowed: give {wanted}")
        return value

    return convert


def port_number(text: str) -> int:
    """An argparse ``type`` for a TCP port: 0 (pick a free one) to 65535."""
    value = text.strip()
    if not value.isdigit() or int(value) > 65535:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a port: give a number from 0 to 65535 (0 picks a free one)"
        )
    return int(value)


class HelpFormatter(argparse.HelpFormatter):
    """Every flag's help says its default: the value, "off", "none" or "required"."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if (
            not action.option_strings
            or action.default is argparse.SUPPRESS
            or "default" in text
            or "required" in text
        ):
            return text
        if action.required:
            return f"{text} (required)"
        if isinstance(action, argparse._StoreTrueAction):
            return f"{text} (default: off)"
        if isinstance(action, argparse._StoreFalseAction):
            return f"{text} (default: on)"
        if action.default is None or action.default == []:
            return f"{text} (default: none)"
        return f"{text} (default: %(default)s)"
