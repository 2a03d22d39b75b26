"""Pictures of layouts: the SVG's regions are the body's regions, PNGs decode at their size,
no text leaves its box, marks name the right hosts, and the CLI verbs write what they say."""

from __future__ import annotations

import io
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from layoutsync import MemoryStore, Session, load_spec
from layoutsync.cli import main
from layoutsync.compile import Compiled
from layoutsync.preview import (
    compile_for_preview,
    contact_sheet,
    coverage,
    frame_of,
    layout_picture,
    plan_picture,
    render_png,
    render_svg,
)
from layoutsync.preview._scene import Fill, Label, Outline, uid_colour

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SVG = "{http://www.w3.org/2000/svg}"
VIDEO_EXAMPLES = ["grid", "speaker", "floating", "custom"]


def _regions(compiled: Compiled) -> list[tuple[int, int, int, int, int, int]]:
    assert compiled.body is not None
    inputs = compiled.body["services"]["cloudTranscoder"]["config"]["transcoder"]["videoInputs"]
    return [
        (
            i["rtc"]["rtcUid"],
            i["region"]["x"],
            i["region"]["y"],
            i["region"]["width"],
            i["region"]["height"],
            i["region"]["zOrder"],
        )
        for i in inputs
    ]


def _svg_regions(svg: str) -> dict[int, list[tuple[int, int, int, int, int, int]]]:
    """Region rectangles per panel, in document (paint) order, as the SVG states them."""
    root = ET.fromstring(svg)
    panels: dict[int, list[tuple[int, int, int, int, int, int]]] = {}
    for group in root.iter(f"{SVG}g"):
        for rect in group.findall(f"{SVG}rect"):
            if rect.get("class") != "region":
                continue
            assert group.get("transform", "").startswith("translate(")
            panels.setdefault(int(group.get("data-panel", "0")), []).append(
                (
                    int(rect.get("data-uid", "0")),
                    int(rect.get("x", "")),
                    int(rect.get("y", "")),
                    int(rect.get("width", "")),
                    int(rect.get("height", "")),
                    int(rect.get("data-z", "")),
                )
            )
    return panels


def _paint_order(regions: list[tuple[int, int, int, int, int, int]]) -> list[Any]:
    return sorted(regions, key=lambda r: r[5])  # sorted() is stable: body order within a zOrder


def _texts_inside(svg: str) -> None:
    """Every text's line box (x .. x+textLength, baseline-size .. baseline+size/3) is inside."""
    root = ET.fromstring(svg)
    width, height = float(root.get("width", "")), float(root.get("height", ""))
    texts = list(root.iter(f"{SVG}text"))
    assert texts
    for text in texts:
        x, y = float(text.get("x", "")), float(text.get("y", ""))
        size, length = float(text.get("font-size", "")), float(text.get("textLength", ""))
        assert x >= 0 and x + length <= width, (text.text, x, length, width)
        assert y - size >= 0 and y + size / 3 <= height, (text.text, y, size, height)


def _labels_inside_tiles(picture: Any) -> None:
    """A uid, size or badge label lies inside the tile it names (in output px)."""
    boxes = [item.output_box() for item in picture.scene.items if isinstance(item, Fill)]
    for item in picture.scene.items:
        if isinstance(item, Label) and item.role in ("uid", "dims", "badge"):
            left, top, right, bottom = item.box
            assert any(
                x - 0.5 <= left
                and right <= x + w + 0.5
                and y - 0.5 <= top
                and bottom <= y + h + 0.5
                for x, y, w, h in boxes
            ), (item.text, item.box)


class TestSingleLayout:
    @pytest.mark.parametrize("name", VIDEO_EXAMPLES)
    @pytest.mark.parametrize("count", [1, 2, 5, 9, 17])
    def test_svg_regions_equal_the_compiled_regions(self, name: str, count: int) -> None:
        spec = load_spec(EXAMPLES / f"{name}.json")
        compiled = compile_for_preview(spec, range(101, 101 + count), speaker=102)
        svg = render_svg(compiled, template=name, title=f"{name} {count}")
        assert _svg_regions(svg) == {0: _paint_order(_regions(compiled))}
        _texts_inside(svg)
        _labels_inside_tiles(layout_picture(compiled, template=name))

    @pytest.mark.parametrize("name", [*VIDEO_EXAMPLES, "audio-only", "channel-mix"])
    def test_png_decodes_at_the_picture_size(self, name: str) -> None:
        spec = load_spec(EXAMPLES / f"{name}.json")
        compiled = compile_for_preview(spec, [101, 102, 103])
        picture = layout_picture(compiled, template=name)
        image = Image.open(io.BytesIO(picture.png()))
        assert image.format == "PNG"
        assert image.size == (picture.width, picture.height)
        double = Image.open(io.BytesIO(picture.png(zoom=2)))
        assert double.size == (picture.width * 2, picture.height * 2)
        _texts_inside(picture.svg())

    def test_render_png_is_the_picture(self) -> None:
        compiled = compile_for_preview(load_spec(EXAMPLES / "grid.json"), [101, 102])
        assert render_png(compiled) == layout_picture(compiled).png()

    def test_overflowed_hosts_are_in_the_margin_note_and_the_footer(self) -> None:
        raw = json.loads((EXAMPLES / "grid.json").read_text())
        raw["layout"]["maxTiles"] = 4
        compiled = compile_for_preview(load_spec(raw), range(101, 108))
        assert compiled.overflowed == (105, 106, 107)
        svg = render_svg(compiled, template="grid")
        texts = [t.text for t in ET.fromstring(svg).iter(f"{SVG}text")]
        assert "Not shown (3)" in texts
        assert "105, 106, 107" in texts
        assert any("7 hosts: 4 shown, 3 overflowed" in (t or "") for t in texts)

    def test_speaker_watermark_and_background_are_drawn_and_named(self) -> None:
        spec = load_spec(EXAMPLES / "speaker.json")
        compiled = compile_for_preview(spec, [101, 102, 103], speaker=102)
        picture = layout_picture(compiled, template="speaker")
        outlines = [i for i in picture.scene.items if isinstance(i, Outline)]
        assert [dict(o.data)["uid"] for o in outlines if o.role == "speaker"] == [102]
        (mark,) = (o for o in outlines if o.role == "watermark")
        assert dict(mark.data) == {"x": 1144, "y": 16, "width": 120, "height": 120, "z": 100}
        assert any(o.role == "background" for o in outlines)
        footer = " ".join(i.text for i in picture.scene.items if isinstance(i, Label))
        assert "background image studio.jpg, FILL" in footer
        assert "watermark logo.png 120x120 z100" in footer

    def test_text_is_escaped_for_xml(self) -> None:
        compiled = compile_for_preview(load_spec(EXAMPLES / "grid.json"), [101])
        svg = render_svg(compiled, title="<script>alert(\"x\")</script> & 'co'")
        root = ET.fromstring(svg)
        assert root.find(f"{SVG}title").text.startswith("<script>")  # type: ignore[union-attr]
        assert "<script>" not in svg

    def test_audio_only_says_who_is_heard(self) -> None:
        spec = load_spec(EXAMPLES / "audio-only.json")
        svg = render_svg(compile_for_preview(spec, [101, 102]), template="audio only")
        assert "2 heard" in svg and "audio only: no video output" in svg
        assert _svg_regions(svg) == {}

    def test_no_body_draws_the_empty_canvas(self) -> None:
        picture = layout_picture(None, canvas=(1920, 1080, 0x203040), template="grid")
        svg = picture.svg()
        assert 'fill="#203040"' in svg
        assert "nobody to show" in svg
        assert _svg_regions(svg) == {}

    def test_coverage_counts_overlaps_once(self) -> None:
        spec = load_spec(EXAMPLES / "floating.json")
        frame = frame_of(compile_for_preview(spec, [101, 102, 103]).body)
        assert coverage(frame) == pytest.approx(1.0)
        grid = frame_of(compile_for_preview(load_spec(EXAMPLES / "grid.json"), [101]).body)
        tile = grid.tiles[0]
        assert coverage(grid) == pytest.approx(tile.width * tile.height / (1280 * 720))


class TestContactSheet:
    @pytest.mark.parametrize("name", VIDEO_EXAMPLES)
    def test_every_panel_holds_the_compiled_regions_of_its_host_count(self, name: str) -> None:
        spec = load_spec(EXAMPLES / f"{name}.json")
        picture = contact_sheet(spec, 8, speaker=102)
        panels = _svg_regions(picture.svg())
        previous = None
        for count in range(1, 9):
            compiled = compile_for_preview(spec, range(101, 101 + count), 102, previous)
            assert panels[count - 1] == _paint_order(_regions(compiled)), count
            previous = compiled
        _texts_inside(picture.svg())
        _labels_inside_tiles(picture)

    def test_hosts_that_moved_since_the_previous_panel_are_marked(self) -> None:
        spec = load_spec(EXAMPLES / "grid.json")
        picture = contact_sheet(spec, 4)
        panels = _svg_regions(picture.svg())
        marked: dict[int, set[int]] = {}
        for item in picture.scene.items:
            if isinstance(item, Outline) and item.role == "moved":
                panel = _panel_of(picture, item)
                marked.setdefault(panel, set()).add(dict(item.data)["uid"])
        for index in range(1, 4):
            before = {r[0]: r[1:] for r in panels[index - 1]}
            after = {r[0]: r[1:] for r in panels[index]}
            moved = {uid for uid in before if uid in after and before[uid] != after[uid]}
            assert marked.get(index, set()) == moved, index

    def test_a_uid_keeps_its_colour_in_every_panel_and_picture(self) -> None:
        spec = load_spec(EXAMPLES / "grid.json")
        fills: dict[int, set[str]] = {}
        sheet = contact_sheet(spec, 6)
        single = layout_picture(compile_for_preview(spec, [104, 101]))
        for picture in (sheet, single):
            for item in picture.scene.items:
                if isinstance(item, Fill) and item.role == "region":
                    fills.setdefault(dict(item.data)["uid"], set()).add(item.colour)
        assert {uid: colours for uid, colours in fills.items()} == {
            uid: {uid_colour(uid)} for uid in range(101, 107)
        }

    def test_several_specs_give_a_row_each(self) -> None:
        specs = [load_spec(EXAMPLES / "grid.json"), load_spec(EXAMPLES / "speaker.json")]
        picture = contact_sheet(specs, 3)
        assert len(_svg_regions(picture.svg())) == 6
        titles = [t.text for t in ET.fromstring(picture.svg()).iter(f"{SVG}text")]
        assert "room42-grid" in titles and "room42-speaker" in titles

    def test_a_36_host_sheet_lays_out_every_panel(self) -> None:
        raw = json.loads((EXAMPLES / "grid.json").read_text())
        raw["layout"].update(maxTiles=36, gap=0, padding=0)
        picture = contact_sheet(load_spec(raw), 36)
        panels = _svg_regions(picture.svg())
        assert len(panels) == 36
        assert len(panels[35]) == 36
        _texts_inside(picture.svg())


def _panel_of(picture: Any, outline: Outline) -> int:
    for panel in picture.scene.panels:
        right = panel.ox + panel.width * panel.scale
        bottom = panel.oy + panel.height * panel.scale
        if panel.ox - 1 <= outline.x <= right and panel.oy - 1 <= outline.y <= bottom:
            return int(panel.index)
    raise AssertionError("outline outside every panel")


class TestPlanPicture:
    def test_added_moved_and_removed_hosts_are_marked_on_their_side(self) -> None:
        spec = load_spec(EXAMPLES / "grid.json")
        before = compile_for_preview(spec, [101, 102, 103])
        after = compile_for_preview(spec, [101, 103, 104, 105], previous=before)
        picture = plan_picture(before.body, after, summary="Plan: update")
        panels = _svg_regions(picture.svg())
        assert panels[0] == _paint_order(_regions(before))
        assert panels[1] == _paint_order(_regions(after))
        marks: dict[tuple[int, str], set[int]] = {}
        for item in picture.scene.items:
            if isinstance(item, Outline) and item.role in ("added", "moved", "removed"):
                key = (_panel_of(picture, item), item.role)
                marks.setdefault(key, set()).add(dict(item.data)["uid"])
        old = {r[0]: r[1:] for r in panels[0]}
        new = {r[0]: r[1:] for r in panels[1]}
        moved = {u for u in old if u in new and old[u] != new[u]}
        assert marks.get((0, "removed")) == {102}
        assert marks.get((1, "added")) == {104, 105}
        assert marks.get((0, "moved"), set()) == moved == marks.get((1, "moved"), set())
        _texts_inside(picture.svg())

    def test_no_live_task_draws_an_empty_before(self) -> None:
        spec = load_spec(EXAMPLES / "grid.json")
        after = compile_for_preview(spec, [101])
        svg = plan_picture(None, after, summary="Plan: create").svg()
        assert set(_svg_regions(svg)) == {1}
        assert "no live task" in svg


class TestCli:
    def test_preview_writes_png_and_svg_by_extension(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        spec = str(EXAMPLES / "speaker.json")
        png, svg = tmp_path / "a.png", tmp_path / "a.svg"
        assert (
            main(["preview", spec, "--hosts", "101,102,103", "--speaker", "102", "--out", str(png)])
            == 0
        )
        assert main(["preview", spec, "--hosts", "101,102,103", "--out", str(svg)]) == 0
        assert Image.open(png).format == "PNG"
        ET.fromstring(svg.read_text())
        err = capsys.readouterr().err
        assert f"written to {png}" in err and "visible 101,102,103" in err

    def test_preview_dash_writes_svg_to_stdout(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["preview", str(EXAMPLES / "grid.json"), "--hosts", "101", "--out", "-"]) == 0
        out = capsys.readouterr().out
        assert _svg_regions(out)[0][0][0] == 101

    def test_sheet(self, tmp_path: Path) -> None:
        out = tmp_path / "sheet.png"
        grid, speaker = str(EXAMPLES / "grid.json"), str(EXAMPLES / "speaker.json")
        assert main(["preview", grid, speaker, "--sheet", "4", "--out", str(out)]) == 0
        assert Image.open(out).size[0] > 1000

    @pytest.mark.parametrize(
        ("argv", "message"),
        [
            (["--hosts", "101,x"], "--hosts: 'x' is not a host uid"),
            ([], "--hosts is required without --sheet"),
            (["--sheet", "0"], "--sheet: 0 is outside 1..64"),
            (["--hosts", "101", "--zoom", "9"], "--zoom: 9 is outside 0.25..4"),
        ],
        ids=["bad-uid", "no-hosts", "sheet-0", "zoom"],
    )
    def test_usage_problems_exit_2(
        self, argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        out = str(tmp_path / "x.svg")
        code = main(["preview", str(EXAMPLES / "grid.json"), *argv, "--out", out])
        assert code == 2
        assert message in capsys.readouterr().err

    def test_several_specs_need_sheet(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        grid = str(EXAMPLES / "grid.json")
        assert (
            main(["preview", grid, grid, "--hosts", "101", "--out", str(tmp_path / "x.svg")]) == 2
        )
        assert "add --sheet N" in capsys.readouterr().err
        assert main(["preview", grid, "--hosts", "101", "--out", str(tmp_path / "x.jpg")]) == 2
        assert "must end in .png or .svg" in capsys.readouterr().err

    def test_a_missing_spec_exits_2_and_a_bad_spec_exits_1(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        out = str(tmp_path / "x.svg")
        assert main(["preview", str(tmp_path / "none.json"), "--hosts", "1", "--out", out]) == 2
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps({"instanceId": "x"}))
        assert main(["preview", str(bad), "--hosts", "1", "--out", out]) == 1
        assert "error:" in capsys.readouterr().err

    def test_plan_preview_draws_live_beside_desired(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        out = tmp_path / "plan.svg"
        spec = str(EXAMPLES / "grid.json")
        state = str(tmp_path / "none.db")
        argv = ["plan", spec, "--hosts", "101,102", "--state", state, "--preview", str(out)]
        assert main(argv) == 0
        panels = _svg_regions(out.read_text())
        assert set(panels) == {1}  # nothing live yet
        assert [r[0] for r in panels[1]] == [101, 102]
        assert "Plan: create" in out.read_text()
        assert not Path(state).exists()  # plan still writes no state


def test_picture_of_a_sessions_plan_uses_the_last_applied_body() -> None:
    from layoutsync.preview import picture_of_plan

    spec = load_spec(EXAMPLES / "grid.json")
    session = Session(spec, client=None, store=MemoryStore())
    session.set_hosts([101, 102])
    plan = session.plan()
    svg = picture_of_plan(session, plan).svg()
    assert re.search(r"no task yet", svg)
