"""Loading specs: the schema, defaults, cross-field rules, secrets kept out of reprs."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from layoutsync.errors import SpecError
from layoutsync.spec import LayoutSpec, SpecFileError, Token, load_spec


def spec_doc(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "instanceId": "room42",
        "input": {"channel": "room42", "token": "env:AGORA_INPUT_TOKEN"},
        "output": {
            "channel": "room42-live",
            "uid": 9000,
            "token": "literal-output-secret",
            "video": {"width": 1280, "height": 720},
        },
        "placeholderImage": "https://cdn.example.com/offline.png",
        "layout": {"template": "grid"},
    }
    doc.update(overrides)
    return doc


def layout(**keys: Any) -> dict[str, Any]:
    return spec_doc(layout={"template": "grid", **keys})


def errors_of(doc: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(SpecError) as info:
        load_spec(doc)
    return {e.pointer: e.message for e in info.value.errors}


class TestLoading:
    def test_the_contract_example_loads_with_its_attributes(self) -> None:
        doc = spec_doc(
            canvas={"color": "#101010", "backgroundImage": "https://cdn.example.com/bg.jpg"},
            watermarks=[
                {
                    "imageUrl": "https://cdn.example.com/logo.png",
                    "x": 1140,
                    "y": 20,
                    "width": 120,
                    "height": 120,
                    "zOrder": 90,
                }
            ],
            idleTimeout=120,
            onEmpty="delete",
            audio="channel",
        )
        spec = load_spec(doc)
        assert spec.instance_id == "room42"
        assert (spec.input_channel, spec.output_channel, spec.output_uid) == (
            "room42",
            "room42-live",
            9000,
        )
        assert (spec.on_empty, spec.idle_timeout, spec.audio_mode) == ("delete", 120, "channel")
        assert spec.audio_only is False
        assert spec.source is None
        assert spec.canvas.color == 0x101010
        assert (spec.canvas.width, spec.canvas.height) == (1280, 720)  # from output.video
        assert spec.watermarks[0].z_order == 90
        assert spec.capacity == 36

    def test_defaults(self) -> None:
        spec = load_spec(spec_doc())
        assert (spec.on_empty, spec.idle_timeout, spec.audio_mode) == ("idle", 300, "hosts")
        assert spec.layout.stability == "stable"
        assert spec.layout.overflow == "audio-only"
        assert spec.layout.aspect.text == "16:9"
        assert spec.raw["layout"]["gap"] == 0
        assert spec.raw["output"]["video"]["fps"] == 15

    def test_a_file_records_its_source(self, tmp_path: Path) -> None:
        path = tmp_path / "spec.json"
        path.write_text(json.dumps(spec_doc()))
        assert load_spec(path).source == str(path)
        assert load_spec(str(path)).source == str(path)

    def test_toml_and_json_of_the_same_content_have_one_fingerprint(self, tmp_path: Path) -> None:
        toml = tmp_path / "spec.toml"
        toml.write_text(
            'instanceId = "room42"\n'
            'placeholderImage = "https://cdn.example.com/offline.png"\n'
            '[input]\nchannel = "room42"\ntoken = "env:AGORA_INPUT_TOKEN"\n'
            '[output]\nchannel = "room42-live"\nuid = 9000\ntoken = "literal-output-secret"\n'
            "video = { width = 1280, height = 720 }\n"
            '[layout]\ntemplate = "grid"\n'
        )
        assert load_spec(toml).fingerprint == load_spec(spec_doc()).fingerprint

    def test_fingerprint_ignores_key_order_and_spelled_out_defaults(self) -> None:
        base = load_spec(spec_doc())
        explicit = spec_doc(idleTimeout=300, onEmpty="idle", audio="hosts")
        explicit["layout"] = {"gap": 0, "template": "grid", "aspect": "16:9", "deny": []}
        reordered = dict(reversed(list(explicit.items())))
        assert load_spec(reordered).fingerprint == base.fingerprint
        assert load_spec(reordered) == base and hash(load_spec(reordered)) == hash(base)
        assert load_spec(layout(gap=8)).fingerprint != base.fingerprint

    def test_the_colour_may_be_an_integer_or_hex(self) -> None:
        assert load_spec(spec_doc(canvas={"color": 255})).canvas.color == 255
        assert load_spec(spec_doc(canvas={"color": "#0000ff"})).canvas.color == 255

    def test_raw_is_read_only_and_to_dict_is_a_copy(self) -> None:
        spec = load_spec(spec_doc())
        with pytest.raises(TypeError):
            spec.raw["instanceId"] = "other"  # type: ignore[index]
        copy_ = spec.to_dict()
        copy_["layout"]["gap"] = 99
        assert spec.raw["layout"]["gap"] == 0

    def test_the_caller_mapping_is_not_modified(self) -> None:
        doc = spec_doc()
        before = copy.deepcopy(doc)
        load_spec(doc)
        assert doc == before

    def test_audio_only_needs_a_canvas_size_and_no_layout(self) -> None:
        doc = spec_doc(canvas={"width": 960, "height": 480})
        del doc["output"]["video"], doc["placeholderImage"], doc["layout"]
        spec = load_spec(doc)
        assert spec.audio_only and spec.capacity == 0

    def test_whole_floats_become_integers(self) -> None:
        doc = spec_doc()
        doc["output"] |= {"uid": 9000.0, "video": {"width": 1280.0, "height": 720}}
        spec = load_spec(doc)
        assert type(spec.output_uid) is int and type(spec.canvas.width) is int

    def test_nan_and_infinity_are_rejected(self) -> None:
        found = errors_of(spec_doc(idleTimeout=float("nan")) | layout(gap=float("inf")))
        assert found == {
            "/idleTimeout": "nan is not a finite number",
            "/layout/gap": "inf is not a finite number",
        }

    def test_odd_pixel_values_are_rounded_down_to_even(self) -> None:
        spec = load_spec(layout(gap=5, padding=9))
        assert (spec.layout.gap, spec.layout.padding) == (4, 8)


class TestTokens:
    def test_repr_shows_no_token(self) -> None:
        spec = load_spec(spec_doc())
        assert "literal-output-secret" not in repr(spec)
        assert "literal-output-secret" not in str(spec)
        assert "literal-output-secret" not in repr(spec.output_token)
        assert repr(spec.input_token) == "Token(/input/token, env:AGORA_INPUT_TOKEN)"

    def test_env_references_resolve_when_asked(self) -> None:
        spec = load_spec(spec_doc())
        assert spec.tokens({"AGORA_INPUT_TOKEN": "in-value"}) == (
            "in-value",
            "literal-output-secret",
        )

    def test_a_missing_variable_names_field_and_variable(self) -> None:
        spec = load_spec(spec_doc())
        with pytest.raises(SpecError) as info:
            spec.tokens({})
        assert str(info.value) == "/input/token: environment variable AGORA_INPUT_TOKEN is not set"

    def test_every_missing_variable_is_reported(self) -> None:
        doc = spec_doc()
        doc["output"]["token"] = "env:OUT_TOKEN"
        with pytest.raises(SpecError) as info:
            load_spec(doc).tokens({})
        assert [e.pointer for e in info.value.errors] == ["/input/token", "/output/token"]

    def test_env_reference_must_name_a_variable(self) -> None:
        doc = spec_doc()
        doc["input"]["token"] = "env:1-bad"
        assert errors_of(doc) == {
            "/input/token": "'env:1-bad' does not name an environment variable"
        }

    def test_schema_errors_on_tokens_hide_the_value(self) -> None:
        doc = spec_doc()
        doc["output"]["token"] = 12345
        with pytest.raises(SpecError) as info:
            load_spec(doc)
        message = str(info.value)
        assert "12345" not in message and "/output/token" in message

    def test_literal_tokens_need_no_environment(self) -> None:
        assert Token("/input/token", literal="abc").resolve({}) == "abc"


class TestSchemaErrors:
    def test_unknown_keys_get_a_did_you_mean(self) -> None:
        found = errors_of(layout(paddding=4))
        assert found["/layout/paddding"].startswith(
            "is not an allowed field (did you mean 'padding'?"
        )

    def test_unknown_top_level_key(self) -> None:
        found = errors_of(spec_doc(idletimeout=30))
        assert "did you mean 'idleTimeout'?" in found["/idletimeout"]

    def test_every_problem_is_reported(self) -> None:
        doc = spec_doc(instanceId="bad id!", idleTimeout=0)
        doc["layout"] = {"template": "mosaic", "gap": -1}
        found = errors_of(doc)
        assert set(found) == {"/instanceId", "/idleTimeout", "/layout/template", "/layout/gap"}
        assert found["/idleTimeout"] == "0 is below the minimum 1"

    def test_instance_id_is_at_most_64_characters(self) -> None:
        assert "/instanceId" in errors_of(spec_doc(instanceId="a" * 65))
        load_spec(spec_doc(instanceId="a" * 64))

    @pytest.mark.parametrize("aspect", ["16x9", "0:9", "16:", "square"])
    def test_bad_aspects(self, aspect: str) -> None:
        assert "is not a tile aspect" in errors_of(layout(aspect=aspect))["/layout/aspect"]

    def test_not_an_object(self, tmp_path: Path) -> None:
        path = tmp_path / "list.json"
        path.write_text("[1, 2]")
        with pytest.raises(SpecError, match="a spec is a JSON object"):
            load_spec(path)

    def test_a_mapping_or_path_is_required(self) -> None:
        with pytest.raises(TypeError):
            load_spec(42)  # type: ignore[arg-type]


class TestCrossFieldRules:
    def test_a_pinned_uid_that_is_denied(self) -> None:
        found = errors_of(layout(pinned=[101], deny=[101]))
        assert found == {"/layout/pinned/0": "101 is in layout.deny, so it can never be shown"}

    def test_a_pinned_uid_outside_the_allow_list(self) -> None:
        found = errors_of(layout(priority=[7], allow=[101]))
        assert found == {"/layout/priority/0": "7 is not in layout.allow, so it can never be shown"}

    def test_allowed_and_denied_at_once(self) -> None:
        assert "/layout/deny/0" in errors_of(layout(allow=[5], deny=[5]))

    def test_canvas_too_small_for_one_tile(self) -> None:
        found = errors_of(layout(padding=40) | {"canvas": {"width": 160, "height": 160}})
        assert "below one 120x120 tile" in found["/layout/padding"]

    def test_aspect_too_extreme_for_the_canvas(self) -> None:
        found = errors_of(spec_doc(canvas={"width": 200, "height": 200}) | layout(aspect="1:9"))
        assert "cannot be 120 px in both sides" in found["/layout/aspect"]

    def test_watermark_outside_the_canvas(self) -> None:
        mark = {
            "imageUrl": "https://a.example/l.png",
            "x": 1200,
            "y": 0,
            "width": 120,
            "height": 120,
        }
        found = errors_of(spec_doc(watermarks=[mark]))
        assert found["/watermarks/0"] == (
            "x + width = 1320 is beyond the canvas width 1280; it must fit inside"
        )

    def test_watermark_below_the_floor_uses_the_schema_message(self) -> None:
        mark = {"imageUrl": "https://a.example/l.png", "x": 0, "y": 0, "width": 100, "height": 120}
        assert errors_of(spec_doc(watermarks=[mark])) == {
            "/watermarks/0/width": "100 is below the minimum 120"
        }

    def test_a_key_of_another_template(self) -> None:
        found = errors_of(layout(position="left", corner="top-left"))
        assert found == {
            "/layout/position": "applies only to template 'speaker' (this layout is 'grid')",
            "/layout/corner": "applies only to template 'floating' (this layout is 'grid')",
        }

    def test_custom_needs_slots(self) -> None:
        assert "/layout/slots" in errors_of(spec_doc(layout={"template": "custom"}))

    def test_video_needs_a_placeholder_image(self) -> None:
        doc = spec_doc()
        del doc["placeholderImage"]
        assert errors_of(doc) == {"/placeholderImage": "is required when output.video is set"}

    def test_audio_only_needs_a_canvas_size(self) -> None:
        doc = spec_doc()
        del doc["output"]["video"]
        assert set(errors_of(doc)) == {"/canvas/width", "/canvas/height"}

    def test_audio_only_with_no_audio_has_nothing_to_send(self) -> None:
        doc = spec_doc(audio="none", canvas={"width": 960, "height": 480})
        del doc["output"]["video"]
        assert "/audio" in errors_of(doc)

    def test_speaker_strip_too_crowded_suggests_how_many_fit(self) -> None:
        doc = spec_doc(layout={"template": "speaker", "stripTiles": 12, "stripFraction": 0.25})
        message = errors_of(doc)["/layout/stripTiles"]
        assert "below the 120 px minimum" in message and "at most 6 fit" in message

    def test_speaker_strip_leaves_the_main_tile_too_small(self) -> None:
        doc = spec_doc(
            canvas={"width": 120, "height": 120},
            layout={"template": "speaker", "stripFraction": 0.05, "aspect": "1:1", "stripTiles": 1},
        )
        assert errors_of(doc) == {
            "/layout/stripFraction": "leaves the main tile 114x114 px on the 120x120 canvas, "
            "below the 120 px minimum; lower it"
        }

    def test_speaker_strip_too_narrow_for_one_tile(self) -> None:
        doc = spec_doc(
            canvas={"width": 236, "height": 240},
            layout={"template": "speaker", "stripFraction": 0.5, "aspect": "1:1", "stripTiles": 1},
        )
        assert errors_of(doc) == {
            "/layout/stripTiles": "1 strip tiles of 76x76 px are below the 120 px minimum on "
            "the 236x240 canvas: not even one fits; raise stripFraction or enlarge the canvas"
        }

    def test_floating_overlay_must_fit(self) -> None:
        doc = spec_doc(
            canvas={"width": 240, "height": 240},
            layout={"template": "floating", "tileWidth": 240, "margin": 16},
        )
        assert "/layout/tileWidth" in errors_of(doc)

    def test_custom_slots_in_pixels_must_be_whole_and_inside(self) -> None:
        slots = [
            {"x": 0.5, "y": 0, "width": 320, "height": 180},
            {"x": 1000, "y": 0, "width": 320, "height": 180},
            {"x": 0, "y": 0, "width": 100, "height": 180},
        ]
        found = errors_of(spec_doc(layout={"template": "custom", "slots": slots}))
        assert "is not a whole number of pixels" in found["/layout/slots/0/x"]
        assert "beyond the canvas width" in found["/layout/slots/1"]
        assert "below the minimum 120" in found["/layout/slots/2/width"]

    def test_custom_relative_slots_convert_to_even_pixels(self) -> None:
        slots = [{"x": 0.5, "y": 0.25, "width": 0.5, "height": 0.5, "host": 101}]
        spec = load_spec(
            spec_doc(layout={"template": "custom", "units": "relative", "slots": slots})
        )
        slot = spec.layout.slots[0]
        assert (slot.x, slot.y, slot.width, slot.height, slot.host) == (640, 180, 640, 360, 101)
        assert slot.z_order == 0

    def test_custom_relative_values_above_one(self) -> None:
        slots = [{"x": 1.5, "y": 0, "width": 0.5, "height": 0.5}]
        found = errors_of(
            spec_doc(layout={"template": "custom", "units": "relative", "slots": slots})
        )
        assert found["/layout/slots/0/x"] == "1.5 is above 1 (units is 'relative')"

    def test_custom_binding_a_uid_twice_or_two_speaker_slots(self) -> None:
        slot = {"x": 0, "y": 0, "width": 320, "height": 180}
        slots = [slot | {"host": 5}, slot | {"host": 5}, slot | {"host": "speaker"}]
        slots.append(slot | {"host": "speaker"})
        found = errors_of(spec_doc(layout={"template": "custom", "slots": slots}))
        assert found["/layout/slots/1/host"] == "5 is already bound by slot 0"
        assert found["/layout/slots/3/host"] == "slot 2 already shows the speaker"


class TestFiles:
    def test_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(SpecFileError) as info:
            load_spec(tmp_path / "nope.json")
        assert str(info.value) == f"{tmp_path / 'nope.json'}: no such file"

    def test_not_json(self, tmp_path: Path) -> None:
        path = tmp_path / "bad.json"
        path.write_text("{nope")
        with pytest.raises(SpecFileError, match=r"not JSON: .* at line 1 column 2"):
            load_spec(path)

    def test_not_toml(self, tmp_path: Path) -> None:
        path = tmp_path / "bad.toml"
        path.write_text("= nope")
        with pytest.raises(SpecFileError, match="not TOML"):
            load_spec(path)

    def test_a_directory(self, tmp_path: Path) -> None:
        with pytest.raises(SpecFileError, match="is a directory"):
            load_spec(tmp_path)

    def test_spec_errors_name_the_file(self, tmp_path: Path) -> None:
        path = tmp_path / "spec.json"
        path.write_text(json.dumps(layout(gap=-2)))
        with pytest.raises(SpecError) as info:
            load_spec(path)
        assert str(info.value) == f"{path}: /layout/gap: -2 is below the minimum 0"
        assert not isinstance(info.value, SpecFileError)


def test_specs_are_frozen() -> None:
    spec = load_spec(spec_doc())
    with pytest.raises(AttributeError):
        spec.instance_id = "x"  # type: ignore[misc]
    assert isinstance(spec, LayoutSpec)
