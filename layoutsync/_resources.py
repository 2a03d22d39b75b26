"""Load the JSON Schemas that ship with the package.

In a wheel they live in ``layoutsync/schemas/`` (force-included from the
top-level ``schemas/``); in a source checkout they are read from there.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path
from typing import Any

__all__ = ["load_schema", "schema_dir"]


def schema_dir() -> Traversable:
    packaged = resources.files("layoutsync").joinpath("schemas")
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "schemas"


@functools.cache
def load_schema(name: str) -> dict[str, Any]:
    """The parsed schema ``schemas/<name>.schema.json`` (read once per process)."""
    text = schema_dir().joinpath(f"{name}.schema.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema
