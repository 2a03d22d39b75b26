"""The layout engine: where tiles go on a canvas, with no hosts, no spec and no I/O.

One module per template over the shared rules of ``base`` (rectangles, aspects, the
even-pixel rounding), plus ``opentok``, a faithful port of opentok-layout-js's best
fit that the grid is measured against. ``layoutsync.compile`` gives hosts to these
regions and turns them into a request body.
"""

from __future__ import annotations

from .base import (
    ASPECT_TOLERANCE,
    FILL_RANGE,
    MAX_REGION,
    MIN_TILE,
    Aspect,
    Rect,
    even,
    fit,
    inner_area,
    parse_aspect,
    round_even,
)
from .custom import DEFAULT_EMPTY_SLOT, EMPTY_SLOT_POLICIES, slot_rect
from .floating import CORNERS, EDGES, FloatingFrames, floating_frames
from .grid import (
    DEFAULT_LAST_ROW,
    LAST_ROWS,
    GridShape,
    grid_capacity,
    grid_shape,
    grid_tiles,
    row_lengths,
)
from .opentok import Box, best_fit
from .speaker import DOMINANCE, SpeakerFrames, speaker_frames

__all__ = [
    "ASPECT_TOLERANCE",
    "CORNERS",
    "DEFAULT_EMPTY_SLOT",
    "DEFAULT_LAST_ROW",
    "DOMINANCE",
    "EDGES",
    "EMPTY_SLOT_POLICIES",
    "FILL_RANGE",
    "LAST_ROWS",
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
    "round_even",
    "row_lengths",
    "slot_rect",
    "speaker_frames",
]
