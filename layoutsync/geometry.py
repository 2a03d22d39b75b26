"""The layout geometry under its old name: everything here is ``layoutsync.layout``'s.

The engine grew one module per template (``layoutsync/layout/``); this module keeps
``from layoutsync.geometry import grid_tiles`` and the other names working. New
code imports from ``layoutsync.layout``.
"""

from __future__ import annotations

from .layout import *  # noqa: F403
from .layout import __all__ as __all__
