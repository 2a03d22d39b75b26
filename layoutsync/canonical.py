"""Canonical JSON bytes and hashes: equal configs hash equal, whatever their key order."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

__all__ = ["canonical_bytes", "canonical_hash"]

_OPTIONS = orjson.OPT_SORT_KEYS


def canonical_bytes(value: Any) -> bytes:
    """Compact JSON with sorted keys: the form that is hashed, stored and compared."""
    return orjson.dumps(value, option=_OPTIONS)


def canonical_hash(value: Any) -> str:
    """A short, stable fingerprint of a JSON value (BLAKE2b, 128 bits, hex)."""
    return hashlib.blake2b(canonical_bytes(value), digest_size=16).hexdigest()
