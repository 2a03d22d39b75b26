"""Properties of the compiler over generated specs.

Generation is split in two. ``valid_specs(template)`` draws only specs that
``load_spec`` must accept, so every example of every template reaches
``compile_layout`` and the whole-body contract (hundreds per template).
``invalid_specs()`` starts from a valid spec and breaks exactly one rule, and
the ``SpecError`` must name the field that was broken.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from layoutsync.compile import Compiled, compile_layout
from layoutsync.errors import SpecError
from layoutsync.layout import CORNERS, EDGES
from layoutsync.spec import load_spec
from layoutsync.validate import check_request

ENV = {"IN": "input-token"}
TEMPLATES = ("grid", "speaker", "floating", "custom")
VALID = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

#: Keys whose values are pixels wherever they appear in a request body.
PIXEL_KEYS = frozenset({"x", "y", "width", "height"})

even_sizes = st.one_of(
    st.integers(180, 1920).map(lambda n: n * 2),
    st.sampled_from([360, 480, 720, 1080, 1280, 1920, 3840]),
)
any_sizes = st.one_of(st.integers(360, 3840), st.sampled_from([360, 480, 720, 1080, 1280, 1920]))
uids = st.lists(st.integers(1, 80), max_size=60, unique=True)
# The gaps and paddings people use, odd ones included (they are rounded down to even).
small_pixels = st.integers(0, 24)


def pixel_values(value: Any, where: str = "") -> Iterator[tuple[str, Any]]:
    """Every (pointer, value) under a pixel key anywhere in a request body."""
    if isinstance(value, dict):
        for key, item in value.items():
            pointer = f"{where}/{key}"
            if key in PIXEL_KEYS and not isinstance(item, dict | list):
                yield pointer, item
            else:
                yield from pixel_values(item, pointer)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from pixel_values(item, f"{where}/{index}")


@st.composite
def relative_slots(draw: st.DrawFn) -> list[dict[str, Any]]:
    # On a canvas of at least 720 px a fraction of 0.2 is 144 px: above the 120 px minimum.
    slots = []
    for _ in range(draw(st.integers(1, 6))):
        x = draw(st.floats(0, 0.75, allow_nan=False))
        y = draw(st.floats(0, 0.75, allow_nan=False))
        slot: dict[str, Any] = {
            "x": x,
            "y": y,
            "width": draw(st.floats(0.2, 1 - x - 0.01, allow_nan=False)),
            "height": draw(st.floats(0.2, 1 - y - 0.01, allow_nan=False)),
        }
        host = draw(st.one_of(st.none(), st.sampled_from(["next"]), st.integers(1, 80)))
        if host is not None:
            slot["host"] = host
        slots.append(slot)
    # A uid bound to two slots is a SpecError; keep the first binding of each.
    seen: set[int] = set()
    for slot in slots:
        host = slot.get("host")
        if isinstance(host, int):
            if host in seen:
                slot.pop("host")
            seen.add(host)
    if draw(st.booleans()):
        slots[0]["host"] = "speaker"
    return slots


@st.composite
def valid_layouts(draw: st.DrawFn, template: str) -> dict[str, Any]:
    layout: dict[str, Any] = {
        "template": template,
        "gap": draw(small_pixels),
        "padding": draw(small_pixels),
        "aspect": draw(st.sampled_from(["16:9", "4:3", "1:1", "9:16", "21:9", "fill"])),
        "stability": draw(st.sampled_from(["stable", "ordered"])),
        "overflow": draw(st.sampled_from(["audio-only", "drop", "rotate"])),
    }
    if draw(st.booleans()):
        layout["maxTiles"] = draw(st.integers(1, 9))
    pinned = draw(st.lists(st.integers(1, 80), max_size=4, unique=True))
    if pinned:
        layout["pinned"] = pinned
    deny = draw(st.lists(st.integers(1, 80).filter(lambda u: u not in pinned), max_size=4))
    if deny:
        layout["deny"] = sorted(set(deny))
    if template == "grid" and draw(st.booleans()):
        layout["lastRow"] = draw(st.sampled_from(["balanced", "center", "start", "grow"]))
    if template == "speaker":
        layout["position"] = draw(st.sampled_from(["left", "right", "top", "bottom"]))
        layout["stripFraction"] = draw(st.sampled_from([0.3, 0.4, 0.5]))
        layout["stripTiles"] = draw(st.integers(1, 3))
    elif template == "floating":
        layout["corner"] = draw(st.sampled_from([*CORNERS, *EDGES]))
        layout["tileWidth"] = draw(st.integers(120, 240))
        layout["tileHeight"] = draw(st.integers(120, 200))
        layout["margin"] = draw(st.integers(0, 40))
        layout["columns"] = draw(st.integers(1, 2))
        layout["rows"] = draw(st.integers(1, 2))
    elif template == "custom":
        layout["units"] = "relative"
        layout["slots"] = draw(relative_slots())
        if draw(st.booleans()):
            layout["emptySlot"] = draw(st.sampled_from(["next", "blank"]))
        deny_set = set(layout.get("deny", ()))
        for slot in layout["slots"]:
            if slot.get("host") in deny_set:
                slot.pop("host")
    return layout


@st.composite
def valid_specs(draw: st.DrawFn, template: str) -> dict[str, Any]:
    # Big enough for any generated layout: 720..3840, even (a speaker strip of 21:9 or 9:16
    # tiles needs 1440).
    low = 720 if template == "speaker" else 360
    width = draw(st.integers(low, 1920).map(lambda n: n * 2))
    height = draw(st.integers(low, 1920).map(lambda n: n * 2))
    doc: dict[str, Any] = {
        "instanceId": "prop",
        "input": {"channel": "room", "token": "env:IN"},
        "output": {
            "channel": draw(st.sampled_from(["room", "room-live"])),
            "uid": draw(st.sampled_from([9000, 7])),
            "token": "output-token",
            "video": {"width": width, "height": height},
        },
        "placeholderImage": "https://cdn.example.com/offline.png",
        "audio": draw(st.sampled_from(["hosts", "channel", "none"])),
        "layout": draw(valid_layouts(template)),
    }
    if draw(st.booleans()):  # the canvas defaults to the output video size
        doc["canvas"] = {"width": width, "height": height}
    marks = []
    for _ in range(draw(st.integers(0, 2))):
        mark_w = draw(st.integers(60, width // 4).map(lambda n: n * 2))
        mark_h = draw(st.integers(60, height // 4).map(lambda n: n * 2))
        marks.append(
            {
                "imageUrl": "https://cdn.example.com/logo.png",
                "x": draw(st.integers(0, (width - mark_w) // 2).map(lambda n: n * 2)),
                "y": draw(st.integers(0, (height - mark_h) // 2).map(lambda n: n * 2)),
                "width": mark_w,
                "height": mark_h,
            }
        )
    if marks:
        doc["watermarks"] = marks
    return doc


def check_contract(compiled: Compiled, width: int, height: int, template: str) -> None:
    assert set(compiled.visible) | set(compiled.overflowed) == set(compiled.hosts)
    assert not set(compiled.visible) & set(compiled.overflowed)
    assert {p.uid for p in compiled.placements} == set(compiled.visible)
    for p in compiled.placements:
        assert all(v % 2 == 0 for v in (p.x, p.y, p.width, p.height))
        assert 120 <= p.width <= 3840 and 120 <= p.height <= 3840
        assert p.rect.inside(width, height)
        assert 0 <= p.z_order <= 100
    if template in ("grid", "speaker"):
        for a, b in itertools.combinations(compiled.placements, 2):
            assert not a.rect.overlaps(b.rect)
    if template == "floating":  # overlays cover the main tile, never each other
        for a, b in itertools.combinations(compiled.placements[1:], 2):
            assert not a.rect.overlaps(b.rect)
    if compiled.body is None:
        assert not compiled.visible
    else:
        assert check_request(compiled.body) == ()
        check_even_body(compiled.body)


def check_even_body(body: dict[str, Any]) -> None:
    """Every pixel value of the body, wherever it is, is an even integer."""
    found = list(pixel_values(body))
    transcoder = body["services"]["cloudTranscoder"]["config"]["transcoder"]
    assert "/services/cloudTranscoder/config/transcoder/canvas/width" in dict(found)
    if "waterMarks" in transcoder:
        assert any("/waterMarks/" in pointer for pointer, _ in found)
    odd = [(p, v) for p, v in found if not (isinstance(v, int) and v % 2 == 0)]
    assert odd == []


class TestValidSpecs:
    """Specs drawn to be valid: each one loads, compiles, and gives a valid, even body."""

    @pytest.mark.parametrize("template", TEMPLATES)
    def test_every_valid_spec_compiles_to_a_valid_even_body(self, template: str) -> None:
        @VALID
        @given(
            doc=valid_specs(template),
            hosts=uids,
            speaker=st.one_of(st.none(), st.integers(1, 80)),
        )
        def run(doc: dict[str, Any], hosts: list[int], speaker: int | None) -> None:
            spec = load_spec(doc)  # no SpecError: the generator only draws valid specs
            compiled = compile_layout(spec, hosts, speaker=speaker, env=ENV)
            check_contract(compiled, spec.canvas.width, spec.canvas.height, template)
            assert spec.canvas.width == doc["output"]["video"]["width"]

        run()

    @pytest.mark.parametrize("template", TEMPLATES)
    def test_recompiling_with_previous_stays_valid(self, template: str) -> None:
        @SETTINGS
        @given(
            doc=valid_specs(template),
            steps=st.lists(st.tuples(uids, st.integers(0, 60)), min_size=2, max_size=5),
        )
        def run(doc: dict[str, Any], steps: list[tuple[list[int], int]]) -> None:
            spec = load_spec(doc)
            previous = None
            for hosts, pick in steps:
                speaker = hosts[pick % len(hosts)] if hosts and pick else None
                compiled = compile_layout(spec, hosts, speaker, previous, env=ENV)
                check_contract(compiled, spec.canvas.width, spec.canvas.height, template)
                rotates = spec.layout.overflow == "rotate" and template != "custom"
                # Pinned hosts come first: when they hold every tile, the speaker waits.
                all_pinned = set(compiled.visible) <= set(spec.layout.pinned)
                if rotates and compiled.speaker is not None and not all_pinned:
                    assert compiled.speaker in compiled.visible
                previous = compiled

        run()


# --- invalid specs: one broken rule, named in the error --------------------------------------


def _odd(value: int) -> int:
    return value + 1 if value % 2 == 0 else value


def _break_video_width(doc: dict[str, Any]) -> str:
    doc["output"]["video"]["width"] = _odd(doc["output"]["video"]["width"] - 2)
    doc.pop("canvas", None)  # the canvas defaults to this odd size
    return "/output/video/width"


def _break_video_height(doc: dict[str, Any]) -> str:
    doc["output"]["video"]["height"] = _odd(doc["output"]["video"]["height"] - 2)
    doc.pop("canvas", None)
    return "/output/video/height"


def _break_canvas(doc: dict[str, Any]) -> str:
    video = doc["output"]["video"]
    doc["canvas"] = {"width": video["width"], "height": _odd(video["height"] - 2)}
    return "/canvas/height"


def _break_watermark(key: str):  # type: ignore[no-untyped-def]
    def breaks(doc: dict[str, Any]) -> str:
        mark = {"imageUrl": "https://cdn.example.com/logo.png", "x": 2, "y": 2}
        mark |= {"width": 160, "height": 120}
        mark[key] = _odd(mark[key])
        doc["watermarks"] = [mark]
        return f"/watermarks/0/{key}"

    return breaks


def _break_pinned(doc: dict[str, Any]) -> str:
    doc["layout"]["pinned"] = [5]
    doc["layout"]["deny"] = [5]
    for slot in doc["layout"].get("slots", ()):
        slot.pop("host", None)
    return "/layout/pinned/0"


def _break_padding(doc: dict[str, Any]) -> str:
    doc["layout"]["padding"] = 4000
    return "/layout/padding"


def _break_unknown_key(doc: dict[str, Any]) -> str:
    doc["output"]["video"]["widht"] = 1280
    return "/output/video/widht"


BREAKERS = {
    "odd video width": _break_video_width,
    "odd video height": _break_video_height,
    "odd canvas": _break_canvas,
    "odd watermark x": _break_watermark("x"),
    "odd watermark y": _break_watermark("y"),
    "odd watermark width": _break_watermark("width"),
    "odd watermark height": _break_watermark("height"),
    "pinned and denied": _break_pinned,
    "absurd padding": _break_padding,
    "misspelt key": _break_unknown_key,
}


@SETTINGS
@given(
    template=st.sampled_from(TEMPLATES),
    data=st.data(),
    broken=st.sampled_from(sorted(BREAKERS)),
)
def test_one_broken_rule_is_a_spec_error_naming_its_field(
    template: str, data: st.DataObject, broken: str
) -> None:
    doc = data.draw(valid_specs(template))
    doc.pop("watermarks", None)
    pointer = BREAKERS[broken](doc)
    with pytest.raises(SpecError) as caught:
        load_spec(doc)
    pointers = [e.pointer for e in caught.value.errors]
    assert pointer in pointers
    assert all(e.message for e in caught.value.errors)


@pytest.mark.parametrize(
    ("where", "change", "message"),
    [
        ("/output/video/width", {"output.video.width": 1281}, "1281 is odd"),
        ("/canvas/height", {"canvas.height": 721}, "721 is odd"),
        ("/watermarks/0/x", {"watermarks.0.x": 1}, "1 is odd"),
        ("/watermarks/0/height", {"watermarks.0.height": 125}, "125 is odd"),
    ],
)
def test_an_odd_pixel_is_rejected_with_the_field_and_the_even_neighbours(
    where: str, change: dict[str, int], message: str
) -> None:
    doc: dict[str, Any] = {
        "instanceId": "odd",
        "input": {"channel": "room", "token": "t"},
        "output": {"channel": "out", "uid": 1, "token": "t", "video": {"width": 1280}},
        "canvas": {"width": 1280, "height": 720},
        "placeholderImage": "https://cdn.example.com/offline.png",
        "watermarks": [
            {"imageUrl": "https://cdn.example.com/l.png", "x": 2, "y": 4, "width": 122}
            | {"height": 124}
        ],
    }
    doc["output"]["video"]["height"] = 720
    for dotted, value in change.items():
        target: Any = doc
        *parents, last = dotted.split(".")
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        target[last] = value
    with pytest.raises(SpecError) as caught:
        load_spec(doc)
    (error,) = caught.value.errors
    assert error.pointer == where
    value = next(iter(change.values()))
    assert error.message == (
        f"{message}; pixels are sent as even integers (use {value - 1} or {value + 1})"
    )


@SETTINGS
@given(doc_size=st.tuples(any_sizes, any_sizes), hosts=uids)
def test_any_canvas_size_is_an_even_body_or_a_spec_error(
    doc_size: tuple[int, int], hosts: list[int]
) -> None:
    width, height = doc_size
    doc = {
        "instanceId": "any",
        "input": {"channel": "room", "token": "t"},
        "output": {"channel": "out", "uid": 1, "token": "t"}
        | {"video": {"width": width, "height": height}},
        "placeholderImage": "https://cdn.example.com/offline.png",
    }
    try:
        spec = load_spec(doc)
    except SpecError as exc:
        assert width % 2 or height % 2
        odd = {f"/output/video/{k}" for k, v in (("width", width), ("height", height)) if v % 2}
        assert {e.pointer for e in exc.errors} == odd
        return
    compiled = compile_layout(spec, hosts)
    if compiled.body is not None:
        check_even_body(compiled.body)


@settings(max_examples=60, deadline=None)
@given(width=even_sizes, height=even_sizes, gap=small_pixels, padding=small_pixels)
def test_a_full_grid_reaches_capacity(width: int, height: int, gap: int, padding: int) -> None:
    doc = {
        "instanceId": "cap",
        "input": {"channel": "room", "token": "t"},
        "output": {
            "channel": "out",
            "uid": 1,
            "token": "t",
            "video": {"width": width, "height": height},
        },
        "placeholderImage": "https://cdn.example.com/offline.png",
        "layout": {"gap": gap, "padding": padding},
    }
    spec = load_spec(doc)
    hosts = list(range(1, min(spec.capacity, 1024) + 2))
    compiled = compile_layout(spec, hosts)
    assert len(compiled.visible) == spec.capacity
    assert len(compiled.overflowed) == 1
