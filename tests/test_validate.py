"""The request schema and the semantic rules: every documented range, every error reported."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from layoutsync import validate
from layoutsync.errors import ValidationError
from layoutsync.validate import (
    TRANSCODER_POINTER,
    check_request,
    validate_request,
    wrap_transcoder,
)

T = TRANSCODER_POINTER


def rtc(uid: int, channel: str = "room") -> dict[str, Any]:
    return {"rtcChannel": channel, "rtcUid": uid, "rtcToken": "secret-input-token"}


def video_input(uid: int, x: int = 0, y: int = 0, w: int = 320, h: int = 180) -> dict[str, Any]:
    return {
        "rtc": rtc(uid),
        "placeholderImageUrl": "https://cdn.example.com/offline.png",
        "region": {"x": x, "y": y, "width": w, "height": h, "zOrder": 1},
    }


def body(**overrides: Any) -> dict[str, Any]:
    transcoder: dict[str, Any] = {
        "idleTimeout": 300,
        "audioInputs": [{"rtc": rtc(101)}, {"rtc": rtc(102)}],
        "videoInputs": [video_input(101), video_input(102, x=320)],
        "canvas": {"width": 1280, "height": 720, "color": 0},
        "outputs": [
            {
                "rtc": {"rtcChannel": "room-live", "rtcUid": 9000, "rtcToken": "secret-out"},
                "audioOption": {"profileType": "AUDIO_PROFILE_DEFAULT"},
                "videoOption": {"codec": "H264", "width": 1280, "height": 720, "fps": 15},
            }
        ],
    }
    transcoder.update(overrides)
    return wrap_transcoder(transcoder)


def messages(errors: Any) -> dict[str, str]:
    return {e.pointer: e.message for e in errors}


class TestSchema:
    def test_a_complete_body_is_valid(self) -> None:
        assert check_request(body()) == ()
        validate_request(body())

    def test_every_error_is_reported_not_just_the_first(self) -> None:
        bad = body(idleTimeout=0, canvas={"width": 100, "height": 5000, "color": -1})
        found = messages(check_request(bad))
        assert found[f"{T}/idleTimeout"] == "0 is below the minimum 1"
        assert found[f"{T}/canvas/width"] == "100 is below the minimum 120"
        assert found[f"{T}/canvas/height"] == "5000 is above the maximum 3840"
        assert found[f"{T}/canvas/color"] == "-1 is below the minimum 0"

    def test_unknown_keys_are_errors_with_a_suggestion(self) -> None:
        bad = body()
        bad["services"]["cloudTranscoder"]["config"]["transcoder"]["videoInputs"][0]["region"][
            "zorder"
        ] = 3
        found = messages(check_request(bad))
        message = found[f"{T}/videoInputs/0/region/zorder"]
        assert "did you mean 'zOrder'?" in message
        assert "allowed: height, width, x, y, zOrder" in message

    def test_low_bitrate_high_quality_is_a_documented_extra(self) -> None:
        ok = body()
        transcoder = ok["services"]["cloudTranscoder"]["config"]["transcoder"]
        transcoder["outputs"][0]["videoOption"]["lowBitrateHighQuality"] = True
        assert check_request(ok) == ()

    def test_missing_required_fields_name_the_field(self) -> None:
        bad = body()
        del bad["services"]["cloudTranscoder"]["config"]["transcoder"]["canvas"]["color"]
        assert messages(check_request(bad)) == {f"{T}/canvas/color": "is required but missing"}

    def test_wrong_types_and_enums(self) -> None:
        bad = body(canvas={"width": "1280", "height": 720, "color": 0, "fillMode": "STRETCH"})
        found = messages(check_request(bad))
        assert found[f"{T}/canvas/width"] == "'1280' is not an integer"
        assert found[f"{T}/canvas/fillMode"] == "'STRETCH' is not one of FILL, FIT"

    def test_service_type_is_fixed(self) -> None:
        bad = body()
        bad["services"]["cloudTranscoder"]["serviceType"] = "cloudTranscoder"
        found = messages(check_request(bad))
        assert found["/services/cloudTranscoder/serviceType"] == (
            "'cloudTranscoder' must be 'cloudTranscoderV2'"
        )

    @pytest.mark.parametrize(
        "url",
        [
            "https://XXXX.jpg",
            "http://cdn.example.com/a/b.PNG",
            "https://cdn.example.com/offline.jpg?v=3&x=y",
            "HTTPS://cdn.example.com/img.Jpg#frag",
        ],
    )
    def test_image_urls_accepted(self, url: str) -> None:
        ok = body(canvas={"width": 1280, "height": 720, "color": 0, "backgroundImage": url})
        assert check_request(ok) == ()

    @pytest.mark.parametrize(
        "url",
        [
            "ftp://cdn.example.com/a.jpg",
            "https://cdn.example.com/a.gif",
            "https://cdn.example.com/a.jpeg",
            "https://cdn.example.com/a.jpg.txt",
            "https://cdn.example.com/a jpg.png x",
            "cdn.example.com/a.png",
            "https:///a.png",
            "https://cdn.example.com/a\x07.png",
        ],
    )
    def test_image_urls_rejected(self, url: str) -> None:
        bad = body(canvas={"width": 1280, "height": 720, "color": 0, "backgroundImage": url})
        found = messages(check_request(bad))
        assert found[f"{T}/canvas/backgroundImage"].endswith(
            "is not an http(s) URL whose path ends in .jpg or .png "
            "(no spaces or control characters)"
        )

    def test_secret_values_never_appear_in_messages(self) -> None:
        bad = body()
        transcoder = bad["services"]["cloudTranscoder"]["config"]["transcoder"]
        transcoder["outputs"][0]["rtc"]["rtcToken"] = 123456789
        found = messages(check_request(bad))
        assert found[f"{T}/outputs/0/rtc/rtcToken"] == "*** is not a string"
        assert "123456789" not in str(ValidationError(check_request(bad)))


class TestSemanticRules:
    def test_all_input_channels_must_be_equal(self) -> None:
        bad = body(audioInputs=[{"rtc": rtc(101, "other")}, {"rtc": rtc(102)}])
        found = messages(check_request(bad))
        assert found[f"{T}/audioInputs/0/rtc/rtcChannel"].startswith(
            "'other' differs from 'room' at"
        )

    def test_uids_are_unique_per_kind(self) -> None:
        bad = body(
            videoInputs=[video_input(101), video_input(101, x=320)],
            audioInputs=[{"rtc": rtc(5)}, {"rtc": rtc(5)}],
        )
        found = messages(check_request(bad))
        assert "101 is already used by" in found[f"{T}/videoInputs/1/rtc/rtcUid"]
        assert "5 is already used by" in found[f"{T}/audioInputs/1/rtc/rtcUid"]

    def test_the_same_uid_may_be_audio_and_video(self) -> None:
        assert check_request(body()) == ()

    def test_output_uid_differs_from_inputs_in_the_same_channel(self) -> None:
        bad = body()
        transcoder = bad["services"]["cloudTranscoder"]["config"]["transcoder"]
        transcoder["outputs"][0]["rtc"].update(rtcChannel="room", rtcUid=102)
        found = messages(check_request(bad))
        assert "102 is also the input at" in found[f"{T}/outputs/0/rtc/rtcUid"]
        # Another channel may reuse the uid.
        transcoder["outputs"][0]["rtc"]["rtcChannel"] = "room-live"
        assert check_request(bad) == ()

    def test_regions_and_watermarks_lie_inside_the_canvas(self) -> None:
        bad = body(
            videoInputs=[video_input(101, x=1000, w=320)],
            waterMarks=[
                {
                    "imageUrl": "https://cdn.example.com/logo.png",
                    "region": {"x": 0, "y": 650, "width": 120, "height": 120, "zOrder": 9},
                }
            ],
        )
        found = messages(check_request(bad))
        assert found[f"{T}/videoInputs/0/region"] == (
            "x + width = 1320 is beyond the canvas width 1280; it must fit inside"
        )
        assert found[f"{T}/waterMarks/0/region"] == (
            "y + height = 770 is beyond the canvas height 720; it must fit inside"
        )

    def test_audio_only_configs_carry_no_video_option(self) -> None:
        bad = body()
        del bad["services"]["cloudTranscoder"]["config"]["transcoder"]["videoInputs"]
        found = messages(check_request(bad))
        assert found[f"{T}/outputs/0/videoOption"].startswith("must be absent in an audio-only")

    def test_video_configs_need_a_video_option(self) -> None:
        bad = body()
        del bad["services"]["cloudTranscoder"]["config"]["transcoder"]["outputs"][0]["videoOption"]
        found = messages(check_request(bad))
        assert found[f"{T}/outputs/0/videoOption"] == "is required when videoInputs are given"

    def test_whole_channel_audio_stands_alone(self) -> None:
        bad = body(audioInputs=[{"rtc": rtc(0)}, {"rtc": rtc(102)}])
        found = messages(check_request(bad))
        assert "must be the only audio input" in found[f"{T}/audioInputs/0/rtc/rtcUid"]

    def test_a_config_needs_some_input(self) -> None:
        bad = body()
        transcoder = bad["services"]["cloudTranscoder"]["config"]["transcoder"]
        del transcoder["videoInputs"], transcoder["audioInputs"]
        del transcoder["outputs"][0]["videoOption"]
        assert f"{T}" in messages(check_request(bad))


class TestCache:
    def test_identical_bodies_are_validated_once(self, monkeypatch: pytest.MonkeyPatch) -> None:
        validate.clear_cache()
        calls = []
        real = validate._schema_errors_of_request

        def counting(b: Any) -> Any:
            calls.append(1)
            return real(b)

        monkeypatch.setattr(validate, "_schema_errors_of_request", counting)
        first = body()
        same_content_other_key_order = dict(reversed(list(copy.deepcopy(first).items())))
        assert check_request(first) == ()
        assert check_request(same_content_other_key_order) == ()
        assert len(calls) == 1
        changed = body(idleTimeout=301)
        check_request(changed)
        assert len(calls) == 2

    def test_invalid_results_are_cached_too(self) -> None:
        validate.clear_cache()
        bad = body(idleTimeout=0)
        assert check_request(bad) == check_request(copy.deepcopy(bad))
        with pytest.raises(ValidationError, match="idleTimeout: 0 is below the minimum 1"):
            validate_request(bad)


# --- properties ---------------------------------------------------------------------------------

ranges = {
    "canvas/width": (120, 3840),
    "canvas/height": (120, 3840),
    "canvas/color": (0, 16777215),
    "idleTimeout": (1, 86400),
    "outputs/0/videoOption/fps": (1, 30),
    "outputs/0/videoOption/bitrate": (1, 10000),
    "outputs/0/videoOption/width": (120, 3840),
    "outputs/0/videoOption/height": (120, 3840),
    "videoInputs/0/region/zOrder": (0, 100),
}


@st.composite
def valid_bodies(draw: st.DrawFn) -> dict[str, Any]:
    width = draw(st.integers(120, 3840))
    height = draw(st.integers(120, 3840))
    count = draw(st.integers(1, 6))
    inputs = []
    for index in range(count):
        w = draw(st.integers(120, width))
        h = draw(st.integers(120, height))
        x = draw(st.integers(0, width - w))
        y = draw(st.integers(0, height - h))
        item = video_input(100 + index, x=x, y=y, w=w, h=h)
        item["region"]["zOrder"] = draw(st.integers(0, 100))
        inputs.append(item)
    audio = draw(st.sampled_from(["hosts", "channel", "absent"]))
    overrides: dict[str, Any] = {
        "canvas": {"width": width, "height": height, "color": draw(st.integers(0, 16777215))},
        "videoInputs": inputs,
        "idleTimeout": draw(st.integers(1, 86400)),
    }
    result = body(**overrides)
    transcoder = result["services"]["cloudTranscoder"]["config"]["transcoder"]
    if audio == "hosts":
        transcoder["audioInputs"] = [{"rtc": rtc(100 + i)} for i in range(count)]
    elif audio == "channel":
        transcoder["audioInputs"] = [{"rtc": rtc(0)}]
    else:
        del transcoder["audioInputs"]
    transcoder["outputs"][0]["videoOption"]["bitrate"] = draw(st.integers(1, 10000))
    transcoder["outputs"][0]["videoOption"]["fps"] = draw(st.integers(1, 30))
    return result


def _set(target: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split("/")
    for part in parts[:-1]:
        target = target[int(part)] if part.isdigit() else target[part]  # type: ignore[index]
    target[parts[-1]] = value


class TestProperties:
    @settings(max_examples=60, deadline=None)
    @given(valid_bodies())
    def test_generated_valid_bodies_pass(self, generated: dict[str, Any]) -> None:
        assert check_request(generated) == ()

    @settings(max_examples=80, deadline=None)
    @given(
        valid_bodies(),
        st.sampled_from(sorted(ranges)),
        st.booleans(),
        st.integers(1, 10**6),
    )
    def test_one_value_out_of_range_is_named(
        self, generated: dict[str, Any], path: str, below: bool, distance: int
    ) -> None:
        low, high = ranges[path]
        value = low - distance if below else high + distance
        transcoder = generated["services"]["cloudTranscoder"]["config"]["transcoder"]
        _set(transcoder, path, value)
        found = messages(check_request(generated))
        bound = f"below the minimum {low}" if below else f"above the maximum {high}"
        assert found[f"{T}/{path}"] == f"{value} is {bound}"


# --- piecewise validation equals one pass over the whole body -----------------------------------

_MUTATIONS: list[tuple[str, Any]] = [
    ("videoInputs/0/region/width", 100),
    ("videoInputs/0/region/zorder", 1),
    ("videoInputs/0/rtc/rtcUid", "101"),
    ("videoInputs/0/rtc", None),
    ("videoInputs/0", "not an object"),
    ("videoInputs", []),
    ("videoInputs", "nope"),
    ("audioInputs/0/rtc/rtcChannel", "bad/channel é"),
    ("audioInputs/0/extra", True),
    ("audioInputs", {}),
    ("canvas/width", 100),
    ("outputs/0/videoOption/codec", "H265"),
    ("idleTimeout", "300"),
    ("surprise", 1),
]


@st.composite
def mutated_bodies(draw: st.DrawFn) -> dict[str, Any]:
    """A valid body with up to three of ``_MUTATIONS`` applied (valid when none is)."""
    generated = draw(valid_bodies())
    transcoder = generated["services"]["cloudTranscoder"]["config"]["transcoder"]
    for path, value in draw(st.lists(st.sampled_from(_MUTATIONS), max_size=3)):
        try:
            _set(transcoder, path, copy.deepcopy(value))
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed the parent
    return generated


def _full_pass(generated: dict[str, Any]) -> list[Any]:
    return validate.schema_errors(validate._validator("transcoder-request"), generated)


def _count_piece_passes(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Without the Rust check: the pieces that miss the cache and pay for a jsonschema pass."""
    passes: list[Any] = []
    real = validate.schema_errors

    def counting(validator: Any, instance: Any, **kw: Any) -> Any:
        passes.append(instance)
        return real(validator, instance, **kw)

    monkeypatch.setattr(validate, "_fast_valid", lambda item_schema, instance: False)
    monkeypatch.setattr(validate, "schema_errors", counting)
    return passes


class TestPiecewise:
    @settings(max_examples=80, deadline=None)
    @given(mutated_bodies())
    def test_same_errors_as_one_pass(self, generated: dict[str, Any]) -> None:
        validate.clear_cache()
        assert validate._schema_errors_of_request(generated) == _full_pass(generated)

    def test_bad_bodies_without_a_transcoder_object(self) -> None:
        for bad in ({}, {"services": []}, {"services": {"cloudTranscoder": {"config": 3}}}):
            validate.clear_cache()
            assert validate._schema_errors_of_request(bad) == _full_pass(bad)

    def test_a_new_host_costs_one_item_pass(self, monkeypatch: pytest.MonkeyPatch) -> None:
        validate.clear_cache()
        first = body(
            videoInputs=[video_input(100 + i, x=0) for i in range(8)],
            audioInputs=[{"rtc": rtc(100 + i)} for i in range(8)],
        )
        passes = _count_piece_passes(monkeypatch)
        assert check_request(first) == ()
        passes.clear()
        second = copy.deepcopy(first)
        transcoder = second["services"]["cloudTranscoder"]["config"]["transcoder"]
        transcoder["videoInputs"].append(video_input(200))
        transcoder["audioInputs"].append({"rtc": rtc(200)})
        assert check_request(second) == ()
        # The two new rtc members; the skeleton (canvas, outputs...) and the region (the same
        # as other hosts') are unchanged and cached.
        assert [p["rtc"]["rtcUid"] for p in passes] == [200, 200]
        assert passes[0] == transcoder["audioInputs"][-1]

    def test_moved_regions_cost_a_region_pass_each(self, monkeypatch: pytest.MonkeyPatch) -> None:
        validate.clear_cache()
        first = body(videoInputs=[video_input(100 + i) for i in range(4)])
        passes = _count_piece_passes(monkeypatch)
        assert check_request(first) == ()
        passes.clear()
        moved = body(videoInputs=[video_input(100 + i, x=40 * i) for i in range(4)])
        assert check_request(moved) == ()
        # Host 100 stays at x=0 (cached); the other three regions are new.
        assert passes == [
            {"x": 40 * i, "y": 0, "width": 320, "height": 180, "zOrder": 1} for i in (1, 2, 3)
        ]


# --- the Rust pre-check agrees with jsonschema ------------------------------------------------

_PIECES = [None, "audioInput", "videoInput", "region"]


def _slow_valid(item_schema: str | None, instance: Any) -> bool:
    return not validate.schema_errors(validate._piece_validator(item_schema), instance)


def _pieces_of(generated: dict[str, Any]) -> list[tuple[str | None, Any]]:
    transcoder = generated["services"]["cloudTranscoder"]["config"]["transcoder"]
    pieces: list[tuple[str | None, Any]] = [(None, generated)]
    for key, item_schema in (("audioInputs", "audioInput"), ("videoInputs", "videoInput")):
        items = transcoder.get(key)
        for item in items if isinstance(items, list) else ():
            pieces.append((item_schema, item))
            if isinstance(item, dict) and "region" in item:
                pieces.append(("region", item["region"]))
    return pieces


class TestFastCheck:
    """``jsonschema_rs`` only ever short-cuts to "valid": it must never accept what
    ``jsonschema`` rejects, and must accept what it accepts (or it saves nothing)."""

    @settings(max_examples=80, deadline=None)
    @given(mutated_bodies())
    def test_agrees_on_valid_and_broken_bodies(self, generated: dict[str, Any]) -> None:
        for item_schema, piece in _pieces_of(generated):
            assert validate._fast_valid(item_schema, piece) == _slow_valid(item_schema, piece)

    @settings(max_examples=300, deadline=None)
    @given(
        st.sampled_from(["rtcChannel", "rtcToken", "placeholderImageUrl"]),
        st.one_of(
            st.text(max_size=80),
            st.from_regex(r"\Ahttps?://[a-z.]{1,12}/[^?#]{0,12}\.(png|jpg)(\?.{0,8})?\Z"),
        ),
    )
    def test_never_accepts_a_string_jsonschema_rejects(self, field: str, text: str) -> None:
        item = video_input(101)
        if field == "placeholderImageUrl":
            item[field] = text
        else:
            item["rtc"][field] = text
        if validate._fast_valid("videoInput", item):
            assert _slow_valid("videoInput", item), text

    @pytest.mark.parametrize(
        "value",
        [2**64, -(2**63) - 1, 1.0, 1.5, True, None, "1"],
        ids=repr,
    )
    def test_numbers_at_the_edges(self, value: Any) -> None:
        item = {"rtc": rtc(101)}
        item["rtc"]["rtcUid"] = value
        if validate._fast_valid("audioInput", item):
            assert _slow_valid("audioInput", item)

    @pytest.mark.parametrize(
        "url",
        [
            "https://cdn.example.com/a\x1cb.png",
            "https://cdn.example.com/a\x85b.png",
            "https://cdn.example.com/a\u3000b.png",
            "https://cdn.example.com/a b.png",
            "https://cdn.example.com/a.png#frag\x1f",
        ],
        ids=repr,
    )
    def test_whitespace_and_controls_in_urls_are_rejected_by_both(self, url: str) -> None:
        item = video_input(101)
        item["placeholderImageUrl"] = url
        assert not validate._fast_valid("videoInput", item)
        assert not _slow_valid("videoInput", item)

    def test_a_join_validates_without_jsonschema(self, monkeypatch: pytest.MonkeyPatch) -> None:
        validate.clear_cache()
        called: list[Any] = []
        monkeypatch.setattr(validate, "schema_errors", lambda *a, **k: called.append(a) or [])
        grown = body(
            videoInputs=[video_input(300 + i, x=10 * i) for i in range(3)],
            audioInputs=[{"rtc": rtc(300 + i)} for i in range(3)],
        )
        monkeypatch.undo()
        assert check_request(grown) == ()
        assert called == []

    def test_a_trailing_newline_is_not_a_channel_name(self) -> None:
        # Python's "$" matches before a final newline; JSON Schema's (ECMA-262) does not.
        item = {"rtc": rtc(101, channel="room\n")}
        assert not validate._fast_valid("audioInput", item)
        assert not _slow_valid("audioInput", item)
        found = [
            error.message
            for error in check_request(body(audioInputs=[item]))
            if error.pointer == f"{T}/audioInputs/0/rtc/rtcChannel"
        ]
        assert any(message.startswith("'room\\n' is not an RTC channel") for message in found)
