"""The layout geometry, kept under its old name: see ``layoutsync.layout``.

Everything here is re-exported from the ``layoutsync.layout`` package, which has
one module per template over shared rules; new code imports from there.
"""

from __future__ import annotations

from .layout import (
    FILL_RANGE,
    MAX_REGION,
    MIN_TILE,
    Aspect,
    Box,
    FloatingFrames,
    GridShape,
    Rect,
    SpeakerFrames,
    best_fit,
    even,
    fit,
    floating_frames,
    grid_capacity,
    grid_shape,
    grid_tiles,
    inner_area,
    parse_aspect,
    speaker_frames,
)

__all__ = [
    "FILL_RANGE",
    "MAX_REGION",
    "MIN_TILE",
    "Aspect",
    "Box",
    "FloatingFrames",
    "GridShape",
    "Rect",
    "SpeakerFrames",
    "best_fit",
    "even",
    "fit",
    "floating_frames",
    "grid_capacity",
    "grid_shape",
    "grid_tiles",
    "inner_area",
    "parse_aspect",
    "speaker_frames",
]
