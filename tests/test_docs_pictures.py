"""The README's pictures are what the code draws now: each committed docs/ picture is drawn
again by its ``layoutsync preview`` command and compared (SVG exactly, PNG pixel by pixel
with a little room for font rasterisers that differ between FreeType versions)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image, ImageChops

from layoutsync.preview.docs import DOC_PICTURES, draw

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
REGENERATE = "python -m layoutsync.preview --write-docs docs/"


def _drawn(name: str, suffix: str, tmp_path: Path) -> tuple[Path, Path]:
    """(the committed picture, the same drawn now)."""
    committed = DOCS / f"{name}{suffix}"
    assert committed.exists(), f"{committed} is missing: run `{REGENERATE}` and commit docs/"
    fresh = tmp_path / f"{name}{suffix}"
    draw(name, fresh, ROOT)
    return committed, fresh


@pytest.mark.parametrize("name", sorted(DOC_PICTURES))
def test_committed_svg_is_what_the_code_draws(name: str, tmp_path: Path) -> None:
    committed, fresh = _drawn(name, ".svg", tmp_path)
    assert fresh.read_text(encoding="utf-8") == committed.read_text(encoding="utf-8"), (
        f"docs/{name}.svg no longer matches what the code draws: run `{REGENERATE}` "
        "from the repository root and commit docs/"
    )


@pytest.mark.parametrize("name", sorted(DOC_PICTURES))
def test_committed_png_is_what_the_code_draws(name: str, tmp_path: Path) -> None:
    committed, fresh = _drawn(name, ".png", tmp_path)
    if fresh.read_bytes() == committed.read_bytes():
        return
    old = Image.open(io.BytesIO(committed.read_bytes())).convert("RGB")
    new = Image.open(io.BytesIO(fresh.read_bytes())).convert("RGB")
    message = f"docs/{name}.png no longer matches what the code draws: run `{REGENERATE}`"
    assert old.size == new.size, f"{message} (size {old.size} -> {new.size})"
    differ = ImageChops.difference(old, new).convert("L").point(lambda v: 255 if v > 48 else 0)
    changed = sum(differ.histogram()[255:]) / (old.width * old.height)
    assert changed < 0.003, f"{message} ({changed:.2%} of the pixels differ)"


def test_readme_shows_every_picture() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for name in DOC_PICTURES:
        assert f"docs/{name}.png" in readme, f"README.md does not show docs/{name}.png"
