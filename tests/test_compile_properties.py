"""Any canvas, any hosts, any gap and padding, every template: a valid body or a SpecError."""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from layoutsync.compile import Compiled, compile_layout
from layoutsync.errors import SpecError
from layoutsync.layout import CORNERS, EDGES
from layoutsync.spec import load_spec
from layoutsync.validate import check_request

ENV = {"IN": "input-token"}
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

sizes = st.one_of(
    st.integers(120, 3840),
    st.integers(360, 2160),
    st.sampled_from([360, 480, 720, 1080, 1280, 1920]),
)


# Mostly the gaps people use, sometimes absurd ones (which must give a clear SpecError).
@st.composite
def pixels(draw: st.DrawFn) -> int:
    if draw(st.integers(0, 7)) == 7:
        return draw(st.integers(0, 4000))
    return draw(st.integers(0, 32))


uids = st.lists(st.integers(1, 80), max_size=60, unique=True)


@st.composite
def relative_slots(draw: st.DrawFn) -> list[dict[str, Any]]:
    count = draw(st.integers(1, 6))
    slots = []
    for _ in range(count):
        x = draw(st.floats(0, 0.8, allow_nan=False))
        y = draw(st.floats(0, 0.8, allow_nan=False))
        slot: dict[str, Any] = {
            "x": x,
            "y": y,
            "width": draw(st.floats(min(0.2, 1 - x), 1 - x, allow_nan=False)),
            "height": draw(st.floats(min(0.2, 1 - y), 1 - y, allow_nan=False)),
        }
        host = draw(st.one_of(st.none(), st.sampled_from(["speaker", "next"]), st.integers(1, 80)))
        if host is not None:
            slot["host"] = host
        slots.append(slot)
    return slots


@st.composite
def layouts(draw: st.DrawFn) -> dict[str, Any]:
    template = draw(st.sampled_from(["grid", "speaker", "floating", "custom"]))
    layout: dict[str, Any] = {
        "template": template,
        "gap": draw(pixels()),
        "padding": draw(pixels()),
        "aspect": draw(st.sampled_from(["16:9", "4:3", "1:1", "9:16", "21:9", "fill"])),
        "stability": draw(st.sampled_from(["stable", "ordered"])),
        "overflow": draw(st.sampled_from(["audio-only", "drop", "rotate"])),
    }
    if draw(st.booleans()):
        layout["maxTiles"] = draw(st.integers(1, 40))
    if draw(st.booleans()):
        layout["pinned"] = draw(st.lists(st.integers(1, 80), max_size=4, unique=True))
    if draw(st.booleans()):
        layout["deny"] = draw(st.lists(st.integers(1, 80), max_size=4, unique=True))
    if template == "grid" and draw(st.booleans()):
        layout["lastRow"] = draw(st.sampled_from(["balanced", "center", "start", "grow"]))
    if template == "speaker":
        layout["position"] = draw(st.sampled_from(["left", "right", "top", "bottom"]))
        layout["stripFraction"] = draw(
            st.sampled_from([0.2, 0.25, 0.3, 0.5]) | st.floats(0.05, 0.5, allow_nan=False)
        )
        layout["stripTiles"] = draw(st.integers(1, 5) | st.integers(1, 12))
    elif template == "floating":
        layout["corner"] = draw(st.sampled_from([*CORNERS, *EDGES]))
        layout["tileWidth"] = draw(st.integers(120, 800))
        layout["tileHeight"] = draw(st.integers(120, 800))
        layout["margin"] = draw(st.integers(0, 100))
        layout["columns"] = draw(st.integers(1, 8))
        layout["rows"] = draw(st.integers(1, 8))
    elif template == "custom":
        layout["units"] = "relative"
        layout["slots"] = draw(relative_slots())
        if draw(st.booleans()):
            layout["emptySlot"] = draw(st.sampled_from(["next", "blank"]))
    return layout


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    width, height = draw(sizes), draw(sizes)
    return {
        "instanceId": "prop",
        "input": {"channel": "room", "token": "env:IN"},
        "output": {
            "channel": draw(st.sampled_from(["room", "room-live"])),
            "uid": draw(st.sampled_from([9000, 7])),
            "token": "output-token",
            "video": {"width": width, "height": height},
        },
        "canvas": {"width": width, "height": height},
        "placeholderImage": "https://cdn.example.com/offline.png",
        "audio": draw(st.sampled_from(["hosts", "channel", "none"])),
        "layout": draw(layouts()),
    }


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


@SETTINGS
@given(doc=specs(), hosts=uids, speaker=st.one_of(st.none(), st.integers(1, 80)))
def test_every_spec_compiles_to_a_valid_body_or_a_spec_error(
    doc: dict[str, Any], hosts: list[int], speaker: int | None
) -> None:
    try:
        spec = load_spec(doc)
        compiled = compile_layout(spec, hosts, speaker=speaker, env=ENV)
    except SpecError as exc:
        assert exc.errors and all(e.pointer and e.message for e in exc.errors)
        return
    check_contract(compiled, doc["canvas"]["width"], doc["canvas"]["height"], spec.layout.template)


@SETTINGS
@given(
    doc=specs(),
    steps=st.lists(st.tuples(uids, st.integers(0, 60)), min_size=2, max_size=5),
)
def test_recompiling_with_previous_stays_valid(
    doc: dict[str, Any], steps: list[tuple[list[int], int]]
) -> None:
    try:
        spec = load_spec(doc)
    except SpecError:
        return
    previous = None
    for hosts, pick in steps:
        speaker = hosts[pick % len(hosts)] if hosts and pick else None
        compiled = compile_layout(spec, hosts, speaker, previous, env=ENV)
        check_contract(compiled, spec.canvas.width, spec.canvas.height, spec.layout.template)
        rotates = spec.layout.overflow == "rotate" and spec.layout.template != "custom"
        if rotates and compiled.speaker is not None:
            assert compiled.speaker in compiled.visible
        previous = compiled


@settings(max_examples=60, deadline=None)
@given(width=sizes, height=sizes, gap=pixels(), padding=pixels())
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
    try:
        spec = load_spec(doc)
    except SpecError:
        return
    hosts = list(range(1, min(spec.capacity, 1024) + 2))
    compiled = compile_layout(spec, hosts)
    assert len(compiled.visible) == spec.capacity
    assert len(compiled.overflowed) == 1
