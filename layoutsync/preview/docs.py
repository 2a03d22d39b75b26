"""The README's pictures: each is one ``layoutsync preview`` command line, drawn as SVG and PNG.

``python -m layoutsync.preview --write-docs docs/`` (from the repository root) draws them
all again; ``tests/test_docs_pictures.py`` fails when a committed one differs from what
the code draws now.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

__all__ = ["DOC_PICTURES", "write_docs"]

#: picture name (in docs/) -> ``layoutsync preview`` arguments, without ``--out``.
DOC_PICTURES: dict[str, tuple[str, ...]] = {
    "sheet": (
        "examples/grid.json",
        "examples/speaker.json",
        "--sheet",
        "6",
        "--speaker",
        "102",
    ),
    "template-grid": ("examples/grid.json", "--hosts", "101,102,103,104,105", "--speaker", "102"),
    "template-speaker": (
        "examples/speaker.json",
        "--hosts",
        "101,102,103,104,105",
        "--speaker",
        "102",
    ),
    "template-floating": (
        "examples/floating.json",
        "--hosts",
        "101,102,103,104,105",
        "--speaker",
        "102",
    ),
    "template-custom": (
        "examples/custom.json",
        "--hosts",
        "101,102,103,104,105",
        "--speaker",
        "102",
    ),
}


def draw(name: str, out: Path, root: Path = Path()) -> None:
    """Run the picture's ``layoutsync preview`` command, writing ``out`` (.svg or .png)."""
    from ..cli import main

    args = [str(root / a) if a.startswith("examples/") else a for a in DOC_PICTURES[name]]
    with contextlib.redirect_stderr(io.StringIO()) as said:
        code = main(["preview", *args, "--out", str(out)])
    if code != 0:
        raise RuntimeError(f"layoutsync preview {' '.join(args)} failed: {said.getvalue()}")


def write_docs(directory: Path, root: Path = Path()) -> list[Path]:
    """Draw every picture into ``directory`` as NAME.svg and NAME.png; returns the files."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name in DOC_PICTURES:
        for suffix in (".svg", ".png"):
            target = directory / f"{name}{suffix}"
            draw(name, target, root)
            written.append(target)
    return written
