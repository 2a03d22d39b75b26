"""Write a ``Scene`` as SVG by hand: no dependency, every string escaped for XML.

Region rectangles are written in canvas pixels inside the transform of their
panel, so ``<rect class="region">`` carries exactly the body's x, y, width and
height. Text carries ``textLength`` (measured with the font the PNG uses), so
a viewer with another font still keeps every label inside its box.
"""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

from ._scene import FONT_FAMILY, Fill, Label, Outline, Polygon, Scene

__all__ = ["write_svg"]

DASH = "6 4"


def _n(value: float) -> str:
    """A number as short as it can be written without losing a hundredth."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _data(pairs: tuple[tuple[str, object], ...]) -> str:
    return "".join(f" data-{key}={quoteattr(str(value))}" for key, value in pairs)


def write_svg(scene: Scene) -> str:
    w, h = scene.width, scene.height
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
        f'viewBox="0 0 {w} {h}" font-family={quoteattr(FONT_FAMILY)}>',
    ]
    if scene.title:
        out.append(f"<title>{escape(scene.title)}</title>")
    out.append(f'<rect class="page" width="{w}" height="{h}" fill="{scene.background}"/>')
    for item in scene.items:
        if isinstance(item, Fill):
            out.append(_fill(item))
        elif isinstance(item, Outline):
            half = item.line / 2
            dash = f' stroke-dasharray="{DASH}"' if item.dash else ""
            out.append(
                f'<rect class="{item.role}" x="{_n(item.x + half)}" y="{_n(item.y + half)}" '
                f'width="{_n(max(0.0, item.width - item.line))}" '
                f'height="{_n(max(0.0, item.height - item.line))}" fill="none" '
                f'stroke="{item.colour}" stroke-width="{_n(item.line)}"{dash}{_data(item.data)}/>'
            )
        elif isinstance(item, Polygon):
            points = " ".join(f"{_n(x)},{_n(y)}" for x, y in item.points)
            out.append(f'<polygon points="{points}" fill="{item.colour}"/>')
        elif isinstance(item, Label):
            weight = ' font-weight="700"' if item.bold else ""
            out.append(
                f'<text class="{item.role}" x="{_n(item.x)}" y="{_n(item.baseline)}" '
                f'font-size="{item.size}"{weight} fill="{item.colour}" '
                f'textLength="{item.width}" lengthAdjust="spacingAndGlyphs">'
                f"{escape(item.text)}</text>"
            )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _fill(item: Fill) -> str:
    extra = f' rx="{_n(item.radius)}"' if item.radius else ""
    if item.opacity < 1:
        extra += f' fill-opacity="{_n(item.opacity)}"'
    rect = (
        f'<rect class="{item.role}" x="{_n(item.x)}" y="{_n(item.y)}" '
        f'width="{_n(item.width)}" height="{_n(item.height)}" fill="{item.colour}"'
        f"{extra}{_data(item.data)}/>"
    )
    panel = item.panel
    if panel is None:
        return rect
    return (
        f'<g data-panel="{panel.index}" transform="translate({_n(panel.ox)} {_n(panel.oy)}) '
        f'scale({panel.scale:.6g})">{rect}</g>'
    )
