"""compile_layout: ordering, overflow, audio modes, templates, stability, and the contract."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from layoutsync import compile as compile_module
from layoutsync.bench import layout as layout_bench
from layoutsync.bench.layout import Step
from layoutsync.compile import (
    Compiled,
    InternalCompilerError,
    Placement,
    SlotAssignment,
    compile_layout,
    compile_unchecked,
    host_order,
)
from layoutsync.errors import FieldError, SpecError
from layoutsync.layout import grid_shape
from layoutsync.spec import LayoutSpec, load_spec
from layoutsync.validate import TRANSCODER_POINTER, check_request

ENV = {"IN_TOKEN": "input-secret-value"}


def make_spec(template: str = "grid", *, audio: str = "hosts", **layout: Any) -> LayoutSpec:
    doc: dict[str, Any] = {
        "instanceId": "room42",
        "input": {"channel": "room42", "token": "env:IN_TOKEN"},
        "output": {
            "channel": "room42-live",
            "uid": 9000,
            "token": "output-secret-value",
            "video": {"width": 1280, "height": 720},
        },
        "placeholderImage": "https://cdn.example.com/offline.png",
        "audio": audio,
        "layout": {"template": template, **layout},
    }
    return load_spec(doc)


def compile_(spec: LayoutSpec, hosts: Any, **kwargs: Any) -> Compiled:
    return compile_layout(spec, hosts, env=ENV, **kwargs)


def transcoder(compiled: Compiled) -> dict[str, Any]:
    assert compiled.body is not None
    result: dict[str, Any] = compiled.body["services"]["cloudTranscoder"]["config"]["transcoder"]
    return result


def slot_map(compiled: Compiled) -> dict[int, int]:
    return {p.uid: p.slot for p in compiled.placements}


def assert_sound(compiled: Compiled, *, disjoint: bool = True) -> None:
    """The geometric contract: even, inside, >= 120, z 0..100, no overlap in tiled templates."""
    for p in compiled.placements:
        assert all(v % 2 == 0 for v in (p.x, p.y, p.width, p.height)), p
        assert p.width >= 120 and p.height >= 120
        assert p.rect.inside(1280, 720)
        assert 0 <= p.z_order <= 100
    if disjoint:
        for a, b in itertools.combinations(compiled.placements, 2):
            assert not a.rect.overlaps(b.rect), (a, b)
    if compiled.body is not None:
        assert check_request(compiled.body) == ()


class TestBody:
    def test_a_grid_body_passes_validation_and_carries_resolved_tokens(self) -> None:
        compiled = compile_(make_spec(), [101, 102, 103])
        assert_sound(compiled)
        t = transcoder(compiled)
        assert [v["rtc"]["rtcUid"] for v in t["videoInputs"]] == [101, 102, 103]
        assert {v["rtc"]["rtcToken"] for v in t["videoInputs"]} == {"input-secret-value"}
        assert t["outputs"][0]["rtc"] == {
            "rtcChannel": "room42-live",
            "rtcUid": 9000,
            "rtcToken": "output-secret-value",
        }
        assert t["outputs"][0]["videoOption"] == {
            "fps": 15,
            "codec": "H264",
            "width": 1280,
            "height": 720,
        }
        assert compiled.body_hash is not None and len(compiled.body_hash) == 32

    def test_repr_and_str_show_no_token(self) -> None:
        compiled = compile_(make_spec(), [101])
        for text in (repr(compiled), str(compiled)):
            assert "secret-value" not in text
        assert "secret" not in str(compiled.redacted_body())

    def test_deterministic(self) -> None:
        spec = make_spec("speaker", gap=8, padding=8)
        first = compile_(spec, [5, 3, 9, 1], speaker=9)
        again = compile_(spec, [5, 3, 9, 1], speaker=9)
        assert first == again and first.body == again.body

    def test_capacity_is_36_tiles_of_212x120(self) -> None:
        compiled = compile_(make_spec(), range(1, 41))
        assert len(compiled.visible) == 36
        assert compiled.overflowed == (37, 38, 39, 40)
        assert {(p.width, p.height) for p in compiled.placements} == {(212, 120)}
        assert_sound(compiled)

    def test_a_missing_env_token_is_a_spec_error_without_the_value(self) -> None:
        with pytest.raises(SpecError) as info:
            compile_layout(make_spec(), [101], env={})
        assert str(info.value) == "/input/token: environment variable IN_TOKEN is not set"

    def test_no_token_is_needed_when_no_task_is(self) -> None:
        assert compile_layout(make_spec(), [], env={}).empty

    def test_a_body_the_schema_rejects_is_an_internal_error(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        bad = (FieldError(f"{TRANSCODER_POINTER}/canvas/width", "broken on purpose"),)
        monkeypatch.setattr(compile_module, "check_request", lambda body: bad)
        with pytest.raises(InternalCompilerError, match="broken on purpose"):
            compile_(make_spec(), [101])

    def test_compile_unchecked_builds_the_same_body(self) -> None:
        spec = make_spec()
        assert compile_unchecked(spec, [1, 2], env=ENV) == compile_(spec, [1, 2])


class TestEmpty:
    def test_zero_hosts_needs_no_task(self) -> None:
        compiled = compile_(make_spec(), [])
        assert compiled.empty and compiled.body is None and compiled.body_hash is None
        assert compiled.visible == compiled.audio == compiled.placements == ()

    def test_everyone_denied_needs_no_task(self) -> None:
        assert compile_(make_spec(deny=[101]), [101]).empty

    def test_only_the_output_uid_in_its_own_channel_is_no_host(self) -> None:
        spec = load_spec(
            make_spec().to_dict()
            | {"output": make_spec().to_dict()["output"] | {"channel": "room42"}}
        )
        assert compile_(spec, [9000]).empty
        assert compile_(spec, [9000, 101]).hosts == (101,)


class TestHosts:
    def test_order_is_pinned_then_priority_then_join_order(self) -> None:
        spec = make_spec(pinned=[7, 3], priority=[5])
        assert host_order(spec, [1, 3, 5, 7, 9]) == (7, 3, 5, 1, 9)

    def test_absent_pinned_hosts_are_skipped(self) -> None:
        assert host_order(make_spec(pinned=[7]), [1, 2]) == (1, 2)

    def test_allow_and_deny_filter(self) -> None:
        assert host_order(make_spec(allow=[1, 3]), [4, 3, 2, 1]) == (3, 1)
        assert host_order(make_spec(deny=[2]), [4, 3, 2, 1]) == (4, 3, 1)

    def test_repeated_uids_count_once(self) -> None:
        assert host_order(make_spec(), [1, 2, 1]) == (1, 2)

    @pytest.mark.parametrize("bad", [0, -1, 2**32, "101", 1.5, True])
    def test_invalid_uids_are_spec_errors(self, bad: Any) -> None:
        with pytest.raises(SpecError, match=r"^hosts: .* at index 1 is not a host uid"):
            compile_(make_spec(), [101, bad])

    def test_invalid_speaker(self) -> None:
        with pytest.raises(SpecError, match=r"^speaker: "):
            compile_(make_spec("speaker"), [101], speaker="101")

    def test_a_speaker_who_is_not_present_is_ignored(self) -> None:
        compiled = compile_(make_spec("speaker"), [101, 102], speaker=555)
        assert compiled.speaker is None
        assert compiled.placements[0].uid == 101


class TestOverflowAndAudio:
    def test_overflow_audio_only_keeps_their_audio(self) -> None:
        compiled = compile_(make_spec(maxTiles=2), [1, 2, 3])
        assert (compiled.visible, compiled.overflowed, compiled.audio) == ((1, 2), (3,), (1, 2, 3))
        assert [a["rtc"]["rtcUid"] for a in transcoder(compiled)["audioInputs"]] == [1, 2, 3]

    def test_overflow_drop_drops_their_audio_too(self) -> None:
        compiled = compile_(make_spec(maxTiles=2, overflow="drop"), [1, 2, 3])
        assert (compiled.overflowed, compiled.audio) == ((3,), (1, 2))

    def test_channel_mix_is_one_input_with_uid_0(self) -> None:
        compiled = compile_(make_spec(audio="channel"), [1, 2])
        assert compiled.audio == (0,)
        assert transcoder(compiled)["audioInputs"] == [
            {"rtc": {"rtcChannel": "room42", "rtcUid": 0, "rtcToken": "input-secret-value"}}
        ]
        assert_sound(compiled)

    def test_audio_none_sends_an_empty_list(self) -> None:
        compiled = compile_(make_spec(audio="none"), [1, 2])
        assert compiled.audio == () and transcoder(compiled)["audioInputs"] == []
        assert_sound(compiled)

    def test_audio_only_spec_has_no_video_and_no_overflow(self) -> None:
        doc = make_spec().to_dict()
        del doc["output"]["video"], doc["placeholderImage"], doc["layout"]
        doc["canvas"] = {"width": 960, "height": 480}
        spec = load_spec(doc)
        compiled = compile_(spec, [1, 2])
        t = transcoder(compiled)
        assert "videoInputs" not in t and "videoOption" not in t["outputs"][0]
        assert (compiled.visible, compiled.overflowed, compiled.audio) == ((), (), (1, 2))
        assert compile_(spec, []).empty


class TestTemplates:
    def test_speaker_main_shows_the_speaker(self) -> None:
        compiled = compile_(make_spec("speaker", gap=8), [1, 2, 3], speaker=2)
        main = compiled.placements[0]
        assert (main.uid, main.slot) == (2, 0)
        assert main.width > compiled.placements[1].width
        assert compiled.speaker == 2
        assert_sound(compiled)

    def test_speaker_main_defaults_to_the_first_in_order(self) -> None:
        compiled = compile_(make_spec("speaker", pinned=[3]), [1, 2, 3])
        assert compiled.placements[0].uid == 3

    def test_speaker_alone_takes_the_whole_area(self) -> None:
        alone = compile_(make_spec("speaker"), [1]).placements[0]
        assert (alone.width, alone.height) == (1280, 720)

    def test_speaker_strip_tile_count_caps_visibility(self) -> None:
        compiled = compile_(make_spec("speaker", stripTiles=2), [1, 2, 3, 4])
        assert compiled.visible == (1, 2, 3) and compiled.overflowed == (4,)

    @pytest.mark.parametrize("position", ["left", "right", "top", "bottom"])
    def test_speaker_positions(self, position: str) -> None:
        compiled = compile_(make_spec("speaker", position=position, gap=6), range(1, 6))
        assert_sound(compiled)

    def test_floating_main_fills_and_overlays_sit_on_top(self) -> None:
        compiled = compile_(make_spec("floating", corner="top-right"), [1, 2, 3], speaker=3)
        main, *overlays = compiled.placements
        assert (main.uid, main.x, main.y, main.width, main.height, main.z_order) == (
            3,
            0,
            0,
            1280,
            720,
            0,
        )
        assert all(o.z_order > main.z_order for o in overlays)
        assert overlays[0].x + overlays[0].width == 1280 - 16 and overlays[0].y == 16
        assert_sound(compiled, disjoint=False)

    def test_custom_slots_bind_uid_speaker_and_next(self) -> None:
        slots = [
            {"x": 0, "y": 0, "width": 640, "height": 360, "host": "speaker"},
            {"x": 640, "y": 0, "width": 640, "height": 360, "host": 7},
            {"x": 0, "y": 360, "width": 640, "height": 360},
            {"x": 640, "y": 360, "width": 640, "height": 360, "zOrder": 50},
        ]
        spec = make_spec("custom", slots=slots)
        compiled = compile_(spec, [1, 2, 7, 3], speaker=2)
        assert slot_map(compiled) == {2: 0, 7: 1, 1: 2, 3: 3}
        assert compiled.placements[3].z_order == 50
        assert_sound(compiled)
        without_seven = compile_(spec, [1, 2, 3])
        assert slot_map(without_seven) == {1: 0, 2: 1, 3: 2}  # 2 stands in for uid 7
        blank = make_spec("custom", slots=slots, emptySlot="blank")
        assert slot_map(compile_(blank, [1, 2, 3])) == {1: 0, 2: 2, 3: 3}  # slot 1 waits for 7

    def test_custom_with_only_absent_bound_hosts_needs_no_task_when_blank(self) -> None:
        slots = [{"x": 0, "y": 0, "width": 320, "height": 180, "host": 7}]
        compiled = compile_(make_spec("custom", slots=slots, emptySlot="blank"), [1])
        assert compiled.empty and compiled.overflowed == (1,)
        stand_in = compile_(make_spec("custom", slots=slots), [1])
        assert stand_in.visible == (1,) and stand_in.placements[0].slot == 0


# --- stability ----------------------------------------------------------------------------------


def replay(spec: LayoutSpec, check: Callable[[Step], None] | None = None) -> list[int]:
    """Regions moved per event of the reference churn trace (hosts visible before and after
    whose x, y, width or height changed)."""
    moves = []
    for step in layout_bench.replay(spec, layout_bench.churn_trace(), env=ENV):
        if check is not None:
            check(step)
        moves.append(step.moves)
    return moves


class TestStability:
    TRACE = layout_bench.churn_trace()

    def test_the_trace_is_long_and_varied(self) -> None:
        kinds = {kind for kind, _ in self.TRACE}
        assert len(self.TRACE) >= 40 and kinds == {"join", "leave", "rejoin", "speaker"}

    @pytest.mark.parametrize("last_row", ["balanced", "center", "start"])
    def test_grid_stable_moves_fewer_regions_than_ordered(self, last_row: str) -> None:
        stable = replay(make_spec(stability="stable", lastRow=last_row, gap=8, padding=16))
        ordered = replay(make_spec(stability="ordered", lastRow=last_row, gap=8, padding=16))
        assert sum(stable) < sum(ordered)

    def test_grid_stable_keeps_every_region_that_survives(self) -> None:
        def minimal(step: Step) -> None:
            old = {p.uid: p.rect for p in step.before.placements}
            new = {p.uid: p.rect for p in step.after.placements}
            offered = set(new.values())
            for uid in old.keys() & new.keys():
                if old[uid] in offered:
                    assert new[uid] == old[uid], "a host whose region still exists moved"

        for last_row in ("balanced", "center", "start", "grow"):
            replay(make_spec(lastRow=last_row, gap=8, padding=16), check=minimal)

    def test_start_moves_nobody_on_a_join_and_one_host_on_a_leave(self) -> None:
        spec = make_spec(lastRow="start", gap=8, padding=16)
        first = compile_(spec, range(1, 8))  # 3 + 3 + 1 on 1280x720, gap 8, padding 16
        joined = compile_(spec, range(1, 9), previous=first)
        assert layout_bench.region_moves(first, joined) == 0
        left = compile_(spec, [1, 3, 4, 5, 6, 7, 8], previous=joined)
        assert layout_bench.region_moves(joined, left) == 1
        assert left.placements[1].uid == 8  # the last host took the hole

    @settings(max_examples=50, deadline=None)
    @given(count=st.integers(2, 25), leaver=st.integers(0, 24), gap=st.sampled_from([0, 8]))
    def test_start_is_at_most_one_move_whenever_the_shape_holds(
        self, count: int, leaver: int, gap: int
    ) -> None:
        spec = make_spec(lastRow="start", gap=gap, padding=16)
        area = spec.area
        hosts = list(range(1, count + 1))
        full = compile_(spec, hosts)
        fewer = compile_(spec, [h for h in hosts if h != hosts[leaver % count]], previous=full)
        rejoined = compile_(spec, hosts, previous=fewer)

        def shape(n: int) -> object:
            return grid_shape(n, area.width, area.height, spec.layout.gap, spec.layout.aspect)

        if shape(count) == shape(count - 1):
            assert layout_bench.region_moves(full, fewer) <= 1
            assert layout_bench.region_moves(fewer, rejoined) == 0

    def test_speaker_stable_moves_only_the_swapped_pair_on_a_speaker_change(self) -> None:
        def minimal(step: Step) -> None:
            if step.kind == "speaker":
                assert step.moves <= 2

        stable = replay(make_spec("speaker", stripTiles=6), check=minimal)
        ordered = replay(make_spec("speaker", stripTiles=6, stability="ordered"))
        assert sum(stable) < sum(ordered)

    def test_previous_may_be_a_compiled_or_an_assignment(self) -> None:
        spec = make_spec()
        first = compile_(spec, [1, 2, 3])
        from_compiled = compile_(spec, [2, 3], previous=first)
        from_slots = compile_(spec, [2, 3], previous=first.slots)
        assert from_compiled == from_slots
        # 2 + 1 becomes one row of 2: every region changed; the hosts keep their order.
        assert slot_map(from_compiled) == {2: 0, 3: 1}

    def test_a_previous_of_another_template_is_ignored(self) -> None:
        spec = make_spec()
        foreign = SlotAssignment("speaker", ((2, 0), (1, 1)))
        assert slot_map(compile_(spec, [1, 2], previous=foreign)) == {1: 0, 2: 1}

    def test_slot_assignment_lookups(self) -> None:
        slots = compile_(make_spec(), [5, 6]).slots
        assert (slots.slot_of(6), slots.slot_of(7), slots.as_dict()) == (1, None, {5: 0, 6: 1})

    def test_ordered_follows_the_order(self) -> None:
        spec = make_spec(stability="ordered")
        first = compile_(spec, [1, 2, 3])
        assert slot_map(compile_(spec, [2, 3], previous=first)) == {2: 0, 3: 1}


def test_placements_are_frozen_values() -> None:
    placement = compile_(make_spec(), [1]).placements[0]
    assert isinstance(placement, Placement)
    with pytest.raises(AttributeError):
        placement.x = 4  # type: ignore[misc]
